"""All settings in one class.

Sources, strongest first: keyword arguments (the CLI), ``RADSIGHT_*`` environment
variables, a TOML file (``RADSIGHT_CONFIG`` or ``<home>/radsight.toml``), defaults.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DuplicatePolicy(StrEnum):
    """What to do when an instance arrives whose SOP Instance UID is already stored."""

    KEEP_FIRST = "keep"
    OVERWRITE = "overwrite"


class AgingRule(BaseModel):
    """Worklist starvation rule: an unread study at ``from_level`` waiting longer than
    ``after_minutes`` since arrival is raised to ``to_level`` (see radsight.worklist.priority)."""

    from_level: Literal["routine", "urgent"]
    to_level: Literal["urgent", "critical"]
    after_minutes: float = Field(gt=0)


def _toml_path() -> Path | None:
    explicit = os.environ.get("RADSIGHT_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("RADSIGHT_HOME")
    if home and (Path(home) / "radsight.toml").is_file():
        return Path(home) / "radsight.toml"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RADSIGHT_", extra="ignore")

    home: Path = Field(default=Path("radsight-home"), description="Archive home: index, storage, logs")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite file <home>/index.sqlite"
    )
    storage_dir: Path | None = Field(default=None, description="Default <home>/storage")

    http_host: str = "127.0.0.1"
    http_port: int = 8042
    dicom_port: int = 11112
    http_workers: int = Field(
        default=0, ge=0,
        description="HTTP processes of `serve` sharing the port (0: one per CPU core, at most 4)",
    )
    ae_title: str = "RADSIGHT"

    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    allow_any_calling_ae: bool = Field(
        default=False, description="Accept associations from AEs not registered with `radsight ae add`"
    )
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest STOW-RS body accepted")
    dcmtk_fallback: bool = Field(
        default=True, description="Decode with DCMTK's dcmdjpeg where the Python decoders fail"
    )
    token_ttl_hours: int = 12
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API and DICOMweb from another site "
        "(e.g. an OHIF deployment); empty = same origin only",
    )
    ai_rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="AI routing rules (TOML [[ai_rules]] tables or JSON); see radsight.ai.routing.RoutingRule",
    )

    # AI engine (see radsight.ai): in-process workers, stability trigger, durable job queue.
    ai_enabled: bool = Field(default=True, description="Run the AI engine (stability trigger + workers) in `serve`")
    ai_workers: int = Field(default=1, ge=0, description="In-process AI worker threads (0: queue only)")
    ai_worker_processes: bool = Field(
        default=True,
        description="Run AI workers as separate processes (SEG/SR encoding holds the GIL; keeps HTTP/DIMSE fast)",
    )
    ai_stable_seconds: float = Field(
        default=3.0, gt=0, description="A series is stable when no instance arrived for this long"
    )
    ai_job_max_attempts: int = Field(default=3, ge=1, description="Runs of a job before it is failed")
    ai_lease_seconds: float = Field(
        default=60.0, gt=0, description="A running job not heartbeated for this long is taken again (worker lost)"
    )
    ai_retry_backoff_seconds: float = Field(
        default=10.0, ge=0, description="Wait before the first retry of a failed job; doubles per attempt"
    )
    ai_recover_hours: float = Field(
        default=24.0, ge=0, description="At start-up, series updated this recently are checked for missed jobs"
    )
    ai_builtin_models: bool = Field(
        default=True,
        description="At `serve` start-up, install the models that ship with RadSight (radsight/models/) "
        "unless an admin removed them or installed another version",
    )
    ai_seg_type: Literal["binary", "labelmap"] = Field(
        default="binary",
        description="DICOM SEG type of AI segmentations: BINARY (one bit-packed frame per segment and slice, "
        "read by every SEG reader) or LABELMAP (one 8-bit frame per slice, Sup 243; smaller, newer readers only)",
    )

    # Worklist (see radsight.worklist): priority, reading claims, critical-finding alerts.
    worklist_stat_level: Literal["critical", "urgent"] = Field(
        default="urgent",
        description="Level of a STAT order; critical is kept for AI findings that raise an alert",
    )
    worklist_aging_points_per_minute: float = Field(
        default=1.0, ge=0, description="Score added per minute of waiting (orders studies within a level)"
    )
    worklist_aging: list[AgingRule] = Field(
        default_factory=lambda: [AgingRule(from_level="routine", to_level="urgent", after_minutes=240)],
        description="Starvation rules: a study waiting longer rises a level (TOML [[worklist_aging]] or JSON)",
    )
    claim_timeout_minutes: float = Field(
        default=30.0, gt=0, description="A reader's claim on a study lapses without a heartbeat for this long"
    )
    alert_webhook_url: str | None = Field(
        default=None, description="POST critical-finding alerts here as JSON (retried until a 2xx)"
    )
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    alert_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="Wait before the first webhook retry; doubles per attempt"
    )
    alert_retry_max_seconds: float = Field(default=600.0, gt=0, description="Longest wait between webhook tries")
    alert_webhook_max_attempts: int = Field(
        default=0, ge=0, description="Give up (state failed) after this many tries; 0 = until delivered"
    )

    # Request size limits (see radsight.api.limits; STOW-RS and model uploads: max_upload_bytes).
    max_request_body_bytes: int = Field(
        default=1024 * 1024, gt=0,
        description="Largest body of a REST request (JSON, forms); larger ones are refused with 413 unread",
    )
    max_login_body_bytes: int = Field(
        default=16 * 1024, gt=0,
        description="Largest body of the unauthenticated login requests (/login, /api/auth/token)",
    )
    # ZIP archives from outside (`radsight import`, model packages): checked before extraction (ZIP bombs).
    zip_max_total_bytes: int = Field(
        default=64 * 1024**3, gt=0, description="Largest total uncompressed size of one ZIP archive"
    )
    zip_max_member_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="Largest uncompressed size of one member of a ZIP archive"
    )
    zip_max_ratio: float = Field(
        default=200.0, gt=1,
        description="Largest compression ratio (uncompressed / compressed) of a ZIP member over 1 MiB",
    )
    # Web security (radsight.api.headers, radsight.api.security.check_origin, STOW-RS RetrieveURLs).
    public_url: HttpUrl | None = Field(
        default=None,
        description="The server's URL as browsers and DICOMweb clients reach it (e.g. https://pacs.example.org "
        "behind a reverse proxy): STOW-RS RetrieveURLs start with it (unset: root-relative URLs, never "
        "the request's Host header) and its origin may send cookie-authenticated changes",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_path()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'index.sqlite').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.home / "storage").resolve()


def load_settings(**overrides: Any) -> Settings:
    """Settings with the CLI's explicit values on top (``None`` means "not given")."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
