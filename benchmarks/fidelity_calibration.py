"""Calibrate the fidelity benchmark's data sets: presets against no augmentation, independently.

Trains :mod:`benchmarks.evaluator`'s model on each data set's training part with each preset,
with and without a base crop, over several seeds, and scores it on the held-out test split.
A data set is fit for the benchmark when the strong presets beat no augmentation by more than
one point beyond the seed noise. Runs append one JSON line per training to ``--out`` and skip the trainings already
there, so a long calibration can be run in short pieces; ``--table`` prints the markdown table
of a file:

    python -m benchmarks.fidelity_calibration --datasets fonts --policies none randaugment-2-9
    python -m benchmarks.fidelity_calibration --table --out fidelity-calibration.jsonl

The calibration and its reading are in ``benchmarks/fidelity_calibration.md`` (raw rows:
``benchmarks/fidelity_calibration.jsonl``).

A policy name is a preset of :data:`ops.presets.PRESETS`, optionally followed by ``+cropN``
for a base random crop with N pixels of padding (``trivialaugment-wide+crop2``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.evaluator import DEFAULT_EPOCHS, train_and_test
from benchmarks.fidelity_data import BENCHMARK_SETS
from ops.policy import BaseAugment, Policy
from ops.presets import PRESETS

DEFAULT_POLICIES = [
    f"{name}{suffix}"
    for suffix in ("", "+crop2")
    for name in ("none", "randaugment-2-9", "trivialaugment-wide", "autoaugment-cifar10")
]


def policy_named(name: str) -> Policy:
    """The preset ``name``, with ``+cropN`` adding a base crop of N pixels of padding."""
    preset, _, extra = name.partition("+")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    policy = PRESETS[preset]
    if extra:
        if not extra.startswith("crop") or not extra[4:].isdigit():
            raise ValueError(f"cannot read {extra!r} in {name!r}; expected +cropN")
        policy = policy.model_copy(update={"base": BaseAugment(crop_padding=int(extra[4:]))})
    return policy


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return mean, se


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean ± s.e. per (data set, policy) and the paired gain over ``none``."""
    runs: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    sizes: dict[str, str] = {}
    for row in rows:
        runs[row["dataset"], row["policy"]][row["seed"]] = row
        sizes[row["dataset"]] = row["sizes"]
    lines = [
        "| data set | policy | seeds | test acc (mean ± s.e.) | gain over none (paired, ± s.e.) "
        "| s / training | train img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    # Data sets in the order first seen, each with its policies in the default order.
    datasets = list(dict.fromkeys(dataset for dataset, _ in runs))
    known = {name: i for i, name in enumerate(DEFAULT_POLICIES)}
    keys = sorted(runs, key=lambda k: (datasets.index(k[0]), known.get(k[1], len(known)), k[1]))
    for dataset, policy in keys:
        by_seed = runs[dataset, policy]
        accs = [r["test_accuracy"] for r in by_seed.values()]
        mean, se = _mean_se(accs)
        reference = runs.get((dataset, "none"), {})
        paired = [by_seed[s]["test_accuracy"] - reference[s]["test_accuracy"]
                  for s in by_seed if s in reference]  # fmt: skip
        gain = "" if not paired or policy == "none" else "{:+.1f} ± {:.1f}".format(
            *(100 * v for v in _mean_se(paired))
        )  # fmt: skip
        seconds = statistics.mean(r["seconds"] for r in by_seed.values())
        ips = statistics.mean(r["images_per_second"] for r in by_seed.values())
        lines.append(
            f"| {dataset} | {policy} | {len(accs)} | {100 * mean:.1f} ± {100 * se:.1f} | {gain} "
            f"| {seconds:.0f} | {ips:.0f} |"
        )
    notes = "\n".join(f"- {text}" for text in sizes.values())
    return "\n".join(lines) + "\n\n" + notes


def _read(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line]


def calibrate(args: argparse.Namespace) -> None:
    """Run every (data set, policy, seed) asked for and not yet in ``--out``, one line each."""
    out = Path(args.out)
    done = {(r["dataset"], r["policy"], r["seed"], r["epochs"]) for r in _read(out)}
    for dataset in args.datasets:
        splits = BENCHMARK_SETS[dataset]()
        for name in args.policies:
            policy = policy_named(name)
            for seed in args.seeds:
                if (dataset, name, seed, args.epochs) in done:
                    continue
                run = train_and_test(
                    policy, splits.training_part, splits.test, seed=seed, epochs=args.epochs
                )
                row = {
                    "dataset": dataset,
                    "sizes": splits.describe(),
                    "policy": name,
                    "seed": seed,
                    "epochs": args.epochs,
                    "test_accuracy": run.test_accuracy,
                    "train_loss": run.train_loss,
                    "seconds": run.seconds,
                    "images_per_second": run.images_per_second,
                }
                with out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def main() -> None:
    """Parse the command line; calibrate, or print the table of ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(BENCHMARK_SETS))
    parser.add_argument("--policies", nargs="+", default=DEFAULT_POLICIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="fidelity-calibration.jsonl")
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    if args.table:
        print(table(_read(Path(args.out))))
        return
    torch.set_num_threads(args.threads)
    calibrate(args)


if __name__ == "__main__":
    main()
