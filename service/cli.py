"""The ``augsearch`` command line: server, workers, migrations, demo, and the HTTP commands."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli_client import (
    checkpoint_app,
    console,
    dataset_app,
    policy_app,
    search_app,
)
from service.cli_self_training import self_train_app, unlabelled_app
from service.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(
    name="augsearch", help="Augmentation-policy search service.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(dataset_app, name="dataset")
app.add_typer(search_app, name="search")
app.add_typer(policy_app, name="policy")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(unlabelled_app, name="unlabelled")
app.add_typer(self_train_app, name="self-train")

# A real search that fits a laptop CPU in a few minutes: digits at 16x16 (the scans are 8x8, so
# nothing is lost), 40% held out as a test split the search never sees and half of the rest
# for validation (digits are easy: a small validation set ties every good policy at 100%),
# epochs and batch size derived from the data (500 optimizer steps a proxy training, 1500 a
# final one), and a final pick of the two best searched policies and the best preset.
DEMO_SPEC = {
    "strategy": "randaugment",
    "n_trials": 10,
    "holdout_fraction": 0.4,
    "val_fraction": 0.5,
    "base_space": {"hflip": [False]},  # a mirrored digit is not the same digit
    "baselines": ["none", "trivialaugment-wide", "autoaugment-svhn"],
    "final_pick": {"candidates": 2, "presets": 1},
}
DEMO_IMAGE_SIZE = 16


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        console.print(f"[red]error:[/red] invalid settings: {exc}")
        raise typer.Exit(code=1) from exc


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or upgrade the service tables (``AUGSEARCH_DATABASE_URL``) and create Optuna's."""
    from service.db.migrate import upgrade
    from service.server import create_optuna_schema

    settings = _settings()
    settings.ensure_dirs()
    upgrade(settings.database_url, revision)
    console.print(f"database upgraded to {revision}")
    create_optuna_schema(settings)
    console.print("Optuna's tables ready")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Downgrade the service tables to ``revision`` (``base`` drops them)."""
    from service.db.migrate import downgrade

    downgrade(_settings().database_url, revision)
    console.print(f"database downgraded to {revision}")


@contextmanager
def _db_session() -> Iterator[Session]:
    """A session on the configured database, committed on success; a domain error exits 1."""
    from service.db.engine import make_engine, make_sessionmaker
    from service.errors import DomainError

    engine = make_engine(_settings().database_url)
    session = make_sessionmaker(engine)()
    try:
        yield session
        session.commit()
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=1) from exc
    finally:
        session.close()
        engine.dispose()


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="User name (created if new).")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user admin rights.")] = False,
    expires_in: Annotated[
        str | None,
        typer.Option(
            help="Lifetime: seconds, or 90m, 12h, 30d (default: AUGSEARCH_TOKEN_LIFETIME_DAYS)."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A label shown by `token list`.")] = "",
) -> None:
    """Create an API token for a user; it is printed once and stored hashed."""
    from datetime import timedelta

    from service.users.service import create_user_with_token, parse_lifetime

    settings = _settings()
    with _db_session() as session:
        if expires_in is None:
            lifetime = timedelta(days=settings.token_lifetime_days)
        else:
            lifetime = parse_lifetime(expires_in)
        _, token = create_user_with_token(session, user, admin, name, expires_in=lifetime)
    typer.echo(token)


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
) -> None:
    """List API tokens (never the tokens themselves): id, user, label, state, expiry."""
    from service.users.service import list_tokens, token_state

    with _db_session() as session:
        rows = [
            (t.id, owner, t.name or "-", token_state(t), f"{t.expires_at:%Y-%m-%d %H:%M} UTC")
            for t, owner in list_tokens(session, None, user)
        ]
    for row in rows:
        typer.echo("\t".join(str(cell) for cell in row))


@token_app.command("revoke")
def token_revoke(
    user: Annotated[str | None, typer.Option(help="User whose tokens are all revoked.")] = None,
    token_id: Annotated[
        int | None, typer.Option("--id", help="The one token to revoke (see `token list`).")
    ] = None,
) -> None:
    """Revoke one API token (--id) or every token of a user (--user)."""
    from service.users.service import revoke_token, revoke_user_tokens

    if (user is None) == (token_id is None):
        console.print("[red]error:[/red] give either --user NAME or --id N")
        raise typer.Exit(code=2)
    with _db_session() as session:
        if token_id is not None:
            _, owner = revoke_token(session, token_id, None)
            message = f"revoked token {token_id} of user {owner!r}"
        else:
            count = revoke_user_tokens(session, str(user))
            message = f"revoked {count} token{'s' if count != 1 else ''} of user {user!r}"
    typer.echo(message)


@app.command()
def worker(
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL or grpc://host:port (default: settings)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    gpus: Annotated[
        str | None, typer.Option(help="Comma-separated GPU ids: one process each.")
    ] = None,
    artifact_dir: Annotated[
        str | None, typer.Option(help="Artifact store (path or s3://bucket).")
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(help="Exit after this many seconds without work (batch Jobs).", min=0),
    ] = None,
) -> None:
    """Run a worker that pulls trials from the Optuna storage (one process per GPU)."""
    from search.parent import PARENT_ENV, die_with_parent
    from service.runtime import pool_options

    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit():  # started by `augsearch serve`: end with it
        die_with_parent(int(parent))
    settings = _settings()
    storage_url = storage or settings.optuna_storage_url
    artifacts = artifact_dir or settings.artifact_store_location
    kwargs = {
        "heartbeat_interval": settings.heartbeat_interval_s,
        "poll_interval": settings.worker_poll_s,
        "data_cache_dir": str(settings.data_dir / "cache"),
        "pool": pool_options(settings, worker=True),
        "max_idle": idle_exit,
    }
    from search.fleet import run_worker, run_workers
    from search.schema import SchemaNotReady

    try:
        if gpus:
            ids = [int(g) for g in gpus.split(",") if g.strip()]
            code = run_workers(storage_url, ids, artifacts, **kwargs)
        else:
            code = run_worker(storage_url, device, artifacts, **kwargs)
    except (ValueError, SchemaNotReady) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    raise typer.Exit(code=code)


@app.command("storage-proxy")
def storage_proxy(
    storage: Annotated[
        str | None, typer.Option(help="Database URL behind the proxy (default: settings).")
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 13000,
) -> None:
    """Serve the Optuna storage over gRPC to large worker fleets (``--storage grpc://...``)."""
    from search.storage import run_storage_proxy
    from service.runtime import pool_options

    settings = _settings()
    url = storage or settings.optuna_storage_url
    console.print(f"storage proxy on {host}:{port}")
    try:
        run_storage_proxy(url, host=host, port=port, pool=pool_options(settings, worker=True))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Embedded worker processes.", min=0, max=64)] = 0,
    device: Annotated[str, typer.Option(help="Device of the embedded workers.")] = "cpu",
    optuna_dashboard: Annotated[
        bool, typer.Option("--optuna-dashboard", help="Also serve optuna-dashboard.")
    ] = False,
) -> None:
    """Serve the API (and optionally embedded workers)."""
    from service.server import run_server

    settings = _settings(host=host)
    run_server(settings, port, workers, device, optuna_dashboard)


