"""The search-quality benchmark end to end, shrunk: tiny searches, one seed, one epoch."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks import search_quality
from benchmarks.fidelity_data import BenchmarkSplits
from search.datasets import DigitsSpec, load_dataset, stratified_split

TINY = {"strategy": "randaugment", "n_trials": 2, "baselines": ["none", "randaugment-2-9"],
        "recipe": {"epochs": 1, "batch_size": 32}, "final_pick": {"candidates": 1, "presets": 1}}  # fmt: skip


def _tiny_digits() -> BenchmarkSplits:
    ds = load_dataset(DigitsSpec())
    rest, test = stratified_split(ds, 0.5, seed=0)
    rest, _ = stratified_split(rest, 0.6, seed=1)  # ~360 images keep it quick
    train, val = stratified_split(rest, 0.3, seed=2)
    return BenchmarkSplits("tiny-digits", train, val, test, rest)


@pytest.mark.slow
def test_the_benchmark_searches_evaluates_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_quality, "SPECS", {"tiny": TINY})
    monkeypatch.setattr(search_quality, "BENCHMARK_SETS", {"tiny-digits": _tiny_digits})
    monkeypatch.setattr(search_quality, "DOCS", tmp_path)
    args = argparse.Namespace(specs=["tiny"], seeds=2, epochs=1, workers=1)
    body = search_quality._bench("tiny-digits", args, tmp_path / "work")
    assert "| found (tiny) |" in body and "| none |" in body
    assert "randaugment-2-9" in body and "Kendall tau" in body
    assert "proxy" in body and "-> final" in body
    assert (tmp_path / "benchmarks-search-quality-tiny-digits.png").stat().st_size > 0
    # The test split never reaches the search: only train/ and val/ are written.
    assert sorted(p.name for p in (tmp_path / "work" / "data").iterdir()) == ["train", "val"]
