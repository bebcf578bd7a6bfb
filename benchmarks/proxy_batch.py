"""Proxy batch size: does a CPU proxy of small batches rank policies as one of big batches?

A proxy of the default recipe takes 500 optimizer steps; on the CPU a step costs in proportion
to its images, so the derived batch size (``TrainerRecipe.max_auto_batch``) sets its cost.
This trains the default proxy on a benchmark set's search split (train, validated on val)
for the strong presets, no augmentation and a few RandAugment policies of the kind searches
found, under each batch cap and seed, and prints per cap the mean validation accuracy of each
policy, its rank, the rank agreement with the largest cap (Kendall tau over the policy means)
and the seconds per proxy. One torch thread per training process.

    OMP_NUM_THREADS=1 python -m benchmarks.proxy_batch --dataset fonts --caps 64 256 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from dataclasses import dataclass

import torch
from rich.progress import track
from scipy.stats import kendalltau

from benchmarks.fidelity_data import BENCHMARK_SETS
from benchmarks.report import write_section
from ops.policy import BaseAugment, Policy
from ops.presets import PRESETS
from search.training.loop import train
from search.training.recipe import TrainerRecipe

#: Policies ranked: no augmentation, the strong presets, and RandAugment policies like those
#: the benchmark's searches served (docs/benchmarks.md, Search quality).
POLICIES: dict[str, Policy] = {
    "none": PRESETS["none"],
    "randaugment-2-9": PRESETS["randaugment-2-9"],
    "trivialaugment-wide": PRESETS["trivialaugment-wide"],
    "autoaugment-cifar10": PRESETS["autoaugment-cifar10"],
    "RA N=1 M=0 noise 0.36": Policy(kind="randaugment", n=1, m=0.0, m_std=0.36),
    "RA N=1 M=0.1 noise 0.28 crop 4": Policy(
        kind="randaugment", n=1, m=0.1, m_std=0.28, base=BaseAugment(crop_padding=4)
    ),
    "RA N=2 M=0.5 crop 4": Policy(kind="randaugment", n=2, m=0.5, base=BaseAugment(crop_padding=4)),
}


@dataclass(frozen=True)
class Job:
    dataset: str
    policy: str
    cap: int
    seed: int


@dataclass(frozen=True)
class Outcome:
    job: Job
    val_accuracy: float
    seconds: float
    batch_size: int
    epochs: int


def _run(job: Job) -> Outcome:
    torch.set_num_threads(1)
    splits = BENCHMARK_SETS[job.dataset]()
    recipe = TrainerRecipe(max_auto_batch=job.cap)
    resolved = recipe.for_size(len(splits.train)).with_proxy_validation()
    started = time.perf_counter()
    result = train(resolved, POLICIES[job.policy], splits.train, splits.val, device="cpu",
                   seed=job.seed)  # fmt: skip
    return Outcome(job, float(result.metrics["val_accuracy"]), time.perf_counter() - started,
                   resolved.batch_size or 0, resolved.epochs or 0)  # fmt: skip


def _table(outcomes: list[Outcome], caps: list[int]) -> str:
    means = {
        (cap, name): statistics.mean(
            o.val_accuracy for o in outcomes if o.job.cap == cap and o.job.policy == name
        )
        for cap in caps
        for name in POLICIES
    }
    reference = max(caps)
    lines = []
    header = "| policy | " + " | ".join(f"val acc, cap {c} (rank)" for c in caps) + " |"
    lines += [header, "|---|" + "---|" * len(caps)]
    ranks: dict[int, dict[str, int]] = {}
    for cap in caps:
        order = sorted(POLICIES, key=lambda n: -means[(cap, n)])
        ranks[cap] = {name: 1 + order.index(name) for name in POLICIES}
    for name in POLICIES:
        cells = " | ".join(f"{means[(cap, name)]:.3f} ({ranks[cap][name]})" for cap in caps)
        lines.append(f"| {name} | {cells} |")
    lines.append("")
    for cap in caps:
        mine = [o for o in outcomes if o.job.cap == cap]
        tau = kendalltau(
            [means[(cap, n)] for n in POLICIES], [means[(reference, n)] for n in POLICIES]
        ).statistic
        lines.append(
            f"- cap {cap}: batch {mine[0].batch_size}, {mine[0].epochs} epochs, "
            f"{statistics.mean(o.seconds for o in mine):.1f} s per proxy; Kendall tau with cap "
            f"{reference}: {tau:.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fonts", choices=list(BENCHMARK_SETS))
    parser.add_argument("--caps", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    splits = BENCHMARK_SETS[args.dataset]()
    jobs = [Job(args.dataset, name, cap, seed) for cap in args.caps for seed in args.seeds
            for name in POLICIES]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        outcomes = list(track(pool.imap(_run, jobs), total=len(jobs), description="proxies"))
    body = (
        f"{splits.describe()}. The default proxy (airbench, width 0.25, 500 steps, SGD lr 0.1, "
        f"label smoothing 0.1) trained on the search's training split and scored on its "
        f"validation typeface, seeds {' '.join(map(str, args.seeds))} (mean), "
        f"{args.workers} trainings at once.\n\n" + _table(outcomes, args.caps)
    )
    command = (
        f"python -m benchmarks.proxy_batch --dataset {args.dataset} --caps "
        f"{' '.join(map(str, args.caps))} --seeds {' '.join(map(str, args.seeds))}"
    )
    write_section(f"Proxy batch size: {args.dataset}", command, body)
    print(body)


if __name__ == "__main__":
    main()
