"""The policy preview: real dataset images, each shown original and augmented by a policy."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from service.errors import InvalidInput
from service.settings import Settings

if TYPE_CHECKING:
    from torch import Tensor

PREVIEW_ROWS = 6
PREVIEW_AUGMENTED = 5
GAP = 6  # pixels between the original column and the augmented ones


def _tile(image: Tensor, scale: int) -> Any:
    from PIL import Image

    img = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    tile = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
    if scale > 1:
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
    return tile


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
    size = int(images.shape[-1])
    scale = max(1, 96 // size)
    cell = size * scale
    grid = Image.new("RGB", (cell * (PREVIEW_AUGMENTED + 1) + GAP, cell * len(picks)), "white")
    generator = torch.Generator().manual_seed(seed)
    for row, index in enumerate(picks):
        original = images[index]
        batch = original.unsqueeze(0).repeat(PREVIEW_AUGMENTED, 1, 1, 1)
        augmented = augmenter(batch, generator)
        grid.paste(_tile(original, scale), (0, row * cell))
        for col in range(PREVIEW_AUGMENTED):
            grid.paste(_tile(augmented[col], scale), (cell + GAP + col * cell, row * cell))
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
    """Decode (or read from the decoded cache) the dataset a search ran on."""
    from search.datasets import DatasetError, load_dataset, parse_dataset_spec

    try:
        return load_dataset(parse_dataset_spec(dataset_spec), settings.data_dir / "cache")
    except (DatasetError, ValueError, OSError) as exc:
        raise InvalidInput(f"cannot load the dataset for the preview: {exc}") from exc
