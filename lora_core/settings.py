"""The one configuration object, read from `LORA_*` environment variables and an optional `.env` file."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

DATASET_FORMATS: tuple[str, ...] = ("brightrun_lora_v4", "brightrun_lora_v3", "openai_chat")
DEFAULT_FORMAT = "brightrun_lora_v4"


class Settings(BaseSettings):
    """Everything deployment-specific. AWS credentials come from boto3's usual chain, not from here."""

    model_config = SettingsConfigDict(env_prefix="LORA_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file under data_dir."
    )
    storage: Literal["local", "s3"] = "local"
    s3_bucket: str = "lora-datasets"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_create_bucket: bool = Field(
        default=False, description="Create the bucket at start if it is missing (handy for MinIO and moto)."
    )
    max_upload_bytes: int = Field(default=500 * MIB, gt=0)
    upload_url_ttl_seconds: int = Field(default=3600, gt=0)
    download_url_ttl_seconds: int = Field(default=900, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    sweep_in_app: bool = Field(
        default=True,
        description="Run the validation sweep and housekeeping in the app's process too; false where "
        "`python -m lora_core worker` processes do it apart from the pages.",
    )
    deleted_retention_days: float = Field(
        default=30,
        ge=0,
        le=36_500,  # a hundred years: "keep for good", and still a date the database can compare
        description="Days the file of a deleted dataset stays in storage (an operator can still restore it) before "
        "housekeeping removes it; the record stays.",
    )
    sweep_lease_seconds: int = Field(
        default=600, gt=0, description="How long a claim holds before another process may take it."
    )
    sweep_max_attempts: int = Field(default=3, gt=0, description="Claims of one dataset before it is failed for good.")
    storage_retries: int = Field(
        default=3, ge=0, description="Retries of a transient storage error within one validation."
    )
    context_limit: int = Field(default=2048, gt=0)
    line_limit_bytes: int = Field(default=16 * MIB, gt=0)
    decompressed_limit_bytes: int | None = Field(
        default=None, description="Cap on gzip-decompressed size; default 4x max_upload_bytes."
    )
    validation_workers: int | None = Field(
        default=None,
        ge=0,
        description="Worker processes for validating large files (0 or 1: in-process); default min(2, cores).",
    )
    secret_key: str | None = Field(
        default=None,
        description="HMAC key for local upload/download tokens; generated once into data_dir when unset.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8501", description="Where browsers reach this app; used in local storage URLs."
    )
    auth_mode: Literal["local", "oidc", "proxy"] = "local"
    local_user_id: str = Field(default="demo", description="The one user of local identity mode.")
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    proxy_user_header: str = "X-Forwarded-Email"

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lora.db').resolve()}"

    @property
    def effective_decompressed_limit_bytes(self) -> int:
        return self.decompressed_limit_bytes or 4 * self.max_upload_bytes

    @property
    def storage_root(self) -> Path:
        return self.data_dir / "objects"

    def effective_secret_key(self) -> bytes:
        """The configured key, or one generated on first use and kept in data_dir so restarts keep URLs valid."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip().encode()


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings; tests build their own `Settings(...)` and pass it in instead."""
    return Settings()


def public_url_mismatch(public_base_url: str, port: int) -> str | None:
    """A warning when LORA_PUBLIC_BASE_URL names this machine on another port than the server listens on.

    The pages link relative to the address the browser opened, but the API hands out absolute upload and download
    URLs (local storage) on LORA_PUBLIC_BASE_URL: a script would be sent to a port where nothing answers. Behind a
    proxy (another host name) the ports differ by design, and nothing is said.
    """
    url = urlsplit(public_base_url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        named = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the URL is broken in another way, reported where it is used
        return None
    if named == port:
        return None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return (
        f"LORA_PUBLIC_BASE_URL is {public_base_url}, but the server listens on port {port}: upload and download "
        f"URLs given to API clients will point at port {named}. Set LORA_PUBLIC_BASE_URL={url.scheme}://{host}:{port} "
        "(or run on that port)."
    )
