"""Runtime settings, read once from the environment (12-factor): no secrets in files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///./var/akson.db"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return raw.strip().lower() in ("1", "true", "yes", "on") if raw else default


@dataclass(frozen=True)
class Settings:
    """What an operator can set. Every field has an `AKSON_*` environment variable."""

    database_url: str = DEFAULT_DATABASE_URL
    #: Largest request body accepted; larger bodies get 413 (R4 has no limit; operators need one).
    max_body_bytes: int = 16 * 1024 * 1024
    #: Deepest JSON nesting accepted; R4 resources stay far below this.
    max_json_depth: int = 64
    default_page_size: int = 50
    max_page_size: int = 1000
    pool_size: int = 10
    #: `production` refuses synthetic national ids (Tenor +80, NAV +40); any other value (e.g.
    #: `development`, `test`) is a test environment where they are the only ids allowed in demos.
    environment: str = "development"
    #: Path of the JSON file listing the trusted token issuers (format: akson.access.issuers).
    trusted_issuers_file: str | None = None
    #: Refuse Bearer tokens: every access token must be DPoP-bound (RFC 9449), as HelseID requires.
    require_dpop: bool = False
    #: Require a server-issued nonce in DPoP proofs (RFC 9449 §9).
    dpop_nonce: bool = False
    #: How old a DPoP proof's `iat` may be, in seconds.
    dpop_max_age_seconds: int = 60
    #: Clock skew tolerated on access-token `exp`/`nbf`/`iat`, in seconds.
    token_leeway_seconds: int = 30
    #: Citizens' lowest accepted ID-porten `acr` (`idporten-loa-high` or `idporten-loa-substantial`).
    citizen_min_acr: str = "idporten-loa-high"
    #: Practitioners' lowest accepted HelseID `security_level`.
    practitioner_min_security_level: int = 4
    #: Where Bulk Data `$export` jobs write their NDJSON files (one folder per job).
    export_dir: str = "./var/export"
    #: How long a finished `$export` job's files are kept (and served) before the worker
    #: deletes them; the status response's `Expires` header says when.
    export_retention_seconds: int = 24 * 60 * 60
    #: Hash chains of the audit log: more chains, fewer writers waiting on one chain lock.
    audit_chains: int = 16
    #: Milliseconds a routine read's audit record may be written after its response, gathered
    #: with others into one statement; 0: every response waits until its record is durable
    #: (ADR 0007). Denials, break-the-glass, self-declared access, writes and exports always wait.
    audit_reads_behind_ms: int = 10
    #: An extra `aud` value the built-in provider's tokens may carry (besides this server's own
    #: FHIR base `<base>/fhir`, which is always accepted); e.g. the public base behind a proxy.
    audience: str | None = None
    #: AuditEvent.source.site: this node's name in the audit log (default: the host name).
    audit_site: str | None = None
    #: Delay before results of a category (Volven 8202) are released to the citizen, e.g.
    #: "HIST=14d,CYTO=14d,MBIO=2d" (d, h, m or s); meanwhile they carry NORU (akson.results.release).
    results_release_delay: str = "HIST=14d,CYTO=14d"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("AKSON_DATABASE_URL", DEFAULT_DATABASE_URL),
            max_body_bytes=_int("AKSON_MAX_BODY_BYTES", cls.max_body_bytes),
            max_json_depth=_int("AKSON_MAX_JSON_DEPTH", cls.max_json_depth),
            default_page_size=_int("AKSON_DEFAULT_PAGE_SIZE", cls.default_page_size),
            max_page_size=_int("AKSON_MAX_PAGE_SIZE", cls.max_page_size),
            pool_size=_int("AKSON_POOL_SIZE", cls.pool_size),
            environment=os.environ.get("AKSON_ENVIRONMENT", cls.environment),
            trusted_issuers_file=os.environ.get("AKSON_TRUSTED_ISSUERS") or None,
            require_dpop=_bool("AKSON_REQUIRE_DPOP", cls.require_dpop),
            dpop_nonce=_bool("AKSON_DPOP_NONCE", cls.dpop_nonce),
            dpop_max_age_seconds=_int("AKSON_DPOP_MAX_AGE_SECONDS", cls.dpop_max_age_seconds),
            token_leeway_seconds=_int("AKSON_TOKEN_LEEWAY_SECONDS", cls.token_leeway_seconds),
            citizen_min_acr=os.environ.get("AKSON_CITIZEN_MIN_ACR", cls.citizen_min_acr),
            practitioner_min_security_level=_int("AKSON_PRACTITIONER_MIN_SECURITY_LEVEL",
                                                 cls.practitioner_min_security_level),
            export_dir=os.environ.get("AKSON_EXPORT_DIR", cls.export_dir),
            audit_chains=_int("AKSON_AUDIT_CHAINS", cls.audit_chains),
            audit_reads_behind_ms=_int("AKSON_AUDIT_READS_BEHIND_MS", cls.audit_reads_behind_ms),
            export_retention_seconds=_int("AKSON_EXPORT_RETENTION_SECONDS",
                                          cls.export_retention_seconds),
            audience=os.environ.get("AKSON_AUDIENCE") or None,
            audit_site=os.environ.get("AKSON_AUDIT_SITE") or None,
            results_release_delay=os.environ.get("AKSON_RESULTS_RELEASE_DELAY",
                                                 cls.results_release_delay),
        )

    @property
    def allow_synthetic_ids(self) -> bool:
        """Synthetic national ids are accepted everywhere except in production."""
        return self.environment != "production"
