"""All configuration, read once from EXPORTFLOW_* environment variables or `.env`."""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.control.errors import ConfigError

DEMO_DATASETS = Path(__file__).resolve().parent.parent / "datasets.demo.yaml"
DEFAULT_SECRET = "change-me-in-production"


def default_data_dir() -> Path:
    """One place whatever the working directory: `.exportflow` in the source checkout the
    package runs from (what `make demo` uses), else the per-user XDG data folder."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "flows").is_dir():
        return checkout / ".exportflow"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "exportflow"


class Settings(BaseSettings):
    """exportflow settings; every field is EXPORTFLOW_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="EXPORTFLOW_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        "production", description="development allows the default secret; production refuses it."
    )
    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset starts an embedded server under data_dir."
    )
    read_database_url: str | None = Field(
        None, description="Where exports read rows (a read replica); unset: database_url."
    )
    statement_timeout_seconds: float = Field(
        300, gt=0, description="Longest single read of the source (PostgreSQL statement_timeout)."
    )
    direct_timeout_seconds: float = Field(
        30, gt=0, description="Longest direct export (one response); past it: failed, timeout."
    )
    stream_timeout_seconds: float = Field(
        300, gt=0, description="Longest streamed export, every read included; then cut off."
    )
    background_timeout_seconds: float = Field(
        1800, gt=0, description="Longest attempt of a background export (its flow run)."
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="Embedded database, local files."
    )
    datasets: Path = Field(DEMO_DATASETS, description="YAML file declaring exportable modules.")
    storage_url: str | None = Field(
        None, description="file:///absolute/dir, a folder under data_dir, or s3://bucket/prefix."
    )
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET), description="Signs local download links and tokens."
    )
    public_api_url: str = "http://127.0.0.1:8000"

    # The API: bearer tokens (HS256 with a shared secret, or RS256/ES256 from a key set).
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key of bearer tokens; development falls back to secret_key."
    )
    jwks_url: str | None = Field(None, description="JSON Web Key Set URL for RS256/ES256 tokens.")
    jwt_issuer: str | None = Field(None, description="Required `iss` of tokens, when set.")
    jwt_audience: str | None = Field(None, description="Required `aud` of tokens, when set.")
    link_ttl_seconds: int = Field(
        900, ge=1, description="Lifetime of a download link the API hands out."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API."
    )

    chunk_rows: int = Field(40_000, ge=1, description="Most rows per keyset chunk.")
    chunk_bytes: int = Field(
        16 * 2**20, ge=2**16, description="Arrow bytes per chunk, sized from the first chunk."
    )
    first_chunk_rows: int = Field(1000, ge=1, description="Rows in the first, measuring chunk.")
    read_connections: int = Field(2, ge=1, le=8, description="Connections reading chunks ahead.")
    chunk_ranges: int = Field(
        8, ge=1, description="Key ranges of up to chunk_rows a background chunk task reads."
    )
    direct_max_rows: int = Field(10_000, ge=0, description="Up to this many rows: direct response.")
    stream_max_rows: int = Field(100_000, ge=0, description="Up to this many rows: streamed.")
    rate_limit_per_hour: int = Field(10, ge=1, description="Exports per user per hour.")
    max_active_background: int = Field(
        3, ge=1, description="Background exports a user may have pending or processing."
    )
    schedule_min_interval_seconds: int = Field(
        300, ge=60, description="Shortest time between two runs of a scheduled export."
    )
    max_schedules_per_user: int = Field(10, ge=0, description="Scheduled exports per user.")
    link_expiry_seconds: int = Field(24 * 3600, ge=1)
    max_selected_ids: int = Field(10_000, ge=1)
    max_filters: int = Field(20, ge=0, description="Filters in one request.")
    max_in_values: int = Field(1_000, ge=1, description="Values in one `in` filter.")
    max_value_chars: int = Field(200, ge=1, description="Characters in one filter value.")
    max_columns: int = Field(500, ge=1, description="Columns named in one request.")
    gzip_level: int = Field(6, ge=1, le=9)
    orphan_max_age_seconds: int = Field(3600, ge=60, description="Temp files older: removed.")
    max_resume_attempts: int = Field(3, ge=0, description="Re-submissions of a crashed job.")
    submit_grace_seconds: float = Field(
        60, ge=0, description="A background job not handed to Prefect after this is submitted."
    )
    failure_rate_alert: float = Field(0.10, ge=0, le=1, description="Last hour's failed share.")
    xlsx_sheet_rows: int = Field(1_048_575, ge=1, le=1_048_575)
    locale_presets: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Locale presets added to (or replacing) the built-in en-US, en-GB, de-DE"
        ' and fr-FR, as JSON: {"nl-NL": {"delimiter": ";", "decimal_separator": ",", ...}}.',
    )

    # Logs: one JSON object per line for a log collector, or plain text for a person.
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line; text: for a person at a terminal."
    )
    log_level: str = Field(
        "INFO", pattern=r"(?i)^(debug|info|warning|error)$", description="Least severe level kept."
    )
    run_state_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="How old a run's Prefect state a status poll may report (up to 10x while"
        " a newer one is read behind the answer).",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1, description="Largest request body the API reads; a larger one is a 413."
    )

    # The command line as the API's client (`submit`, `jobs`, `download`).
    api_url: str = Field(
        "http://127.0.0.1:8000", description="The API `submit`, `jobs` and `download` call."
    )
    token: SecretStr | None = Field(
        None, description="Bearer token `submit`, `jobs` and `download` send (`exportflow token`)."
    )

    # `exportflow up` / `exportflow serve`: the stack on one machine.
    prefect_host: str = Field("127.0.0.1", description="Prefect server address for `up`.")
    prefect_port: int = Field(4200, ge=1, le=65535)
    prefect_database_url: str = Field(
        "",
        description="The Prefect server's database for `up` (SQLAlchemy URL); default:"
        " `<dbname>_prefect` beside exportflow's, or SQLite where it may not be created.",
    )
    api_host: str = Field("127.0.0.1", description="API address for `up`.")
    api_port: int = Field(8000, ge=1, le=65535)
    export_concurrency: int = Field(4, ge=1, description="Background exports running at once.")
    export_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="How much a flow run's own process yields the CPU (nice) to the API and"
        " to runs starting; 0: not at all.",
    )
    cleanup_cron: str = Field("*/15 * * * *", description="Schedule of the cleanup flow.")
    startup_timeout_seconds: float = Field(
        120, gt=0, description="`up`: how long each part may take to answer its health check."
    )
    shutdown_timeout_seconds: float = Field(
        20, gt=0, description="`up`: how long each part may take to stop before it is killed."
    )

    # Notifications when a background export ends: email over SMTP and signed webhooks.
    smtp_host: str | None = Field(None, description="SMTP server; unset: no email is sent.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="none, starttls (upgrade after connecting) or tls (implicit)."
    )
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("exportflow@localhost", description="From address of the emails.")
    webhook_secret: SecretStr | None = Field(
        None, description="Signs webhooks; unset: derived from secret_key (purpose 'webhook')."
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list, description="Webhook hosts: exact names or *.example.com."
    )
    webhook_allow_private_addresses: bool = Field(
        False, description="Allow webhooks to loopback, private and link-local addresses."
    )
    notify_timeout_seconds: float = Field(
        10, gt=0, description="Longest connect, send or read of one notification attempt."
    )
    # Short: the export's flow run, and its slot of export_concurrency, waits for them.
    notify_retry_delays: list[float] = Field(
        [2, 10, 30], description="Pauses before each retry of a notification."
    )
    notify_ca_file: Path | None = Field(
        None, description="CA bundle trusted for webhooks and SMTP instead of the system's."
    )

    def secret(self, purpose: str) -> bytes:
        """The key that signs `purpose` (download links, tokens): derived per purpose, so a
        signature made for one can never pass as the other. The default secret is refused
        outside development."""
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET and self.env != "development":
            raise ConfigError(
                "EXPORTFLOW_SECRET_KEY is the default; set a long random value, "
                "or EXPORTFLOW_ENV=development on a development machine"
            )
        return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, defaulting to a folder under the data dir."""
        return self.storage_url or (self.data_dir.resolve() / "files").as_uri()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
