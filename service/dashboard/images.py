"""The policy preview: real dataset images, each shown original and augmented by a policy."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from service.datasets.service import decode_limits, thumbnail, tile_size
from service.errors import InvalidInput
from service.settings import Settings

if TYPE_CHECKING:
    from torch import Tensor

PREVIEW_ROWS = 6
PREVIEW_AUGMENTED = 5
GAP = 6  # pixels between the original column and the augmented ones
# Images are drawn in squares of this side: small ones enlarged, large ones shrunk.
PREVIEW_CELL = 96


def _rows(labels: Tensor, rows: int) -> list[int]:
    """Indices of ``rows`` images spread over the classes (first image of each class in turn)."""
    import torch

    picks: list[int] = []
    classes = torch.unique(labels).tolist()
    depth = 0
    while len(picks) < rows and depth < len(labels):
        for cls in classes:
            found = (labels == cls).nonzero().flatten()
            if depth < len(found) and len(picks) < rows:
                picks.append(int(found[depth]))
        depth += 1
    return picks


def render_preview(images: Tensor, labels: Tensor, policy: dict[str, Any], seed: int) -> bytes:
    """A PNG grid: one row per sample image, the original then augmented copies.

    Args:
        images: uint8 (N, C, H, W) dataset images.
        labels: int64 (N,) labels, used to spread the rows over the classes.
        policy: Policy JSON.
        seed: Seed of the augmentation draws, so the same request gives the same picture.

    Returns:
        PNG bytes.
    """
    import torch
    from PIL import Image

    from ops.apply import BatchAugmenter
    from ops.policy import load_policy

    try:
        augmenter = BatchAugmenter(load_policy(policy))
    except ValueError as exc:
        raise InvalidInput(f"cannot preview this policy: {exc}") from exc
    picks = _rows(labels, PREVIEW_ROWS)
    width, height = tile_size(int(images.shape[-2]), int(images.shape[-1]), PREVIEW_CELL)
    grid = Image.new("RGB", (width * (PREVIEW_AUGMENTED + 1) + GAP, height * len(picks)), "white")
    generator = torch.Generator().manual_seed(seed)
    for row, index in enumerate(picks):
        original = images[index]
        batch = original.unsqueeze(0).repeat(PREVIEW_AUGMENTED, 1, 1, 1)
        augmented = augmenter(batch, generator)
        grid.paste(thumbnail(original, PREVIEW_CELL), (0, row * height))
        for col in range(PREVIEW_AUGMENTED):
            tile = thumbnail(augmented[col], PREVIEW_CELL)
            grid.paste(tile, (width + GAP + col * width, row * height))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


class PreviewCache:
    """Recently rendered previews keyed by dataset, policy and seed (rendering decodes data).

    Args:
        max_entries: How many PNGs to keep.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get_or_render(
        self, dataset_spec: dict[str, Any], policy: dict[str, Any], seed: int, settings: Settings
    ) -> bytes:
        """The preview PNG of ``policy`` on the dataset described by ``dataset_spec``."""
        key_src = json.dumps([dataset_spec, policy, seed], sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        data = load_images(dataset_spec, settings)
        png = render_preview(data.images, data.labels, policy, seed)
        with self._lock:
            self._entries[key] = png
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return png


def load_images(dataset_spec: dict[str, Any], settings: Settings) -> Any:
    """Decode (or read from the decoded cache) the dataset a search ran on, within the
    settings' decoding limits."""
    from search.datasets import DatasetError, load_dataset, parse_dataset_spec

    try:
        spec = parse_dataset_spec(dataset_spec)
        return load_dataset(spec, settings.data_dir / "cache", decode_limits(settings))
    except (DatasetError, ValueError, OSError) as exc:
        raise InvalidInput(f"cannot load the dataset for the preview: {exc}") from exc
