"""Chain rows: a referrer's index rows carrying its target's values, for one-hop chains (PG).

`Observation?subject:Patient.name=jacobsen` asks for the Observations whose subject is a live
Patient named so. Answered from the Patients, it costs one probe per matching Patient (974 of
them at a million resources: 9 ms whatever the page); answered from rows that already pair each
Observation with its subject's name values, it is one index range per distinct matching value,
in pk order, read only as far as a page needs (ADR 0020).

`sp_chain` holds, for each declared `Chain`, one row (chain, value_norm, res_pk, target_pk) per
referrer, live target and target value. Row triggers on `sp_reference` and `sp_string`
keep it equal to what those tables imply (migration 0024), so every write path — a write, a
transaction, a bulk COPY, a reindex, a purge — maintains it without knowing of it, and a
search sees in its snapshot exactly the rows its `sp_string` and `sp_reference` imply.
SQLite has no such table: its searches take the general chain.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chain:
    """`res_type?param:target_type.target_param=x`, with `target_param` a string parameter."""

    res_type: str
    param: str
    target_type: str
    target_param: str

    @property
    def name(self) -> str:
        """The rows' `chain` column: the chain as a search writes it, on its type."""
        return f"{self.res_type}.{self.param}:{self.target_type}.{self.target_param}"


#: The chains kept as rows: results looked up by the patient's name, the chain users of other
#: servers find slowest. Each adds a row per name value of the subject to every write of such a
#: resource; adding one needs a migration that recreates the triggers and fills its rows.
CHAINS: tuple[Chain, ...] = (Chain("Observation", "subject", "Patient", "name"),)

#: Distinct matching values a page reads one index range of: past this (a prefix as short as
#: "a"), the general chain answers.
MAX_VALUES = 40


def find(res_type: str, param: str, target_type: str, target_param: str) -> Chain | None:
    """The declared chain for these, if there is one."""
    wanted = Chain(res_type, param, target_type, target_param)
    return wanted if wanted in CHAINS else None


#: The triggers (table, name) that add a chain's rows as its index rows are added (migration
#: 0024); a first bulk load turns them off and fills the rows at its end (akson.store.first_load).
INSERT_TRIGGERS = (("sp_reference", "sp_reference_chained_insert"),
                   ("sp_string", "sp_string_chained_insert"))

_DECLARED = ("(VALUES " + ", ".join(
    f"('{c.name}', '{c.res_type}', '{c.param}', '{c.target_type}', '{c.target_param}')"
    for c in CHAINS) + ") AS d (chain, res_type, param, target_type, target_param)")

#: Every chain row `sp_reference` and `sp_string` imply: what the insert triggers would have
#: added to an empty `sp_chain` (while they are off, nothing else adds rows).
FILL = (
    "INSERT INTO sp_chain (chain, value_norm, res_pk, target_pk) "
    "SELECT x.chain, x.value_norm, x.res_pk, x.target_pk FROM (SELECT DISTINCT d.chain, "
    "n.value_norm, s.res_pk, t.pk AS target_pk FROM sp_reference s JOIN " + _DECLARED + " ON "
    "s.res_type = d.res_type AND s.param = d.param AND s.target_type = d.target_type "
    "JOIN resource t ON t.res_type = s.target_type AND t.res_id = s.target_id AND NOT t.deleted "
    "JOIN sp_string n ON n.res_pk = t.pk AND n.param = d.target_param) x"
)
