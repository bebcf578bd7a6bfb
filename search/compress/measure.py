"""Accuracy and CPU latency of a float model and its compressed variant, side by side.

A `Predictor` maps a batch of normalised float32 images (N, C, H, W) to logits, whatever runs
it (PyTorch or onnxruntime). Latency is measured per image on the CPU with the same batch of
validation images and the same thread count for both models, their timed runs interleaved so
that a busy machine slows both alike; each figure is the median over the repeats.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search.datasets import ImageDataset
from search.training.evaluation import normaliser

Predictor = Callable[[np.ndarray], np.ndarray]
#: Images per timed call and threads of both runtimes, unless a caller says otherwise.
LATENCY_BATCH, LATENCY_THREADS = 32, 1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op threads in PyTorch, restoring the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_predictor(model: nn.Module) -> Predictor:
    """A model in eval mode on the CPU as a `Predictor`."""
    model = model.to("cpu").eval()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(images)).float().numpy()

    return predict


def onnx_predictor(path: Path, threads: int = LATENCY_THREADS) -> Predictor:
    """An ONNX file run by onnxruntime's CPU provider with ``threads`` threads."""
    import onnxruntime as ort  # lazily: only compression jobs need it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: images})[0])

    return predict


def normalised(dataset: ImageDataset, mean: list[float], std: list[float]) -> np.ndarray:
    """The dataset's images as the model takes them: float32, normalised with the card's stats."""
    normalise = normaliser(mean, std, torch.device("cpu"))
    return normalise(dataset.images).numpy().astype(np.float32, copy=False)


def accuracy(predict: Predictor, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of a predictor on normalised images."""
    if len(images) == 0:
        raise ValueError("accuracy needs at least one image")
    hits = 0
    for start in range(0, len(images), batch):
        logits = predict(images[start : start + batch])
        hits += int((logits.argmax(1) == labels[start : start + batch]).sum())
    return hits / len(images)


@dataclass(frozen=True)
class Latency:
    """Milliseconds per image of a variant and of its float model, measured side by side."""

    variant_ms: float
    float_ms: float
    batch_size: int
    threads: int
    repeats: int

    @property
    def speedup(self) -> float:
        """How many times faster the variant runs than the float model."""
        return self.float_ms / self.variant_ms if self.variant_ms > 0 else float("inf")


def side_by_side(
    variant: Predictor,
    float_model: Predictor,
    images: np.ndarray,
    *,
    batch_size: int = LATENCY_BATCH,
    threads: int = LATENCY_THREADS,
    repeats: int = 20,
    warmup: int = 3,
) -> Latency:
    """Per-image CPU latency of both predictors on the same batch, runs interleaved.

    Args:
        variant: the compressed model (its runtime already set to ``threads`` threads).
        float_model: the float PyTorch model.
        images: normalised images; the first ``batch_size`` form the timed batch (repeated
            when there are fewer).
        batch_size: images per call.
        threads: PyTorch's thread count during the measurement.
        repeats: timed calls of each predictor.
        warmup: untimed calls of each first.
    """
    if len(images) == 0 or batch_size < 1 or repeats < 1:
        raise ValueError("latency needs images, a positive batch size and repeats")
    batch = np.ascontiguousarray(np.resize(images, (batch_size, *images.shape[1:])))
    times: dict[str, list[float]] = {"variant": [], "float": []}
    with torch_threads(threads):
        for _ in range(warmup):
            variant(batch)
            float_model(batch)
        for _ in range(repeats):
            for name, predict in (("variant", variant), ("float", float_model)):
                start = time.perf_counter()
                predict(batch)
                times[name].append(time.perf_counter() - start)
    per_image = {k: 1000.0 * statistics.median(v) / batch_size for k, v in times.items()}
    return Latency(per_image["variant"], per_image["float"], batch_size, threads, repeats)
