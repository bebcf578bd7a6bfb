"""CLI commands of self-training: ``augsearch unlabelled ...`` and ``augsearch self-train ...``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli_client import FINAL_STATES, TokenOpt, UrlOpt, _call, _fail, console
from service.client import Client

unlabelled_app = typer.Typer(help="Attach unlabelled images to a dataset.", no_args_is_help=True)
self_train_app = typer.Typer(
    help="Self-training (Noisy Student) on a completed search.", no_args_is_help=True
)


@unlabelled_app.command("add")
def unlabelled_add(
    dataset: Annotated[int, typer.Option(help="Dataset id.")],
    archive: Annotated[
        Path | None, typer.Option(help="Local zip/tar of images (any layout), uploaded.")
    ] = None,
    path: Annotated[str | None, typer.Option(help="Server folder of images (admins).")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Attach unlabelled images to a dataset: an uploaded archive or a server folder."""
    if (archive is None) == (path is None):
        raise _fail("give exactly one of --archive (a local zip/tar) or --path (a server folder)")
    if archive is not None:
        result = _call(url, token, Client.upload_unlabelled, dataset, archive, name)
    else:
        result = _call(url, token, Client.add_unlabelled, dataset, path, name)
    console.print(
        f"unlabelled set {result['id']}: {result['name']} ({result['num_images']} images)"
    )


@unlabelled_app.command("list")
def unlabelled_list(
    dataset: Annotated[int | None, typer.Option(help="Only this dataset's.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List unlabelled sets."""
    page = _call(url, token, Client.unlabelled, dataset)
    table = Table("id", "dataset", "name", "source", "images")
    for row in page["items"]:
        table.add_row(str(row["id"]), str(row["dataset_id"]), row["name"], row["source"],
                      str(row["num_images"]))  # fmt: skip
    console.print(table)


def print_steps(job: dict[str, Any]) -> None:
    """A table of a job's steps: validation (and test) accuracy per iteration."""
    table = Table("model", "state", "val acc", "test acc", "pseudo-labels used")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    for step in job["steps"]:
        label = "teacher" if step["step"] == 0 else f"student {step['step']}"
        if job.get("best_step") == step["step"]:
            label += " (served)"
        pseudo = step.get("pseudo_labels") or {}
        used = f"{pseudo['used']} of {pseudo['unlabelled']}" if pseudo else "-"
        table.add_row(label, step["state"], fmt(step.get("val_accuracy")),
                      fmt(step.get("test_accuracy")), used)  # fmt: skip
    console.print(table)


@self_train_app.command("start")
def self_train_start(
    search_id: int,
    unlabelled: Annotated[int, typer.Option(help="Unlabelled set id (of the search's dataset).")],
    iterations: Annotated[int, typer.Option(help="Students, one after another.")] = 2,
    labels: Annotated[str, typer.Option(help="soft | hard pseudo-labels.")] = "soft",
    threshold: Annotated[float, typer.Option(help="Least teacher confidence kept.")] = 0.3,
    balance: Annotated[bool, typer.Option(help="Equal pseudo-labels per class.")] = True,
    arch: Annotated[str | None, typer.Option(help="Student architecture.")] = None,
    width: Annotated[float | None, typer.Option(help="Student width (airbench).")] = None,
    dropout: Annotated[float | None, typer.Option(help="Student dropout.")] = None,
    drop_path: Annotated[float, typer.Option(help="Student stochastic depth (ResNets).")] = 0.0,
    policy_noise: Annotated[
        bool, typer.Option("--policy-noise/--no-policy-noise", help="Search's policy as noise.")
    ] = True,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Launch self-training on a completed search."""
    student: dict[str, Any] = {"drop_path": drop_path}
    for key, value in (("arch", arch), ("width", width), ("dropout", dropout)):
        if value is not None:
            student[key] = value
    options = {
        "iterations": iterations, "pseudo_labels": labels, "confidence_threshold": threshold,
        "balance": balance, "noise_policy": policy_noise, "student": student,
    }  # fmt: skip
    job = _call(url, token, Client.start_self_training, search_id, unlabelled, **options)
    console.print(f"self-training {job['id']} {job['state']}")
    if wait:
        final = _wait(url, token, job["id"])
        print_steps(final)
        console.print(f"self-training {final['id']} {final['state']}")
        if final["state"] != "completed":
            raise typer.Exit(code=1)


def _wait(url: str | None, token: str | None, job_id: int, poll_s: float = 3.0) -> Any:
    while True:
        job = _call(url, token, Client.self_training, job_id)
        if job["state"] in FINAL_STATES:
            return job
        time.sleep(poll_s)


@self_train_app.command("show")
def self_train_show(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a job: state and every iteration's accuracy."""
    job = _call(url, token, Client.self_training, job_id)
    console.print(f"self-training {job['id']} on search {job['search_id']}: {job['state']}"
                  f" ({job['trainings']} trainings)")  # fmt: skip
    if job.get("error"):
        console.print(f"[red]{job['error']}[/red]")
    print_steps(job)


@self_train_app.command("list")
def self_train_list(search_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List a search's self-training jobs."""
    page = _call(url, token, Client.self_trainings, search_id)
    table = Table("id", "state", "teacher val", "best student val", "trainings")
    for job in page["items"]:
        teacher, best = job["teacher_value"], job["best_value"]
        table.add_row(str(job["id"]), job["state"], "-" if teacher is None else f"{teacher:.4f}",
                      "-" if best is None else f"{best:.4f}", str(job["trainings"]))  # fmt: skip
    console.print(table)


@self_train_app.command("cancel")
def self_train_cancel(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job."""
    job = _call(url, token, Client.cancel_self_training, job_id)
    console.print(f"self-training {job_id} {job['state']}")


@self_train_app.command("checkpoint")
def self_train_checkpoint(
    job_id: int,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Destination file.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download the best student's checkpoint (safetensors, sha256 verified)."""
    dest = output or Path(f"self-training-{job_id}.safetensors")
    sha = _call(url, token, Client.download_self_training_checkpoint, job_id, dest)
    console.print(f"saved {dest} (sha256 {sha})")
