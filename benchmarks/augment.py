"""Augmentation throughput: torchvision per image vs this library per image and batched, kornia.

Run ``python -m benchmarks.augment``. Every row applies RandAugment(2, 9) on the paper's scale
(``m = 0.9``: torchvision ``num_magnitude_bins=11``, kornia ``m=27`` of 30) to uint8 batches of
256 images and reports images per second; ratios are against torchvision per image.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torchvision.transforms import v2

from benchmarks.report import write_section
from ops.apply import BatchAugmenter, PolicyTransform
from ops.presets import PRESETS

BATCH = 256
POLICY = PRESETS["randaugment-2-9"]


def _best_rates(runs: list[Callable[[], object]], images: int, repeats: int) -> list[float]:
    """Best-of-``repeats`` images/s of each run, measured interleaved.

    Other processes may share the CPU: interleaving exposes every method to the same load and
    the best (shortest) time of each is the least disturbed one, so ratios stay meaningful.
    """
    best = [float("inf")] * len(runs)
    for run in runs:
        run()  # warm-up
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - start)
    return [images / t for t in best]


def _rows(size: int, repeats: int) -> list[tuple[str, float]]:
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (BATCH, 3, size, size), generator=gen, dtype=torch.uint8)
    torch.manual_seed(0)  # torchvision and kornia draw from torch's default generator
    tv = v2.RandAugment(2, 9, num_magnitude_bins=11)
    ours_single = PolicyTransform(POLICY, seed=0)
    augmenter = BatchAugmenter(POLICY)
    runs: list[tuple[str, Callable[[], object]]] = [
        ("torchvision v2 RandAugment, per image", lambda: [tv(x) for x in batch]),
        ("augsearch PolicyTransform, per image", lambda: [ours_single(x) for x in batch]),
        ("augsearch BatchAugmenter, CPU batched", lambda: augmenter(batch, gen)),
    ]
    try:
        from kornia.augmentation.auto import RandAugment as KorniaRandAugment

        kornia = KorniaRandAugment(n=2, m=27)
        floats = batch.float() / 255
        runs.append(("kornia RandAugment, CPU batched", lambda: kornia(floats)))
    except ImportError:
        pass
    if torch.cuda.is_available():
        cuda_batch, cuda_gen = batch.cuda(), torch.Generator("cuda").manual_seed(0)
        runs.append(
            ("augsearch BatchAugmenter, CUDA batched", lambda: augmenter(cuda_batch, cuda_gen))
        )
    rates = _best_rates([run for _, run in runs], BATCH, repeats)
    return [(name, rate) for (name, _), rate in zip(runs, rates, strict=True)]


def main() -> None:
    """Measure, print and record the figures in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions per size")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    lines = ["| image size | method | images/s | vs torchvision per image |", "|---|---|---|---|"]
    for size in (32, 224):
        rows = _rows(size, args.repeats)
        base = rows[0][1]
        for name, rate in rows:
            line = f"| {size}x{size} | {name} | {rate:,.0f} | {rate / base:.2f}x |"
            lines.append(line)
            print(line, flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    body = (
        f"RandAugment(2, 9) (m = 0.9, standard ops), uint8 batches of {BATCH}, "
        f"{args.threads} torch threads; best of {args.repeats} interleaved runs of each method.\n"
        f"Load average while measuring: {load} (other processes share the CPU: compare ratios).\n"
        "Targets: batched CPU >= 10x torchvision per image at 32x32 and >= 1x at 224x224.\n\n"
        + "\n".join(lines)
    )
    if not args.no_write:
        write_section("Augmentation throughput", "python -m benchmarks.augment", body)


if __name__ == "__main__":
    main()