def _demo_driver(url: str, stop: threading.Event) -> None:
    """Register digits and launch the demo search once the server answers."""
    from service.client import ApiError, Client

    with Client(url, timeout=120) as client:
        for _ in range(600):
            if stop.is_set():
                return
            try:
                client.health()
                break
            except ApiError:
                time.sleep(0.5)
        try:
            dataset = client.add_dataset("digits", name="digits", image_size=DEMO_IMAGE_SIZE)
            search = client.start_search(dataset["id"], DEMO_SPEC, name="demo search on digits")
        except ApiError as exc:
            console.print(f"[red]demo:[/red] {exc}")
            return
    console.print(f"demo: dataset {dataset['id']} registered, search {search['id']} launched")
    console.print(f"Dashboard: {url}/    API docs: {url}/docs    (Ctrl-C to stop)")


@app.command()
def demo(
    host: Annotated[
        str, typer.Option(help="Bind address (loopback: single-user mode).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Run the laptop demo: SQLite, one embedded worker, digits, a small search."""
    os.environ.setdefault("AUGSEARCH_SINGLE_USER", "true")
    settings = _settings(host=host, data_dir=data_dir)
    url = f"http://{host}:{port}"
    console.print(f"augsearch demo: data in {settings.data_dir}")
    stop = threading.Event()
    driver = threading.Thread(target=_demo_driver, args=(url, stop), daemon=True)
    driver.start()
    from service.server import run_server

    try:
        run_server(settings, port, workers=1, device="cpu", optuna_dashboard=False)
    finally:
        stop.set()


if __name__ == "__main__":
    app()
