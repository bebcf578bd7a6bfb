"""Text search quality: the found EDA policy against no augmentation and EDA's defaults.

On the built-in ``wordnet-topics`` set (12 topics x 300 WordNet noun definitions; a fixed fifth
of each topic is the test split), for ``--sizes`` training sizes (500 texts and the whole
training part by default): the training texts only are written as a CSV table, as a user would
register them (`text-table`), and searched through the product (`search.runner.run`, the
empty text spec but for ``--trials``, on ``--workers`` worker processes). The found policy, no
augmentation and EDA's defaults (alpha = 0.1 for each op, 9 copies) are then trained on those
texts by the final recipe over ``--seeds`` other seeds and scored on the test split, which no
search read. Also measured: text-op throughput per sentence on the test texts. Figures go to
their own section of docs/benchmarks.md:

    python -m benchmarks.text_quality --sizes 500 full --seeds 5
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import write_section
from ops.lexicon import WordNet
from ops.policy import Policy
from ops.text import TEXT_OPS, TextAugmenter, apply_text_op
from ops.text_presets import eda_policy
from search.datasets.spec import WordNetTopicsSpec
from search.runner import SearchResult, run
from search.spec import SearchSpec
from search.text.dataset import TextDataset, stratified_indices
from search.text.loader import load_text_dataset
from search.text.search import training_part
from search.text.trainer import TextRecipe, accuracy, train_text_model

SECTION = "Text search quality: wordnet-topics"
#: The evaluator: the product's text recipe (the final trainings'), with seeds no search used.
EVALUATOR = TextRecipe()


def _mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.fmean(values), se


def _evaluate(train: TextDataset, test: TextDataset, policy: Policy, seeds: int) -> list[float]:
    scores = []
    for seed in range(seeds):
        result = train_text_model(train, policy, EVALUATOR, seed=100 + seed)
        scores.append(accuracy(result.model, result.tokenizer, test))
    return scores


def _throughput(texts: list[str], wordnet: WordNet) -> list[str]:
    lines = ["| op (alpha 0.1) | µs per sentence |", "|---|---|"]
    rng = np.random.default_rng(0)
    for name in TEXT_OPS:
        for text in texts:  # warm the synonym cache: steady-state cost
            apply_text_op(name, text, 0.2, rng, wordnet)
        start = time.perf_counter()
        for text in texts:
            apply_text_op(name, text, 0.2, rng, wordnet)
        lines.append(f"| {name} | {(time.perf_counter() - start) / len(texts) * 1e6:.1f} |")
    augmenter = TextAugmenter(eda_policy(), wordnet)
    start = time.perf_counter()
    augmenter.augment(texts, rng)
    per = (time.perf_counter() - start) / len(texts) * 1e6
    lines.append(f"| EDA defaults (one op drawn per sentence) | {per:.1f} |")
    return lines


def _write_table(train: TextDataset, folder: Path) -> Path:
    """The training texts as a CSV table (``text``, ``label``), as a user would register it."""
    path = folder / f"train-{len(train)}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for text, label in zip(train.texts, train.labels.tolist(), strict=True):
            writer.writerow([text, train.classes[label]])
    return path


def _search(train: TextDataset, folder: Path, trials: int, workers: int) -> SearchResult:
    spec = SearchSpec.model_validate(
        {"dataset": {"source": "text-table", "path": str(_write_table(train, folder))},
         "strategy": "eda", "n_trials": trials}
    )  # fmt: skip
    result = run(spec, storage=f"sqlite:///{folder / f'{len(train)}.db'}", n_workers=workers,
                 artifact_dir=folder / "art", search_id=f"text-{len(train)}")  # fmt: skip
    if result.policy is None or result.status.result is None:
        raise RuntimeError(f"the text search ended {result.state}: {result.status.error}")
    return result


def _pick_line(result: SearchResult) -> str:
    rows = (result.status.result or {}).get("final_pick", [])
    return "; ".join(
        f"{r['label']} proxy {r['proxy_value']:.3f} -> final {r['final_value']:.3f}"
        for r in rows
        if r.get("final_value") is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["500", "full"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wordnet = WordNet()
    ds = load_text_dataset(WordNetTopicsSpec())
    train_all, test = training_part(ds), ds.part("test")
    rows = [
        "| training texts | policy | test accuracy (mean ± s.e.) | seeds |",
        "|---|---|---|---|",
    ]
    notes = []
    for size in args.sizes:
        train = train_all
        if size != "full":
            keep, _ = stratified_indices(train_all.labels, 0.01, 0, size=int(size))
            train = train_all.subset(keep)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            found = _search(train, Path(tmp), args.trials, args.workers)
            took = time.perf_counter() - start
        assert found.policy is not None
        notes.append(
            f"- {len(train)} texts: search in {took:.0f} s ({args.workers} workers); found: "
            f"{' '.join(found.policy.describe()).strip()}; final pick (validation accuracy, "
            f"final: 5-fold cross-validation below 1,000 validation texts): {_pick_line(found)}"
        )
        for name, policy in (("found", found.policy), ("none", Policy(kind="none")),
                             ("EDA defaults", eda_policy())):  # fmt: skip
            mean, se = _mean_se(_evaluate(train, test, policy, args.seeds))
            rows.append(f"| {len(train)} | {name} | {mean:.4f} ± {se:.4f} | {args.seeds} |")
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"Built-in `wordnet-topics`: {len(ds)} texts, {ds.num_classes} topics, "
            f"{len(test)} test texts never read by a search. Searched through the product "
            f"(`eda` strategy, {args.trials} trials, the text spec's defaults). Evaluator: "
            f"the n-gram model with the final recipe ({EVALUATOR.epochs} passes over the "
            f"texts), on all the training texts, seeds 100+; 2-core CPU VM.",
            "",
            *rows,
            "",
            *notes,
            "",
            "Text-op throughput (one CPU thread, WordNet lookups cached, test texts):",
            "",
            *_throughput(test.texts, wordnet),
        ]
    )
    print(body)
    if not args.no_write:
        command = "python -m benchmarks.text_quality " + " ".join(
            ["--sizes", *args.sizes, "--seeds", str(args.seeds), "--trials", str(args.trials),
             "--workers", str(args.workers)]
        )  # fmt: skip
        write_section(SECTION, command, body)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
