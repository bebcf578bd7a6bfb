"""Search quality: found policies against the strong presets, judged by an independent training.

For each data set (``benchmarks.fidelity_data``) the training part is written as ``train/`` and
``val/`` folders, as a user would upload it, and searched through the product
(`search.runner.run`) with the README's example spec, which spells out the defaults, so it
is the empty spec's search too (checked at start), and with ``fast-autoaugment``. The test split (typefaces nobody searched on, for the grouped
sets) never reaches a search.

Every found policy and the strong presets (no augmentation; RandAugment(2, 9),
TrivialAugmentWide and AutoAugment-CIFAR10 applied with the found policy's base crop/flip,
and no augmentation with that base) are then trained by `benchmarks.evaluator`: another
model (a small VGG the search never uses), longer (``--epochs``, 60 by default), on the whole
training part, over ``--seeds`` seeds, scored on the test split.

Reported per search: wall time against one final training on the same workers, seconds per
proxy trial, trainings started, pruned, the final pick and its proxy fidelity (Kendall tau).
Each data set has its own section of docs/benchmarks.md:

    python -m benchmarks.search_quality --datasets fonts house-numbers digits
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from benchmarks.evaluator import DEFAULT_EPOCHS, train_and_test
from benchmarks.fidelity_data import BENCHMARK_SETS, BenchmarkSplits, write_image_folder
from benchmarks.report import write_section
from ops.policy import Policy
from ops.presets import PRESETS
from search import lifecycle
from search.runner import run
from search.spec import SearchSpec

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The README's example spec (the defaults, spelled out: the empty spec's search) and the
#: other strategy measured.
README_SPEC: dict[str, Any] = {"strategy": "randaugment", "n_trials": 10}
SPECS: dict[str, dict[str, Any]] = {
    "readme": README_SPEC,
    "fast-autoaugment": {"strategy": "fast-autoaugment", "n_trials": 40},
}
STRONG_PRESETS = ("randaugment-2-9", "trivialaugment-wide", "autoaugment-cifar10")


@dataclass
class SearchRun:
    """One search of the benchmark and what it cost."""

    label: str
    policy: Policy
    wall_s: float
    final_s: float
    proxy_s: float
    started: int
    pruned: int
    result: dict[str, Any]

    def row(self) -> str:
        """The search's line of the cost table."""
        tau = self.result.get("kendall_tau")
        return (
            f"| {self.label} | {self.wall_s:.0f} | {self.final_s:.0f} | "
            f"{self.wall_s / self.final_s:.1f}x | {self.proxy_s:.1f} | {self.started} | "
            f"{self.pruned} | {self.result.get('proxy_winner')} | {self.result.get('winner')} | "
            f"{'n/a' if tau is None else f'{tau:.2f}'} |"
        )


def _search(label: str, folder: Path, workdir: Path, workers: int) -> SearchRun:
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "imagefolder", "path": str(folder)}, **SPECS[label]}
    )
    url = f"sqlite:///{workdir / f'{label}.db'}"
    started = time.perf_counter()
    result = run(spec, storage=url, n_workers=workers, artifact_dir=workdir / "art",
                 search_id=label)  # fmt: skip
    wall = time.perf_counter() - started
    if result.policy is None or result.status.result is None:
        raise RuntimeError(f"search {label!r} ended {result.state}: {result.status.error}")
    trials = optuna.load_study(study_name=lifecycle.study_name(label), storage=url).get_trials()
    finals = [t for t in trials if lifecycle.role_of(t) == "final" and t.value is not None]
    # Every training reports its epochs; a starting point that reuses a baseline's result
    # (``reused_from``) did not train.
    trained = [
        t
        for t in trials
        if t.user_attrs.get("epochs") and t.user_attrs.get(lifecycle.REUSED_ATTR) is None
    ]
    proxies = [t for t in trained if lifecycle.role_of(t) != "final"]
    return SearchRun(
        label=label,
        policy=result.policy,
        wall_s=wall,
        final_s=statistics.mean(float(t.user_attrs["duration_s"]) for t in finals),
        proxy_s=statistics.mean(float(t.user_attrs["duration_s"]) for t in proxies),
        started=len(trained),
        pruned=sum(1 for t in trained if t.state == optuna.trial.TrialState.PRUNED),
        result=result.status.result,
    )


def _contenders(searches: list[SearchRun]) -> dict[str, Policy]:
    """Found policies, then no augmentation and the strong presets with the found base."""
    base = searches[0].policy.base
    policies = {f"found ({s.label})": s.policy for s in searches}
    policies["none"] = PRESETS["none"]
    if base != PRESETS["none"].base:
        policies["none + found base"] = Policy(kind="none", base=base)
    suffix = " + found base" if base != PRESETS["none"].base else ""
    for name in STRONG_PRESETS:
        policies[name + suffix] = PRESETS[name].model_copy(update={"base": base})
    return policies


def _evaluate_one(job: tuple[Policy, BenchmarkSplits, int, int]) -> float:
    torch.set_num_threads(1)
    policy, splits, seed, epochs = job
    run_ = train_and_test(policy, splits.training_part, splits.test, seed=seed, epochs=epochs)
    return run_.test_accuracy


