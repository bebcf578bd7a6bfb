"""Image folders (local and fsspec), their decoding rules, errors and the tensor cache."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from search.datasets import DatasetError, ImageFolderSpec, load_dataset
from search.datasets.cache import cache_path
from search.datasets.dataset import content_hash
from search.datasets.loader import cache_key

FolderWriter = Callable[..., Path]


def _spec(root: Path, **kw: object) -> ImageFolderSpec:
    return ImageFolderSpec(path=str(root), **kw)  # type: ignore[arg-type]


def test_grey_folder_decodes_exactly(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"dog": 2, "cat": 3})
    ds = load_dataset(_spec(root))
    assert ds.classes == ["cat", "dog"]
    assert ds.counts_per_class() == {"cat": 3, "dog": 2}
    assert ds.images.shape == (5, 1, 10, 12) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    first = np.array(Image.open(root / "cat" / "cat_0.png"))
    assert torch.equal(ds.images[0, 0], torch.from_numpy(first))
    assert ds.content_hash == content_hash(ds.images, ds.labels)
    expected_mean = ds.images.double().mean().item() / 255
    assert ds.mean[0] == pytest.approx(expected_mean, rel=1e-6)
    assert 0 < ds.std[0] < 1


def test_one_colour_image_makes_the_dataset_rgb(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    Image.new("RGB", (12, 10), (200, 10, 10)).save(root / "b" / "red.png")
    ds = load_dataset(_spec(root))
    assert ds.channels == 3
    grey = np.array(Image.open(root / "a" / "a_0.png"))
    assert all(torch.equal(ds.images[0, c], torch.from_numpy(grey)) for c in range(3))


def test_rgb_files_with_grey_content_stay_grey(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    Image.new("RGB", (12, 10), (90, 90, 90)).save(root / "a" / "grey_rgb.png")
    assert load_dataset(_spec(root)).channels == 1


def test_mixed_sizes_use_most_common_or_requested(
    tmp_path: Path, write_folder: FolderWriter
) -> None:
    root = write_folder(tmp_path / "data", {"a": 3, "b": 2}, size=(12, 10))
    Image.new("L", (40, 30), 128).save(root / "b" / "big.png")
    assert load_dataset(_spec(root)).image_size == (10, 12)
    assert load_dataset(_spec(root, image_size=16)).image_size == (16, 16)


def test_corrupt_files_are_all_named(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "a" / "garbage.png").write_bytes(b"not an image at all")
    good = (root / "b" / "b_0.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="2 image file") as err:
        load_dataset(_spec(root))
    assert "garbage.png" in str(err.value) and "truncated.png" in str(err.value)


def test_empty_class_folders_are_named(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "empty_one").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="empty_one, notes"):
        load_dataset(_spec(root))


def test_one_class_is_refused(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"only": 3})
    with pytest.raises(DatasetError, match="at least 2"):
        load_dataset(_spec(root))


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(_spec(tmp_path / "nowhere"))


def test_decompression_bomb_warning_is_an_error(
    tmp_path: Path, write_folder: FolderWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder(tmp_path / "data", {"a": 1, "b": 1}, size=(8, 8))
    # 64 pixels lie between the limit and twice the limit: Pillow only warns here.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(DatasetError, match="DecompressionBomb"):
        load_dataset(_spec(root))


def test_fsspec_memory_filesystem(write_folder: FolderWriter, tmp_path: Path) -> None:
    local = write_folder(tmp_path / "data", {"x": 2, "y": 3})
    fs = fsspec.filesystem("memory")
    for f in sorted(local.rglob("*.png")):
        fs.pipe(f"/remote-set/{f.parent.name}/{f.name}", f.read_bytes())
    remote = load_dataset(ImageFolderSpec(path="memory://remote-set"))
    assert remote.content_hash == load_dataset(_spec(local)).content_hash
    fs.rm("/remote-set", recursive=True)


def test_cache_hit_reads_tensors_not_files(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    first = load_dataset(_spec(root), cache_dir=cache)
    assert cache_path(cache, cache_key(_spec(root))).is_file()
    # Same size and mtime: the fingerprint is unchanged, so only a cache read can succeed.
    victim = root / "a" / "a_0.png"
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_dataset(_spec(root), cache_dir=cache)
    assert second.content_hash == first.content_hash
    assert torch.equal(second.images, first.images) and second.classes == first.classes
    with pytest.raises(DatasetError, match=r"a_0\.png"):
        load_dataset(_spec(root))


def test_cache_misses_when_a_file_changes(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    first = load_dataset(_spec(root), cache_dir=cache)
    buffer = io.BytesIO()
    Image.new("L", (12, 10), 7).save(buffer, format="PNG")
    (root / "a" / "a_0.png").write_bytes(buffer.getvalue())
    second = load_dataset(_spec(root), cache_dir=cache)
    assert second.content_hash != first.content_hash
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_damaged_cache_file_is_rebuilt(tmp_path: Path, write_folder: FolderWriter) -> None:
    root = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    first = load_dataset(_spec(root), cache_dir=cache)
    cache_path(cache, cache_key(_spec(root))).write_bytes(b"damaged")
    assert load_dataset(_spec(root), cache_dir=cache).content_hash == first.content_hash
