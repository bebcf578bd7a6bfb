"""Compressed checkpoints: float vs ONNX vs int8 vs pruned, on the CPU.

For each dataset the final model is trained as a search's final training would train it (the
default final recipe on the whole training part, here with TrivialAugmentWide as its policy),
or read from a checkpoint a search wrote (``--keep DIR`` reads ``DIR/<dataset>.safetensors``,
or writes the trained one there); then each variant is made by the
code the workers run (`search.compress.build.make_variant`) and measured beside the float
PyTorch model: size on disk, accuracy on the validation part, CPU milliseconds per image at
batch 32 with one thread (the two models' timed calls interleaved).

Run: ``python -m benchmarks.compress [--datasets digits fonts]`` (one torch thread; figures go
to docs/benchmarks.md, section "Compressed checkpoints").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ops.presets import PRESETS
from search.checkpoints import ModelCard, build_model_from_card, card_metadata, read_card
from search.compress.build import VariantCard, make_variant
from search.compress.queue import FORMATS
from search.datasets import load_dataset
from search.objective import SearchData, split_for_search
from search.spec import SearchSpec
from search.trainer import train

from .report import write_section

SECTION = "Compressed checkpoints"
POLICY = "trivialaugment-wide"


def _spec(dataset: str) -> SearchSpec:
    return SearchSpec.model_validate({"dataset": {"source": dataset}})


def _train_final(spec: SearchSpec, data: SearchData) -> tuple[torch.nn.Module, ModelCard]:
    """The final model as a search's final training makes it, with a preset policy."""
    recipe = spec.final.for_size(len(data.final_train))
    policy = PRESETS[POLICY]
    started = time.perf_counter()
    result = train(recipe, policy, data.final_train, data.val, device="cpu", seed=spec.seed)
    print(f"  trained {recipe.arch} in {time.perf_counter() - started:.0f} s")
    ds = data.final_train
    card = ModelCard(
        arch=recipe.arch, num_classes=ds.num_classes, classes=list(ds.classes),
        in_channels=ds.channels, image_size=ds.image_size, mean=list(result.mean or ds.mean),
        std=list(result.std or ds.std), policy=policy.model_dump(mode="json"),
        recipe=recipe.model_dump(mode="json"),
        metrics={"val_accuracy": float(result.metrics["val_accuracy"])},
    )  # fmt: skip
    return result.model.to("cpu").eval(), card


def _load(path: Path) -> tuple[torch.nn.Module, ModelCard]:
    from safetensors.torch import load

    card = read_card(path)
    model = build_model_from_card(card)
    model.load_state_dict(load(path.read_bytes()))
    return model.eval(), card


def measure(dataset: str, checkpoint: Path | None, repeats: int) -> list[VariantCard]:
    """Make and measure every variant of one dataset's final model.

    Args:
        dataset: ``digits`` or ``fonts``.
        checkpoint: a float safetensors file with its card: read when it exists, else written
            there after the training (None: trained and not kept).
        repeats: timed calls of each model.
    """
    spec = _spec(dataset)
    data = split_for_search(load_dataset(spec.dataset), spec)
    if checkpoint is not None and checkpoint.is_file():
        model, card = _load(checkpoint)
    else:
        model, card = _train_final(spec, data)
    cards = []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = checkpoint or Path(tmp) / "model.safetensors"
        if not float_path.is_file():
            float_path.parent.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(float_path), metadata=card_metadata(card))
        for fmt in FORMATS:
            _, variant = make_variant(
                model, card, fmt, Path(tmp), train=data.final_train, val=data.val,
                float_size_bytes=float_path.stat().st_size, seed=spec.seed, repeats=repeats,
            )  # fmt: skip
            print(f"  {fmt}: {_cells(variant)}")
            cards.append(variant)
    return cards


def _cells(card: VariantCard) -> str:
    return " | ".join(_row(card)[1:])


