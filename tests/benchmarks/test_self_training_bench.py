"""The self-training benchmark's parts (test never seen, 10% labelled) and its report."""

from __future__ import annotations

import argparse

import torch

from benchmarks.self_training import SeedRun, _parts, report
from search.datasets import SyntheticSpec, load_dataset


def test_parts_keep_a_tenth_of_the_labels_and_a_test_split_apart() -> None:
    ds = load_dataset(SyntheticSpec(num_classes=4, per_class=50, size=8, channels=1))
    labelled, unlabelled, test = _parts(ds, 0.1, seed=0)
    assert len(test) == 60 and 14 <= len(labelled) <= 16  # a tenth of 140, per class
    assert len(labelled) + unlabelled.shape[0] + len(test) == len(ds)
    # No image is in two parts (the synthetic patterns are distinct images).
    flat = {bytes(i.numpy().tobytes()) for i in ds.images}
    assert len(flat) == len(ds)
    seen = [
        bytes(i.numpy().tobytes()) for i in torch.cat([labelled.images, unlabelled, test.images])
    ]
    assert len(set(seen)) == len(ds)


def test_report_states_whether_the_first_student_beats_the_teacher() -> None:
    ds = load_dataset(SyntheticSpec(num_classes=2, per_class=10, size=8, channels=1))
    args = argparse.Namespace(
        labelled=0.1, iterations=1, pseudo_labels="soft", threshold=0.3, student="{}"
    )
    pseudo = {"used": 5, "confident": 6, "unlabelled": 8}
    runs = [
        SeedRun(
            seed, test=[0.8, 0.9 + 0.01 * seed], val=[1, 1], seconds=[1, 1], pseudo=[{}, pseudo]
        )
        for seed in range(3)
    ]
    text = report("digits", ds, runs, args)
    assert "| student 1 | 0.9100 |" in text and ": met" in text
    runs[1].test[1] = 0.5
    assert "NOT met" in report("digits", ds, runs, args)
