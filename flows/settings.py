"""All configuration, read once from EXPORTFLOW_* environment variables or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_DATASETS = Path(__file__).with_name("datasets.demo.yaml")


class Settings(BaseSettings):
    """exportflow settings; every field is EXPORTFLOW_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="EXPORTFLOW_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset starts an embedded server under data_dir."
    )
    data_dir: Path = Field(Path(".exportflow"), description="Embedded database, local files.")
    datasets: Path = Field(DEMO_DATASETS, description="YAML file declaring exportable modules.")
    storage_url: str | None = Field(None, description="file://dir or s3://bucket/prefix.")
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    secret_key: SecretStr = Field(
        SecretStr("change-me-in-production"), description="Signs local download links and JWTs."
    )
    public_api_url: str = "http://127.0.0.1:8000"

    chunk_rows: int = Field(40_000, ge=1, description="Rows per keyset chunk.")
    read_connections: int = Field(2, ge=1, le=8, description="Connections reading chunks ahead.")
    direct_max_rows: int = Field(10_000, ge=0, description="Up to this many rows: direct response.")
    stream_max_rows: int = Field(100_000, ge=0, description="Up to this many rows: streamed.")
    link_expiry_seconds: int = Field(24 * 3600, ge=1)
    max_selected_ids: int = Field(10_000, ge=1)
    gzip_level: int = Field(6, ge=1, le=9)
    orphan_max_age_seconds: int = Field(3600, ge=60, description="Temp files older: removed.")
    max_resume_attempts: int = Field(3, ge=0, description="Re-submissions of a crashed job.")
    failure_rate_alert: float = Field(0.10, ge=0, le=1, description="Last hour's failed share.")
    xlsx_sheet_rows: int = Field(1_048_575, ge=1, le=1_048_575)

    # `exportflow up` / `exportflow serve`: the stack on one machine.
    prefect_host: str = Field("127.0.0.1", description="Prefect server address for `up`.")
    prefect_port: int = Field(4200, ge=1, le=65535)
    api_host: str = Field("127.0.0.1", description="API address for `up`.")
    api_port: int = Field(8000, ge=1, le=65535)
    export_concurrency: int = Field(4, ge=1, description="Background exports running at once.")
    cleanup_cron: str = Field("*/15 * * * *", description="Schedule of the cleanup flow.")
    startup_timeout_seconds: float = Field(
        120, gt=0, description="`up`: how long each part may take to answer its health check."
    )
    shutdown_timeout_seconds: float = Field(
        20, gt=0, description="`up`: how long each part may take to stop before it is killed."
    )

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, defaulting to a folder under the data dir."""
        return self.storage_url or (self.data_dir.resolve() / "exports").as_uri()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