def _row(card: VariantCard) -> list[str]:
    extra = {
        "onnx": f"opset {card.onnx_opset}, max abs diff {card.max_abs_diff or 0:.1e}",
        "int8": f"{(card.quantization or {}).get('mode')}, QDQ, "
        f"{(card.quantization or {}).get('calibration_images')} calibration images",
        "pruned": f"sparsity {card.sparsity or 0:.2f}, fine-tune "
        f"{(card.finetune or {}).get('epochs')} epoch(s)",
    }[card.format]
    drop = 100 * (card.float_val_accuracy - card.val_accuracy)
    return [
        card.format,
        card.runtime.split("+")[0],
        f"{card.size_bytes / 1024:.0f} KiB "
        f"({_times(card.float_size_bytes / card.size_bytes, 'smaller', 'larger')})",
        f"{card.val_accuracy:.4f} ({drop:+.2f} pts lost)",
        f"{card.latency_ms:.3f} ms ({_times(card.speedup, 'faster', 'slower')})",
        extra,
    ]


def _times(ratio: float, better: str, worse: str) -> str:
    """``3.70x smaller`` for a ratio above one, ``1.02x larger`` below."""
    return f"{ratio:.2f}x {better}" if ratio >= 1 else f"{1 / ratio:.2f}x {worse}"


def _table(dataset: str, cards: list[VariantCard]) -> str:
    first = cards[0]
    model = first.model
    lines = [
        f"### {dataset}: {model['arch']} ({model['recipe'].get('width')} width), "
        f"{first.val_images} validation images",
        "",
        f"Float (PyTorch): {first.float_size_bytes / 1024:.0f} KiB safetensors, val accuracy "
        f"{first.float_val_accuracy:.4f}, {first.float_latency_ms:.3f} ms per image "
        f"(batch {first.latency_batch_size}, {first.latency_threads} thread; each variant's "
        "float figure is re-measured beside it, the ratios use that).",
        "",
        "| variant | runtime | size on disk | val accuracy | CPU latency / image | notes |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(_row(card)) + " |" for card in cards]
    by_format = {card.format: card for card in cards}
    if "onnx" in by_format and "int8" in by_format:
        onnx, int8 = by_format["onnx"], by_format["int8"]
        lines += [
            "",
            f"Against the float ONNX model in onnxruntime instead of PyTorch, int8 is "
            f"{onnx.size_bytes / int8.size_bytes:.2f}x smaller and "
            f"{_times(onnx.latency_ms / int8.latency_ms, 'faster', 'slower')} "
            "(latencies from the two rows above, measured in separate runs).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=["digits", "fonts"])
    parser.add_argument(
        "--keep",
        type=Path,
        help="folder of the float models: <dataset>.safetensors is read if there (a search's "
        "final checkpoint will do), else trained and written there",
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per model")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    tables: list[str] = []
    for dataset in args.datasets:
        print(dataset)
        checkpoint = args.keep / f"{dataset}.safetensors" if args.keep else None
        tables.append(_table(dataset, measure(dataset, checkpoint, args.repeats)))
    body = _notes() + "\n\n" + "\n\n".join(tables)
    print(body)
    if not args.no_write:
        command = "python -m benchmarks.compress --datasets " + " ".join(args.datasets)
        write_section(SECTION, command, body)


def _notes() -> str:
    notes: dict[str, Any] = {
        "what": "the final model of a search trained with the default final recipe on the "
        f"whole training part ({POLICY} as its policy), then each variant made by the "
        "workers' code and measured beside the float PyTorch model on the validation part",
        "latency": "median of interleaved timed calls of the variant and the float model, "
        "batch 32, one thread for both runtimes; ONNX and int8 run on onnxruntime's CPU "
        "provider, pruned on PyTorch (unstructured zeros take neither less space in a dense "
        "file nor less time in dense kernels)",
        "machine": f"{os.cpu_count()} CPU cores, shared with other jobs while measured (load "
        f"average {os.getloadavg()[0]:.1f} at the end): absolute times are noisy, the ratios "
        "come from interleaved runs",
    }
    return "\n".join(f"- {k}: {v}." for k, v in notes.items())


if __name__ == "__main__":
    main()
