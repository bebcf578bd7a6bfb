"""Text search quality: the found EDA policy against no augmentation and EDA's defaults.

On the built-in ``wordnet-topics`` set (12 topics x 300 WordNet noun definitions; a fixed fifth
of each topic is the test split), for ``--sizes`` training sizes (500 texts and the whole
training part by default): one search (`search.text.search.run_text_search`, seed 0) on the
training texts only, then the found policy, no augmentation and EDA's defaults (alpha = 0.1
for each op, 9 copies) are trained by an independent recipe (twice the proxy's epochs) over
``--seeds`` seeds and scored on the test split, which no search read. Also measured: text-op
throughput per sentence on the test texts. Figures go to their own section of
docs/benchmarks.md:

    python -m benchmarks.text_quality --sizes 500 full --seeds 5
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from benchmarks.report import write_section
from ops.lexicon import WordNet
from ops.policy import Policy
from ops.text import TEXT_OPS, TextAugmenter, apply_text_op
from ops.text_presets import eda_policy
from search.datasets.spec import WordNetTopicsSpec
from search.text.dataset import TextDataset, stratified_indices
from search.text.loader import load_text_dataset
from search.text.search import TextSearchSpec, run_text_search, training_part
from search.text.trainer import TextRecipe, accuracy, train_text_model

SECTION = "Text search quality: wordnet-topics"
PROXY = TextRecipe()
EVALUATOR = TextRecipe(epochs=2 * PROXY.epochs)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["500", "full"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wordnet = WordNet()
    spec = WordNetTopicsSpec()
    ds = load_text_dataset(spec)
    train_all, test = training_part(ds), ds.part("test")
    rows = [
        "| training texts | policy | test accuracy (mean ± s.e.) | seeds |",
        "|---|---|---|---|",
    ]
    notes = []
    for size in args.sizes:
        n = None if size == "full" else int(size)
        train = train_all
        if n is not None:
            keep, _ = stratified_indices(train_all.labels, 0.01, 0, size=n)
            train = train_all.subset(keep)
        search_spec = TextSearchSpec(
            dataset=spec, n_trials=args.trials, train_size=n, repeats=2 if n else 1
        )
        start = time.perf_counter()
        found = run_text_search(search_spec, ds, wordnet)
        took = time.perf_counter() - start
        notes.append(
            f"- {len(train)} texts: search of {len(found.scored)} scored policies in {took:.0f} s; "
            f"found: {' '.join(found.policy.describe()).strip()} (validation {found.value:.3f})"
        )
        for name, policy in (("found", found.policy), ("none", Policy(kind="none")),
                             ("EDA defaults", eda_policy())):  # fmt: skip
            mean, se = _mean_se(_evaluate(train, test, policy, args.seeds))
            rows.append(f"| {len(train)} | {name} | {mean:.4f} ± {se:.4f} | {args.seeds} |")
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"Built-in `wordnet-topics`: {len(ds)} texts, {ds.num_classes} topics, "
            f"{len(test)} test texts never read by a search. Evaluator: the n-gram model, "
            f"{EVALUATOR.epochs} epochs (the proxy trains {PROXY.epochs}); 2-core shared CPU VM.",
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
            ["--sizes", *args.sizes, "--seeds", str(args.seeds), "--trials", str(args.trials)]
        )
        write_section(SECTION, command, body)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
