"""CLI commands that talk to a running server over HTTP (datasets, searches, policies...)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import ApiError, Client

console = Console()
UrlOpt = Annotated[str | None, typer.Option("--url", envvar="AUGSEARCH_URL", help="Server URL.")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="AUGSEARCH_TOKEN", help="Bearer token.")
]
FINAL_STATES = {"completed", "failed", "cancelled"}

dataset_app = typer.Typer(help="Register and list datasets.", no_args_is_help=True)
search_app = typer.Typer(help="Start, follow and cancel searches.", no_args_is_help=True)
policy_app = typer.Typer(help="Fetch searched policies.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Download checkpoints.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def _call(url: str | None, token: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(client, ...)`` and turn API errors into a message and exit status 1."""
    try:
        with Client(url, token) as client:
            return fn(client, *args, **kwargs)
    except (ApiError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc


@dataset_app.command("add")
def dataset_add(
    source: Annotated[
        str,
        typer.Argument(
            help="digits | torchvision | path | manifest | archive | wordnet-topics | text-table "
            "| text-upload"
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    dataset: Annotated[str | None, typer.Option(help="torchvision dataset (CIFAR10...).")] = None,
    path: Annotated[
        str | None,
        typer.Option(
            help="Server folder (path), server CSV/Parquet (manifest), server .csv/.jsonl/"
            ".parquet (text-table) or local file (archive, text-upload)."
        ),
    ] = None,
    topics: Annotated[
        str | None, typer.Option(help="wordnet-topics: comma-separated topics (animal,food...).")
    ] = None,
    per_class: Annotated[int | None, typer.Option(help="wordnet-topics: texts per topic.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a dataset."""
    if (topics or per_class) and source != "wordnet-topics":
        raise _fail("--topics and --per-class are for source 'wordnet-topics'")
    if source in ("archive", "text-upload"):
        if not path:
            raise _fail(f"source {source!r} needs --path to a local file")
        result = _call(url, token, Client.upload_dataset, Path(path), name)
    elif source in ("digits", "torchvision", "path", "manifest", "wordnet-topics", "text-table"):
        chosen = [t.strip() for t in topics.split(",")] if topics else None
        result = _call(url, token, Client.add_dataset, source, name=name, dataset=dataset,
                       path=path, topics=chosen, per_class=per_class)  # fmt: skip
    else:
        raise _fail(
            f"unknown source {source!r}: use digits, torchvision, path, manifest, archive, "
            "wordnet-topics, text-table or text-upload"
        )
    unit = "texts" if result["source"] in ("wordnet-topics", "text-table") else "images"
    console.print(f"dataset {result['id']}: {result['name']} ({result['num_images']} {unit})")


@dataset_app.command("list")
def dataset_list(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List datasets."""
    page = _call(url, token, Client.datasets, 0, 200)
    table = Table("id", "name", "source", "images", "classes", "size", "channels")
    for d in page["items"]:
        table.add_row(
            str(d["id"]), d["name"], d["source"], str(d["num_images"]),
            str(len(d["classes"])), str(d["image_size"]), str(d["channels"]),
        )  # fmt: skip
    console.print(table)


def _spec_from(
    spec_file: Path | None, n_trials: int | None, epochs: int | None, strategy: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if spec_file is not None:
        try:
            spec = json.loads(spec_file.read_text())
        except (OSError, ValueError) as exc:
            raise _fail(f"cannot read spec file {spec_file}: {exc}") from exc
        if not isinstance(spec, dict):
            raise _fail(f"spec file {spec_file} must hold a JSON object")
    if n_trials is not None:
        spec["n_trials"] = n_trials
    if strategy is not None:
        spec["strategy"] = strategy
    if epochs is not None:  # eda searches train the text proxy (text_recipe)
        key = "text_recipe" if spec.get("strategy") == "eda" else "recipe"
        spec[key] = {**spec.get(key, {}), "epochs": epochs}
    return spec


def progress_line(search: dict[str, Any]) -> tuple[str, int, int]:
    """What the progress bar shows of a search: its description, trainings done and total.

    The total is the budget of search trainings plus the final pick's; done counts the search
    trainings started and the finals complete.
    """
    prog = search["progress"]
    n_trials = int(prog.get("n_trials") or 0)
    finals = int(prog.get("finals") or 0)
    started = min(int(prog.get("budget_used", prog.get("complete")) or 0), n_trials)
    finals_done = int(prog.get("finals_done") or 0)
    parts = [f"search {search['id']} [{search['state']}]"]
    if search["best_value"] is not None:
        parts.append(f"best {search['best_value']:.4f}")
    if prog.get("pruned"):
        parts.append(f"pruned {prog['pruned']} ({prog.get('pruned_epochs', 0)} epochs)")
    if prog.get("skipped"):
        parts.append(f"skipped {prog['skipped']}")
    if finals:
        parts.append(f"final {finals_done}/{finals}")
    if prog.get("eta_s") is not None and search["state"] not in FINAL_STATES:
        parts.append(f"ETA {_eta_text(float(prog['eta_s']))}")
    return " ".join(parts), started + finals_done, n_trials + finals


def _eta_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def wait_for(
    url: str | None, token: str | None, search_id: int, poll_s: float = 2.0
) -> dict[str, Any]:
    """Follow a search with a progress bar until it reaches a final state."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"search {search_id}", total=None)
        while True:
            search = _call(url, token, Client.search, search_id)
            label, done, total = progress_line(search)
            bar.update(task, total=total or None, completed=done, description=label)
            if search["state"] in FINAL_STATES:
                return dict(search)
            time.sleep(poll_s)


def print_final_pick(search: dict[str, Any]) -> None:
    """The final pick's table and verdict (nothing before the pick starts)."""
    pick = search.get("final_pick")
    if not pick:
        return
    table = Table("contender", "proxy", "final", "test", title="final pick")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    for c in pick["contenders"]:
        mark = " (served)" if c["winner"] else ""
        table.add_row(c["label"] + mark, fmt(c["proxy_value"]), fmt(c["final_value"]),
                      fmt(c["test_accuracy"]))  # fmt: skip
    console.print(table)
    if pick.get("kendall_tau") is not None:
        console.print(f"Kendall tau of proxy vs final ranking: {pick['kendall_tau']:.2f}")
    if pick.get("proxy_reliable") is False:
        console.print(
            "[yellow]the proxy's ranking did not hold at final fidelity; "
            "the served policy won the final comparison[/yellow]"
        )
    if pick.get("decided_by"):
        console.print(f"decided by: {pick['decided_by']}")
    if pick.get("saturated"):
        ended = pick.get("ended_early")
        stop = (f"; the search ended after {ended['search_trials']} of {ended['n_trials']} "
                "search trials" if ended else "")  # fmt: skip
        console.print(
            f"[yellow]the served policy scored 1.000 on validation{stop}: the split is too "
            "small or too easy to rank policies (ties go to the preset)[/yellow]"
        )


@search_app.command("start")
def search_start(
    dataset: Annotated[int, typer.Option(help="Dataset id.")],
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="JSON file with the SearchSpec (without dataset).")
    ] = None,
    n_trials: Annotated[int | None, typer.Option(help="Budget of search trials.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial.")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="autoaugment, randaugment, ... (eda for text datasets)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Launch a search."""
    spec = _spec_from(spec_file, n_trials, epochs, strategy)
    search = _call(url, token, Client.start_search, dataset, spec, name)
    console.print(f"search {search['id']} queued")
    if wait:
        final = wait_for(url, token, search["id"])
        console.print(f"search {final['id']} {final['state']}; best {final['best_value']}")
        print_final_pick(final)
        if final["state"] != "completed":
            raise typer.Exit(code=1)


@search_app.command("list")
def search_list(
    state: Annotated[str | None, typer.Option(help="Filter by state.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List searches."""
    page = _call(url, token, Client.searches, state)
    table = Table("id", "name", "dataset", "state", "progress", "best")
    for s in page["items"]:
        prog = s["progress"]
        best = "" if s["best_value"] is None else f"{s['best_value']:.4f}"
        started = prog.get("budget_used", prog.get("complete", 0))
        table.add_row(str(s["id"]), s["name"], str(s["dataset_id"]), s["state"],
                      f"{started}/{prog.get('n_trials', 0)}", best)  # fmt: skip
    console.print(table)


@search_app.command("show")
def search_show(search_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one search as JSON."""
    console.print_json(data=_call(url, token, Client.search, search_id))


@search_app.command("cancel")
def search_cancel(search_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a search."""
    result = _call(url, token, Client.cancel_search, search_id)
    console.print(f"search {search_id} {result['state']}")


@policy_app.command("get")
def policy_get(
    dataset: Annotated[int | None, typer.Option(help="Best policy of this dataset.")] = None,
    search: Annotated[int | None, typer.Option(help="Policy of this search.")] = None,
    format: Annotated[
        str, typer.Option(help="json | torchvision | albumentations | timm | python (text)")
    ] = "json",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a policy (JSON) or its export."""
    if format not in ("json", "torchvision", "albumentations", "timm", "python"):
        raise _fail(f"unknown format {format!r}")
    result = _call(url, token, Client.policy, dataset=dataset, search=search, format=format)
    exported = result.get("exported")
    if format == "json":
        console.print_json(data=result["policy"])
    elif isinstance(exported, dict):
        console.print_json(data=exported)
    else:
        typer.echo(exported)


#: Default file names of ``checkpoint get`` by format.
CHECKPOINT_FILES = {
    "safetensors": "model.safetensors",
    "onnx": "model.onnx",
    "int8": "model.int8.onnx",
    "pruned": "model.pruned.safetensors",
}


@checkpoint_app.command("get")
def checkpoint_get(
    search_id: int,
    format: Annotated[
        str, typer.Option(help="safetensors (the float model) | onnx | int8 | pruned")
    ] = "safetensors",
    sparsity: Annotated[
        float | None, typer.Option(help="pruned only: share of zero weights (default 0.5).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Destination file.")] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a variant a worker is making.")
    ] = 600.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a search's final checkpoint or a compressed variant (sha256 verified).

    A variant (onnx, int8, pruned) is made once by a worker on first request; the command
    waits for it.
    """
    if format not in CHECKPOINT_FILES:
        raise _fail(f"unknown format {format!r}; choose one of {', '.join(CHECKPOINT_FILES)}")
    if sparsity is not None and format != "pruned":
        raise _fail("--sparsity applies to --format pruned only")
    dest = output or Path(CHECKPOINT_FILES[format])
    sha = _call(url, token, Client.download_checkpoint, search_id, dest, format, sparsity,
                wait_s=wait)  # fmt: skip
    console.print(f"saved {dest} (sha256 {sha})")


@checkpoint_app.command("variants")
def checkpoint_variants(search_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List a search's compressed variants: size, validation accuracy and CPU latency per
    image, each beside the float model's."""
    rows = _call(url, token, Client.variants, search_id)
    table = Table("variant", "state", "size", "val accuracy", "latency / image", "speedup")
    for row in rows:
        card = row.get("card") or {}
        if row["state"] != "ready":
            table.add_row(row["name"], row["state"], row.get("error") or "", "", "", "")
            continue
        table.add_row(
            row["name"],
            row["state"],
            f"{card['size_bytes'] / 1024:.1f} KiB (float {card['float_size_bytes'] / 1024:.1f})",
            f"{card['val_accuracy']:.4f} (float {card['float_val_accuracy']:.4f})",
            f"{card['latency_ms']:.3f} ms (float {card['float_latency_ms']:.3f})",
            f"{card['speedup']:.2f}x",
        )
    console.print(table)