def _evaluate(
    policies: dict[str, Policy], splits: BenchmarkSplits, args: argparse.Namespace
) -> dict[str, list[float]]:
    jobs = [(p, splits, seed, args.epochs) for p in policies.values() for seed in range(args.seeds)]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        accs = pool.map(_evaluate_one, jobs)
    return {name: accs[i * args.seeds : (i + 1) * args.seeds] for i, name in enumerate(policies)}


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0


def _verdict(results: dict[str, list[float]]) -> str:
    """Each found policy against the best preset (within one s.e.) and no augmentation."""
    presets = {k: statistics.mean(v) for k, v in results.items() if not k.startswith("found")}
    best = max(presets, key=presets.__getitem__)
    lines = []
    for name, accs in results.items():
        if not name.startswith("found"):
            continue
        mean, se = statistics.mean(accs), _se(accs)
        ok_best = mean >= presets[best] - max(se, _se(results[best]))
        ok_none = mean >= presets["none"]
        lines.append(
            f"- {name} {mean:.4f}: vs the best preset ({best}, {presets[best]:.4f}) within one "
            f"s.e.: {'met' if ok_best else 'NOT met'}; never below no augmentation "
            f"({presets['none']:.4f}): {'met' if ok_none else 'NOT met'}"
        )
    return "\n".join(lines)


def _plot(name: str, results: dict[str, list[float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    means = [statistics.mean(results[n]) for n in names]
    ses = [_se(results[n]) for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    colours = ["tab:green" if n.startswith("found") else "tab:gray" for n in names]
    ax.barh(names[::-1], means[::-1], xerr=ses[::-1], color=colours[::-1], capsize=3)
    ax.set_xlim(max(0.0, min(means) - 0.05), min(1.0, max(means) + 0.02))
    ax.set_xlabel("test accuracy, independent training (mean, 1 s.e.)")
    ax.set_title(f"Search quality on {name}")
    fig.tight_layout()
    path = DOCS / f"benchmarks-search-quality-{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _bench(name: str, args: argparse.Namespace, workdir: Path) -> str:
    splits = BENCHMARK_SETS[name]()
    folder = write_image_folder(splits, workdir / "data")
    searches = [_search(label, folder, workdir, args.workers) for label in args.specs]
    results = _evaluate(_contenders(searches), splits, args)
    rows = [
        f"| {k} | {statistics.mean(v):.4f} | {statistics.stdev(v) if len(v) > 1 else 0:.4f} | "
        f"{_se(v):.4f} |"
        for k, v in results.items()
    ]
    chart = _plot(name, results)
    found = "\n".join(
        f"- `{s.label}` (`{SPECS[s.label]}`): `{s.policy.model_dump_json(exclude_defaults=True)}`"
        for s in searches
    )
    picks = "\n".join(
        f"- `{s.label}`: "
        + "; ".join(
            f"{r['label']} proxy {r['proxy_value']:.4f} -> final "
            + ("failed" if r["final_value"] is None else f"{r['final_value']:.4f}")
            for r in s.result.get("final_pick", [])
        )
        + _pick_verdict(s.result)
        for s in searches
    )
    return (
        f"{splits.describe()}. Searches on the train/val folders with {args.workers} worker "
        f"processes (one torch thread each); evaluation: a small VGG the search never uses, "
        f"{args.epochs} epochs on the whole training part ({len(splits.training_part)} images), "
        f"{args.seeds} seeds, scored on the test split.\n\n"
        f"Found policies:\n{found}\n\n"
        "| policy | test acc mean | std | s.e. |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"{_verdict(results)}\n\n![search quality on {name}]({chart.name})\n\n"
        "Search cost (wall time of the whole search, trials, baselines and final pick, against "
        "one final training on the same workers; proxy s = mean seconds of a proxy training):\n\n"
        "| search | wall s | one final s | ratio | proxy s | trainings | pruned | proxy's pick "
        "| final pick's winner | Kendall tau |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(s.row() for s in searches)
        + f"\n\nFinal pick (validation accuracy, proxy -> final recipe):\n{picks}\n\n"
        f"Load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}.\n"
    )


def _pick_verdict(result: dict[str, Any]) -> str:
    """How the final pick decided, and whether a saturated validation ended the search."""
    text = f"; decided by {result['decided_by']}" if result.get("decided_by") else ""
    ended = result.get("ended_early")
    if ended:
        text += (f"; the preset's final scored 1.000 on validation, so the search ended after "
                 f"{ended['search_trials']} of {ended['n_trials']} search trials")  # fmt: skip
    return text


def main() -> None:
    """Run the benchmark and write one section of docs/benchmarks.md per data set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(BENCHMARK_SETS))
    parser.add_argument("--specs", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = {"dataset": {"source": "digits"}}
    if SearchSpec.model_validate({**base, **README_SPEC}) != SearchSpec.model_validate(base):
        raise SystemExit("the README's example spec no longer spells out the defaults")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            body = _bench(name, args, Path(tmp))
        command = (
            f"python -m benchmarks.search_quality --datasets {name} --specs "
            f"{' '.join(args.specs)} --seeds {args.seeds} --epochs {args.epochs} "
            f"--workers {args.workers}"
        )
        write_section(f"Search quality: {name}", command, body)
        print(body, flush=True)


if __name__ == "__main__":
    main()
