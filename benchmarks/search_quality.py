"""Search quality: the found policy against every baseline, retrained over several seeds.

For each dataset a search runs on the training part (``holdout_fraction`` keeps a test split it
never sees; for ``fonts`` the held-out part is whole typefaces). The found policy and each
baseline are then retrained with the same final recipe over ``--seeds`` seeds and scored on the
test split. Reports mean/std accuracy, the search cost as a multiple of one final training,
seconds per trial and trainer images/s.

    python -m benchmarks.search_quality [--datasets digits fonts] [--seeds 5] [--n-trials 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from benchmarks.report import write_section
from ops.presets import PRESETS
from search.datasets import load_dataset
from search.objective import split_for_search
from search.runner import run
from search.spec import DEFAULT_BASELINES, SearchSpec
from search.trainer import evaluate, train


def _spec(dataset: str, args: argparse.Namespace) -> SearchSpec:
    recipe = {"arch": "resnet8", "epochs": args.epochs, "batch_size": 64, "lr": 0.05}
    final = {**recipe, "epochs": args.final_epochs}
    return SearchSpec.model_validate(
        {
            "dataset": {"source": dataset},
            "strategy": args.strategy,
            "n_trials": args.n_trials,
            "num_sub_policies": 3,
            "recipe": recipe,
            "final_recipe": final,
            "train_size": args.train_size,
            "holdout_fraction": 0.25,
            "pruner": "none",
            "seed": 0,
        }
    )


def _bench(dataset: str, args: argparse.Namespace, workdir: Path) -> str:
    spec = _spec(dataset, args)
    started = time.perf_counter()
    result = run(
        spec,
        storage=f"sqlite:///{workdir / f'{dataset}.db'}",
        artifact_dir=workdir / "art",
        search_id=f"bench-{dataset}",
    )
    search_s = time.perf_counter() - started
    study = optuna.load_study(study_name=f"search-bench-{dataset}", storage=result.storage_url)
    trials = [t for t in study.get_trials() if t.user_attrs.get("role") in ("search", "baseline")]
    per_trial = statistics.mean(float(t.user_attrs["duration_s"]) for t in trials)
    data = split_for_search(load_dataset(spec.dataset), spec)
    # Compute cost, independent of how busy the machine was: images the search pushed through
    # the trainer (trials on the reduced set, the final training on the whole training part)
    # over the images of one final training of the retraining protocol below.
    search_images = sum(len(t.user_attrs.get("epochs", [])) for t in trials) * len(
        data.search_train
    ) + args.final_epochs * len(data.final_train)
    compute_cost = search_images / (args.final_epochs * len(data.search_train))
    assert data.test is not None and result.policy is not None
    # Retrain on the search's reduced training set: the regime the search optimised for.
    contenders = {"found": result.policy} | {name: PRESETS[name] for name in DEFAULT_BASELINES}
    rows, final_s, ips = [], [], []
    for name, policy in contenders.items():
        accs = []
        for seed in range(args.seeds):
            out = train(spec.final, policy, data.search_train, data.val, device="cpu", seed=seed)
            final_s.append(float(out.metrics["seconds"]))
            ips.append(float(out.metrics["images_per_second"]))
            acc = evaluate(out.model, data.test, "cpu", mean=out.mean, std=out.std)["accuracy"]
            accs.append(float(acc))
        mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append(f"| {name} | {mean:.4f} | {std:.4f} | {std / len(accs) ** 0.5:.4f} |")
    cost = search_s / statistics.mean(final_s)
    found = result.status.result or {}
    return (
        f"### {dataset}\n\n"
        f"train {len(data.search_train)} / val {len(data.val)} / test {len(data.test)} images; "
        f"{args.n_trials} {args.strategy} trials of {args.epochs} epochs; final "
        f"{args.final_epochs} epochs; {args.seeds} seeds. Search picked "
        f"`{found.get('source_role')}` {found.get('baseline') or ''}.\n\n"
        "| policy | test acc mean | std | s.e. |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Search compute {compute_cost:.1f}x one final training (images through the trainer); "
        f"wall time {search_s:.0f} s = {cost:.1f}x one final training's wall time; "
        f"{per_trial:.1f} s per trial; trainer {statistics.mean(ips):.0f} images/s.\n"
    )


def main() -> None:
    """Run the benchmark and write its section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "fonts"])
    parser.add_argument("--strategy", default="autoaugment")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--final-epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=300)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        body = "\n".join(_bench(d, args, Path(tmp)) for d in args.datasets)
    command = "python -m benchmarks.search_quality " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
    )
    write_section("Search quality", command, body)
    print(body)


if __name__ == "__main__":
    main()
