"""Augmentation throughput: torchvision per image vs this library per image and batched, kornia.

Run ``python -m benchmarks.augment --threads 1``. Every row applies RandAugment(2, 9) on the
paper's scale (``m = 0.9``: torchvision ``num_magnitude_bins=11``, kornia ``m=27`` of 30) to the
same 256 images and reports images per second. Per-image rows take uint8 (C, H, W) tensors or
the same images as PIL, and are compared with torchvision on the same input type; batched rows
take the uint8 batch and are compared with torchvision per tensor image.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf

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


#: Row names of the references: torchvision per image, on tensors and on PIL images.
TV_TENSOR = "torchvision v2 RandAugment, per tensor image"
TV_PIL = "torchvision v2 RandAugment, per PIL image"


def _rows(size: int, repeats: int) -> list[tuple[str, float, float]]:
    """(method, images/s, ratio to torchvision per image on the same input) of every method."""
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (BATCH, 3, size, size), generator=gen, dtype=torch.uint8)
    pils = [tvf.to_pil_image(image) for image in batch]
    torch.manual_seed(0)  # torchvision and kornia draw from torch's default generator
    tv = v2.RandAugment(2, 9, num_magnitude_bins=11)
    ours_single = PolicyTransform(POLICY, seed=0)
    augmenter = BatchAugmenter(POLICY)
    # (name, run, the row it is compared with)
    runs: list[tuple[str, Callable[[], object], str]] = [
        (TV_TENSOR, lambda: [tv(x) for x in batch], TV_TENSOR),
        ("augsearch PolicyTransform, per tensor image", lambda: [ours_single(x) for x in batch],
         TV_TENSOR),
        (TV_PIL, lambda: [tv(x) for x in pils], TV_PIL),
        ("augsearch PolicyTransform, per PIL image", lambda: [ours_single(x) for x in pils],
         TV_PIL),
        ("augsearch BatchAugmenter, CPU batched", lambda: augmenter(batch, gen), TV_TENSOR),
    ]  # fmt: skip
    try:
        from kornia.augmentation.auto import RandAugment as KorniaRandAugment

        kornia = KorniaRandAugment(n=2, m=27)
        floats = batch.float() / 255
        runs.append(("kornia RandAugment, CPU batched", lambda: kornia(floats), TV_TENSOR))
    except ImportError:
        pass
    if torch.cuda.is_available():
        cuda_batch, cuda_gen = batch.cuda(), torch.Generator("cuda").manual_seed(0)
        runs.append(
            (
                "augsearch BatchAugmenter, CUDA batched",
                lambda: augmenter(cuda_batch, cuda_gen),
                TV_TENSOR,
            )
        )
    measured = _best_rates([run for _, run, _ in runs], BATCH, repeats)
    rates = {name: rate for (name, _, _), rate in zip(runs, measured, strict=True)}
    return [(name, rates[name], rates[name] / rates[ref]) for name, _, ref in runs]


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
    lines = [
        "| image size | method | images/s | vs torchvision per image, same input |",
        "|---|---|---|---|",
    ]
    for size in (32, 224):
        for name, rate, ratio in _rows(size, args.repeats):
            line = f"| {size}x{size} | {name} | {rate:,.0f} | {ratio:.2f}x |"
            lines.append(line)
            print(line, flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    body = (
        f"RandAugment(2, 9) (m = 0.9, standard ops) on the same {BATCH} images (uint8 tensors, "
        f"or PIL for the PIL rows), {args.threads} torch thread(s) (a DataLoader worker runs "
        f"one); best of {args.repeats} interleaved runs of each method.\n"
        f"Load average while measuring: {load} (other processes share the CPU: compare ratios).\n"
        "Targets: per image >= 1x torchvision per image on tensors; batched CPU >= 10x "
        "torchvision per image at 32x32 and >= 1x at 224x224.\n\n" + "\n".join(lines)
    )
    if not args.no_write:
        command = f"python -m benchmarks.augment --threads {args.threads} --repeats {args.repeats}"
        write_section("Augmentation throughput", command, body)


if __name__ == "__main__":
    main()
