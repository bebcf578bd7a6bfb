"""A safetensors cache of decoded datasets, keyed by a fingerprint of the source content."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from search.datasets.dataset import ImageDataset
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits

logger = logging.getLogger(__name__)

# Bump when the decoding rules change, so that old cache files are never read back.
# 2: image folders with train/ and val/ split folders, manifests, per-image split tags.
CACHE_FORMAT = 2


def cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    """The cache file of a given key."""
    return Path(cache_dir) / f"dataset-{key}.safetensors"


def read_cached(path: Path, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageDataset | None:
    """Read a cached dataset; None when absent or unreadable, or when its images are larger
    than ``limits.max_image_size`` (cached before that limit: it is then decoded anew, which
    refuses it with the reason). Its size in bytes is not checked again: it was checked when
    it was decoded, possibly under an operator's larger ``max_dataset_bytes``.

    The tensors map the file: pages are read as they are used, so a caller that looks at a few
    images touches only those.
    """
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["augsearch"])
            if meta.get("format") != CACHE_FORMAT:
                return None
            if max(handle.get_slice("images").get_shape()[2:]) > limits.max_image_size:
                logger.info("cached dataset %s has images over max_image_size", path)
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        return ImageDataset(
            images=tensors["images"],
            labels=tensors["labels"],
            classes=list(meta["classes"]),
            mean=[float(v) for v in meta["mean"]],
            std=[float(v) for v in meta["std"]],
            content_hash=str(meta["content_hash"]),
            groups=tensors.get("groups"),
            group_names=list(meta.get("group_names", [])),
            splits=tensors.get("splits"),
        )
    except Exception as exc:  # a damaged cache file must never block loading the source
        logger.warning("ignoring unreadable dataset cache %s: %s", path, exc)
        return None


def write_cached(path: Path, dataset: ImageDataset) -> None:
    """Write a dataset atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"images": dataset.images.contiguous(), "labels": dataset.labels.contiguous()}
    if dataset.groups is not None:
        tensors["groups"] = dataset.groups.to(torch.int64).contiguous()
    if dataset.splits is not None:
        tensors["splits"] = dataset.splits.to(torch.int64).contiguous()
    meta = {
        "format": CACHE_FORMAT,
        "classes": dataset.classes,
        "mean": dataset.mean,
        "std": dataset.std,
        "content_hash": dataset.content_hash,
        "group_names": dataset.group_names,
    }
    fd, tmp = tempfile.mkstemp(prefix=".dataset-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"augsearch": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
