"""Runtime settings, read once from the environment (12-factor): no secrets in files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///./var/akson.db"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


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
    #: Where Bulk Data `$export` jobs write their NDJSON files (one folder per job).
    export_dir: str = "./var/export"
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
            export_dir=os.environ.get("AKSON_EXPORT_DIR", cls.export_dir),
        )

    @property
    def allow_synthetic_ids(self) -> bool:
        """Synthetic national ids are accepted everywhere except in production."""
        return self.environment != "production"
