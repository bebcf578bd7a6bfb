"""Service configuration: one pydantic-settings class, read from ``AUGSEARCH_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_TOKEN_LIFETIME_DAYS = 90


class Settings(BaseSettings):
    """Every knob of the service; engines and stores are built from it in the app lifespan.

    Attributes:
        data_dir: Root of everything the service writes (database, artifacts, uploads).
        database_url: SQLAlchemy URL of the service database; defaults to SQLite in ``data_dir``.
        optuna_storage_url: Optuna RDB storage URL; defaults to the service database.
        artifact_dir: Directory of the Optuna file-system artifact store (checkpoints).
        artifact_store: Artifact store location: a directory or ``s3://bucket``; defaults to
            ``artifact_dir``. Workers must be given the same one.
        allowed_dataset_roots: Server directories under which datasets may be registered.
        max_upload_bytes: Largest accepted archive upload (413 beyond, before it is read).
        max_dataset_bytes: Largest decoded dataset: images x channels x height x width bytes
            after resizing (image files count three channels); a dataset being resized counts
            both sizes. Checked before decoding; 422 beyond.
        max_image_pixels: Largest image file (width x height pixels), read from its header
            before it is decoded; 422 beyond.
        max_image_size: Largest side of a dataset's images: the ``image_size`` asked for or,
            without one, the size of the files (at most 512, the largest ``image_size``).
        max_body_bytes: Largest body of every other request.
        max_trials: Largest trial budget one search may ask for.
        max_epochs: Largest number of epochs in a search's trainer recipes.
        max_page_size: Largest page a list endpoint returns.
        max_concurrent_searches: Unfinished searches one user may have at a time.
        single_user: Laptop mode: no tokens, everything belongs to the local user.
        token_lifetime_days: How long an API token works when its creator does not say
            (``augsearch token create --expires-in``); expired tokens are refused with 401.
        host: Address the server binds; single-user mode only binds loopback addresses.
        reconcile_interval_s: Seconds between two reconciler passes.
        heartbeat_interval_s: Optuna heartbeat interval of workers and the reconciler's storage.
        worker_poll_s: Seconds an idle worker started by the CLI waits between looks for work.
        worker_durable_commits: Whether workers' commits wait for the disk (default no: a
            database crash may then lose the last fraction of a second of trial writes, which
            come back as stale trials re-queued; see ``search.storage.PoolOptions``).
        db_pool_size: Connections each process keeps open to a server database (service
            engine and Optuna storage each have a pool of this size).
        db_max_overflow: Extra connections a pool may open under load.
        db_pool_recycle_s: Connections older than this are replaced (before idle drops).
        db_pool_timeout_s: How long a request waits for a free pooled connection.
        cors_origins: Origins allowed to call the API from a browser (CORS); empty: CORS off.
        trusted_hosts: Host names the server answers to (``Host`` header); empty: any.
        environment: ``development`` allows the embedded defaults; ``production`` refuses them.
    """

    model_config = SettingsConfigDict(env_prefix="AUGSEARCH_", extra="ignore")

    data_dir: Path = Path("./augsearch-data")
    database_url: str = ""
    optuna_storage_url: str = ""
    artifact_dir: Path | None = None
    artifact_store: str = ""
    allowed_dataset_roots: list[Path] = Field(default_factory=list)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_dataset_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=24_000_000, gt=0)
    max_image_size: int = Field(default=512, ge=8, le=512)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_trials: int = Field(default=1000, gt=0)
    max_epochs: int = Field(default=200, gt=0)
    max_page_size: int = Field(default=200, gt=0)
    max_concurrent_searches: int = Field(default=8, gt=0)
    single_user: bool = False
    token_lifetime_days: int = Field(default=DEFAULT_TOKEN_LIFETIME_DAYS, gt=0)
    host: str = "127.0.0.1"
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_interval_s: int = Field(default=30, gt=0)
    worker_poll_s: float = Field(default=2.0, gt=0)
    worker_durable_commits: bool = False
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_recycle_s: int = Field(default=1800, gt=0)
    db_pool_timeout_s: float = Field(default=30.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    trusted_hosts: list[str] = Field(default_factory=list)
    environment: str = Field(default="development", pattern="^(development|production)$")

    @model_validator(mode="after")
    def _fill_defaults_and_refuse_unsafe(self) -> Self:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'augsearch.db'}"
        if not self.optuna_storage_url:
            self.optuna_storage_url = self.database_url
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
        self.allowed_dataset_roots = [p.expanduser().resolve() for p in self.allowed_dataset_roots]
        if self.single_user and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"single-user mode has no authentication and must bind a loopback address, "
                f"not {self.host!r}"
            )
        if "*" in self.cors_origins:
            raise ValueError("cors_origins must list origins; '*' is refused")
        if self.environment == "production":
            if self.single_user:
                raise ValueError("single-user mode is refused in production")
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs a server database (PostgreSQL), not SQLite")
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the service database is a SQLite file."""
        return self.database_url.startswith("sqlite")

    @property
    def artifact_store_location(self) -> str:
        """Where checkpoints live: ``artifact_store`` if set, else the artifact directory."""
        return self.artifact_store or str(self.artifact_path)

    @property
    def artifact_path(self) -> Path:
        """The artifact directory (always set after validation)."""
        assert self.artifact_dir is not None  # filled by the validator
        return self.artifact_dir

    def ensure_dirs(self) -> None:
        """Create the data and artifact directories (called at start-up, never at import)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_path.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "uploads").mkdir(exist_ok=True)
