"""Final models: the airbench proxy against the timm ResNets a search's final recipe trains.

Each architecture is trained with the default final recipe (the default trial recipe trained
``FINAL_EPOCHS_FACTOR`` times longer, width 0.25) on ``digits`` with one fixed policy, and
scored on a held-out test split; the CPU seconds of each training are recorded beside its
accuracy, at the data's 32x32 and at the demo's 16x16.

Run: ``python -m benchmarks.final_models`` (one torch thread; figures go to
docs/benchmarks.md, section "Final models: airbench vs timm").
"""

from __future__ import annotations

import argparse
import os
import time
from unittest import mock

import torch

from ops.policy import BaseAugment
from ops.presets import PRESETS
from search import models
from search.datasets import DigitsSpec, load_dataset, stratified_split
from search.spec import FINAL_EPOCHS_FACTOR
from search.trainer import TrainerRecipe, evaluate, train

from .report import write_section

SECTION = "Final models: airbench vs timm"
DEFAULT_ARCHS = ("airbench", "timm:resnet18", "timm:resnet10t")


def _row(
    arch: str, size: int, seed: int, output_stride: int | None = None
) -> dict[str, float | str | int]:
    data = load_dataset(DigitsSpec(image_size=None if size == 32 else size))
    rest, test = stratified_split(data, 0.3, seed=0)
    train_set, val_set = stratified_split(rest, 0.2, seed=0)
    recipe = TrainerRecipe(arch=arch).scaled(FINAL_EPOCHS_FACTOR)  # type: ignore[arg-type]
    policy = PRESETS["trivialaugment-wide"].model_copy(
        update={"base": BaseAugment(crop_padding=2 if size <= 16 else 4)}
    )
    started = time.process_time()
    if output_stride is None:
        result = train(recipe, policy, train_set, val_set, device="cpu", seed=seed)
    else:  # the ablation: timm's stride whatever the image size
        with mock.patch.object(models, "output_stride_for", lambda side: output_stride):
            result = train(recipe, policy, train_set, val_set, device="cpu", seed=seed)
    seconds = time.process_time() - started
    test_acc = evaluate(result.model, test, "cpu", mean=result.mean, std=result.std)["accuracy"]
    return {
        "arch": arch if output_stride is None else f"{arch} (output_stride {output_stride})",
        "size": size,
        "seed": seed,
        "params": sum(p.numel() for p in result.model.parameters()),
        "val": float(result.metrics["val_accuracy"]),
        "test": float(test_acc),
        "cpu_s": seconds,
        "epochs": int(result.metrics.get("epochs", 0) or 0),
        "train_images": len(train_set),
    }


def main() -> None:
    """Train every architecture at every size and write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 16])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--ablate-stride",
        type=int,
        default=32,
        help="also train timm:resnet18 at 32x32 with this output stride (0: skip)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    rows = []
    for size in args.sizes:
        for arch in args.archs:
            for seed in range(args.seeds):
                row = _row(arch, size, seed)
                print(row, flush=True)
                rows.append(row)
    if args.ablate_stride:
        for seed in range(args.seeds):
            rows.append(_row("timm:resnet18", 32, seed, output_stride=args.ablate_stride))
            print(rows[-1], flush=True)
    lines = [
        "digits (scikit-learn's 1797 scans), 30% held out as the test split, the rest 80/20 "
        f"train/val ({rows[0]['train_images']} training images); policy TrivialAugmentWide with "
        "a padded random crop; default final recipe (1500 SGD steps, width 0.25); CPU seconds of "
        "the training process (one torch thread, validation every epoch included). The "
        "`output_stride` row is timm's ResNet without the small-image variant.",
        "",
        "| arch | image | params | val acc | test acc | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['size']}x{r['size']} | {r['params']:,} | {r['val']:.4f} | "
            f"{r['test']:.4f} | {r['cpu_s']:.0f} |"
        )
    flags = [
        *("--archs", *args.archs, "--sizes", *map(str, args.sizes)),
        *("--seeds", str(args.seeds), "--ablate-stride", str(args.ablate_stride)),
    ]
    command = "python -m benchmarks.final_models " + " ".join(flags)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(SECTION, command, body)


if __name__ == "__main__":
    main()
