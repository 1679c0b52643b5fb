"""FHIR identifier systems and code system URLs for Norwegian health data (DOMAIN.md §1, §4, §5, §7).

One place for every `Identifier.system` and `Coding.system` string the project uses, so no module
spells an OID by hand. Identifier systems follow the HL7 Norway no-basis R4 profiles (NamingSystem
resources of https://github.com/HL7Norway/basisprofiler-r4 and HL7Norway/kodeverk); Volven code
systems use the URL or OID those profiles / the e-resept XML use.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from akson.fhir.identifiers import PersonIdKind

__all__ = [
    "ATC_SYSTEM",
    "DNR_SYSTEM",
    "DUF_SYSTEM",
    "FHN_SYSTEM",
    "FNR_SYSTEM",
    "FNR_SYSTEM_URL",
    "HELSEPERSONELLKATEGORI_SYSTEM",
    "HER_ID_SYSTEM",
    "HNR_SYSTEM",
    "HNR_TYPE_CODE",
    "HNR_TYPE_SYSTEM",
    "HPR_SYSTEM",
    "ICD10_SYSTEM",
    "ICPC2_SYSTEM",
    "KOMMUNENR_OID",
    "KOMMUNENR_SYSTEM",
    "NLK_SYSTEM",
    "ORGNR_SYSTEM",
    "PARENTAL_RESPONSIBILITY_SYSTEM",
    "PERSON_ID_SYSTEMS",
    "RESH_SYSTEM",
    "RESTRICTION_CODE_SYSTEM",
]

# ------------------------------------------------------------------ identifier systems (§1)

FNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.1"  # fødselsnummer (Folkeregisteret)
FNR_SYSTEM_URL: Final = "http://hl7.no/fhir/NamingSystem/FNR"  # fødselsnummer, URL alternative
DNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.2"  # D-nummer (Folkeregisteret)
FHN_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.3"  # felles hjelpenummer (NHN; "H-nummer" in TRF)
HPR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.4"  # HPR-nummer (Helsepersonellregisteret)
DUF_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.5"  # DUF-nummer (UDI, 12 digits)
ORGNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.101"  # organisasjonsnummer (Enhetsreg., ENH)
RESH_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.102"  # RESH-id (NHN specialist units, RSH)
HER_ID_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.2"  # HER-id (Adresseregisteret; not a person)
HNR_SYSTEM: Final = "HNR"  # local H-nummer: not unique, Identifier.assigner required
HNR_TYPE_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.8327"  # Volven 8327 person id types
HNR_TYPE_CODE: Final = "HNR"  # the local H-nummer's Identifier.type code in Volven 8327
KOMMUNENR_SYSTEM: Final = "https://register.geonorge.no/sosi-kodelister/kommunenummer"  # kommunenr
KOMMUNENR_OID: Final = "urn:oid:2.16.578.1.12.4.1.1.3402"  # kommunenummer, Volven 3402 OID form

#: Person identifier systems → the kind of number they hold. HER-id, HPR-nr, orgnr and RESH are
#: deliberately absent: they never identify a patient.
PERSON_ID_SYSTEMS: Final = MappingProxyType(
    {
        FNR_SYSTEM: PersonIdKind.FNR,
        FNR_SYSTEM_URL: PersonIdKind.FNR,
        DNR_SYSTEM: PersonIdKind.DNR,
        FHN_SYSTEM: PersonIdKind.FHN,
        DUF_SYSTEM: PersonIdKind.DUF,
        HNR_SYSTEM: PersonIdKind.HNR,
    }
)

# ------------------------------------------------------------------------------ code systems

HELSEPERSONELLKATEGORI_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.9060"  # Volven 9060 HPR cat.
RESTRICTION_CODE_SYSTEM: Final = "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603"  # 9603 NORS…
ICPC2_SYSTEM: Final = "http://hl7.org/fhir/sid/icpc-2"  # ICPC-2 (Volven 7170), primary care
ICD10_SYSTEM: Final = "http://hl7.org/fhir/sid/icd-10-no"  # ICD-10 Norwegian edition (Volven 7110)
ATC_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.7180"  # ATC as in FEST/e-resept (URL unverified)
NLK_SYSTEM: Final = "http://helsedir.no/fhir/CodeSystem/no-kodeverk-7280-nlk"  # NLK 7280 lab codes
PARENTAL_RESPONSIBILITY_SYSTEM: Final = (
    "http://hl7.no/fhir/CodeSystem/no-basis-parental-responsibility"  # no-basis foreldreansvar
)
