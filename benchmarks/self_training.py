"""Self-training benchmark: teacher vs each Noisy Student iteration on a never-seen test split.

For each seed the dataset is split into a test part (never seen by the job), and the rest of
which ``--labelled`` keep their labels (the job's labelled data, split further into training
and validation as a search would) while the others lose them (the unlabelled images). The job
runs as the workers run it (`search.self_training.steps.train_step`): a teacher with the
search's policy and final recipe, then ``--iterations`` students. Each model is scored on the
test split; the report gives means, standard deviations and standard errors over the seeds,
the paired difference student - teacher, and the cost in trainings.

Usage: python -m benchmarks.self_training --datasets digits --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.report import write_section
from search.datasets import (
    DatasetSpec,
    ImageDataset,
    load_dataset,
    parse_dataset_spec,
    stratified_split,
)
from search.datasets.unlabelled import UnlabelledSpec
from search.objective import split_for_search
from search.self_training import SelfTrainingJob, SelfTrainingOptions
from search.self_training.steps import train_step
from search.spec import SearchSpec
from search.trainer import evaluate

#: The policies the search found (docs/benchmarks.md, "Search quality: digits" and "fonts").
FOUND_POLICIES: dict[str, dict[str, Any]] = {
    "digits": {"schema_version": 1, "kind": "randaugment", "base": {"crop_padding": 4}},
    "fonts": {"schema_version": 1, "kind": "randaugment", "base": {"hflip": True}},
}
DATASETS: dict[str, dict[str, Any]] = {
    # 32x32, the size the policy was found at (its crop padding is in pixels).
    "digits": {"source": "digits"},
    "fonts": {"source": "fonts"},
}


@dataclass
class SeedRun:
    """Test accuracies of one seed: index 0 the teacher, k the k-th student."""

    seed: int
    test: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    pseudo: list[dict[str, Any]] = field(default_factory=list)


def _parts(
    ds: ImageDataset, labelled: float, seed: int
) -> tuple[ImageDataset, torch.Tensor, ImageDataset]:
    """(labelled part, unlabelled images, test part) of one seed."""
    rest, test = stratified_split(ds, 0.3, seed=seed + 100)
    unlabelled, kept = stratified_split(rest, labelled, seed=seed + 200)
    return kept, unlabelled.images, test


def run_seed(
    name: str, ds: ImageDataset, spec: DatasetSpec, args: argparse.Namespace, seed: int
) -> SeedRun:
    """The teacher and every student of one seed, scored on its test part."""
    labelled, unlabelled, test = _parts(ds, args.labelled, seed)
    search = SearchSpec(dataset=spec, seed=seed, val_fraction=0.2)
    data = split_for_search(labelled, search)
    options = SelfTrainingOptions.model_validate(
        {
            "iterations": args.iterations,
            "pseudo_labels": args.pseudo_labels,
            "confidence_threshold": args.threshold,
            "student": json.loads(args.student),
        }
    )
    job = SelfTrainingJob(
        search_id=f"bench-{name}-{seed}",
        search=search,
        policy=FOUND_POLICIES[name],
        unlabelled=UnlabelledSpec.model_validate(
            {
                "source": "folder",
                "path": "(in memory)",
                "channels": ds.channels,
                "image_size": ds.image_size,
            }
        ),
        options=options,
    )
    run = SeedRun(seed)
    probs = None
    for step in range(args.iterations + 1):
        start = time.perf_counter()
        outcome = train_step(
            job, step, data.final_train, data.val, unlabelled, teacher_probs=probs, device="cpu"
        )
        probs = outcome.probs
        score = evaluate(outcome.result.model, test, "cpu", mean=outcome.result.mean,
                         std=outcome.result.std)  # fmt: skip
        run.test.append(float(score["accuracy"]))
        run.val.append(outcome.metrics["val_accuracy"])
        run.seconds.append(time.perf_counter() - start)
        run.pseudo.append(outcome.pseudo.stats if outcome.pseudo else {})
        print(
            f"{name} seed {seed} step {step}: test {run.test[-1]:.4f} val {run.val[-1]:.4f} "
            f"({run.seconds[-1]:.0f} s) {run.pseudo[-1]}",
            flush=True,
        )
    return run


def _mean_sd_se(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd, sd / math.sqrt(len(values))


def report(name: str, ds: ImageDataset, runs: list[SeedRun], args: argparse.Namespace) -> str:
    """The markdown of one dataset's figures."""
    n_test = round(len(ds) * 0.3)
    n_lab = round((len(ds) - n_test) * args.labelled)
    lines = [
        f"{name}: {len(ds)} images, {len(ds.classes)} classes; per seed a test split of "
        f"~{n_test} images the job never sees, ~{n_lab} labelled images (training + "
        f"validation, as a search splits them) and the other ~{len(ds) - n_test - n_lab} "
        f"as unlabelled images. Policy: `{json.dumps(FOUND_POLICIES[name])}`. Options: "
        f"{args.iterations} iterations, {args.pseudo_labels} pseudo-labels, threshold "
        f"{args.threshold}, balanced, student `{args.student}`.",
        "",
        "| model | test acc mean | std | s.e. | student - teacher (paired) | s.e. | trainings |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in range(args.iterations + 1):
        mean, sd, se = _mean_sd_se([r.test[step] for r in runs])
        label = "teacher" if step == 0 else f"student {step}"
        diff = (
            ""
            if step == 0
            else "{:+.4f} | {:.4f}".format(
                *_mean_sd_se([r.test[step] - r.test[0] for r in runs])[::2]
            )
        )
        lines.append(
            f"| {label} | {mean:.4f} | {sd:.4f} | {se:.4f} | {diff or ' | '} | {step + 1} |"
        )
    mean_diff, _, se_diff = _mean_sd_se([r.test[1] - r.test[0] for r in runs])
    met = "met" if mean_diff > se_diff else "NOT met"
    seconds = [statistics.fmean(r.seconds[s] for r in runs) for s in range(args.iterations + 1)]
    used = [r.pseudo[1].get("used", 0) for r in runs]
    confident = [r.pseudo[1].get("confident", 0) for r in runs]
    lines += [
        "",
        f"- target (first student beats the teacher beyond one s.e. of the paired "
        f"difference): {mean_diff:+.4f} vs s.e. {se_diff:.4f}: {met}",
        "- per-seed test accuracies (teacher, students): "
        + "; ".join(", ".join(f"{v:.4f}" for v in r.test) for r in runs),
        f"- first student's pseudo-labels: confident {confident}, rows used {used} of "
        f"{runs[0].pseudo[1].get('unlabelled', 0)} unlabelled images",
        "- mean seconds per training (teacher, students): "
        + ", ".join(f"{s:.0f}" for s in seconds),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labelled", type=float, default=0.1)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--pseudo-labels", choices=("hard", "soft"), default="soft")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--student", default='{"dropout": 0.3}', help="student options (JSON)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for name in args.datasets:
        spec = parse_dataset_spec(DATASETS[name])
        ds = load_dataset(spec)
        runs = [run_seed(name, ds, spec, args, seed) for seed in range(args.seeds)]
        body = report(name, ds, runs, args)
        print(body)
        if not args.no_write:
            command = "python -m benchmarks.self_training " + " ".join(
                argv if argv is not None else sys.argv[1:]
            )
            write_section(f"Self-training: {name}", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
