"""CIFAR10/100, SVHN, MNIST and FashionMNIST read from their published on-disk formats.

CIFAR is read from the *binary* distributions (``cifar-10-batches-bin``: one label byte and
3072 pixel bytes per record; ``cifar-100-binary``: coarse and fine label bytes, then the
pixels), never from the "python version", whose batches can run code when read. MNIST and
FashionMNIST are parsed from the idx files (plain or gzipped) in ``<root>/<Name>/raw`` as
torchvision lays them out, SVHN from ``<root>/<split>_32x32.mat`` with scipy. With
``download=True`` the missing files are fetched with torchvision's download helpers.

The number of images is read from the file sizes (CIFAR) or headers (idx, ``.mat``) and checked
against the `DecodeLimits` before the pixels are read. CIFAR and idx pixels are then read
straight into the result; scipy's ``.mat`` reader holds SVHN about twice while it reads.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import torch

from search.datasets.dataset import DatasetError, ImageDataset, make_dataset
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits
from search.datasets.spec import TorchvisionSpec

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(d) for d in range(10)]
_CIFAR_URLS = {
    "CIFAR10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "CIFAR100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
}
_CIFAR_DIRS = {"CIFAR10": "cifar-10-batches-bin", "CIFAR100": "cifar-100-binary"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
# Records read, or SVHN images reordered, at a time.
_BLOCK_RECORDS = 4096


def _cifar_files(root: Path, name: str, split: str) -> list[Path]:
    folder = root / _CIFAR_DIRS[name]
    if name == "CIFAR10":
        names = (
            [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        )
    else:
        names = [f"{split}.bin"]
    return [folder / n for n in names]


def _idx_files(root: Path, name: str, split: str) -> list[Path]:
    prefix = _IDX_PREFIX[split]
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    found = []
    for stem in stems:
        for folder in (root / name / "raw", root / "raw", root):
            plain, zipped = folder / stem, folder / f"{stem}.gz"
            if plain.is_file() or zipped.is_file():
                found.append(plain if plain.is_file() else zipped)
                break
        else:
            found.append(root / name / "raw" / stem)
    return found


def _root_and_name(spec: TorchvisionSpec) -> tuple[Path, str]:
    return Path(spec.path), spec.name


def source_files(spec: TorchvisionSpec) -> list[Path]:
    """The files a torchvision spec reads (which may not exist yet)."""
    root, name = _root_and_name(spec)
    if name in _CIFAR_DIRS:
        if spec.split not in ("train", "test"):
            raise DatasetError(f"{name} has no split {spec.split!r}")
        return _cifar_files(root, name, spec.split)
    if name == "SVHN":
        return [root / f"{spec.split}_32x32.mat"]
    return _idx_files(root, name, spec.split)


def _download(spec: TorchvisionSpec) -> None:
    # Imported here: the download helpers are only needed where a network exists.
    from torchvision.datasets import MNIST, SVHN, FashionMNIST
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    root, name = _root_and_name(spec)
    if name in _CIFAR_URLS:
        download_and_extract_archive(_CIFAR_URLS[name], root)
    elif name == "SVHN":
        url, filename, md5 = SVHN.split_list[spec.split]
        download_url(url, root, filename, md5)
    else:
        source = MNIST if name == "MNIST" else FashionMNIST
        raw = root / name / "raw"
        for filename, md5 in source.resources:
            download_and_extract_archive(source.mirrors[0] + filename, raw, md5=md5)


def ensure_files(spec: TorchvisionSpec) -> list[Path]:
    """Return the source files, downloading them first when allowed and missing."""
    files = source_files(spec)
    missing = [f for f in files if not f.is_file()]
    if missing and spec.download:
        _download(spec)
        files = source_files(spec)
        missing = [f for f in files if not f.is_file()]
    if missing:
        hint = "" if spec.download else " (set download=true to fetch them)"
        raise DatasetError(
            f"{spec.name} files not found: {', '.join(str(m) for m in missing)}{hint}"
        )
    return files


def _read_cifar(
    files: list[Path], label_bytes: int, name: str, limits: DecodeLimits
) -> tuple[torch.Tensor, torch.Tensor]:
    """The records of every batch, counted from the file sizes and checked before reading,
    then read a block at a time into the result."""
    record = label_bytes + 3072
    sizes = [f.stat().st_size for f in files]
    for f, size in zip(files, sizes, strict=True):
        if size == 0 or size % record:
            raise DatasetError(f"{f.name} is not a CIFAR binary batch ({size} bytes)")
    count = sum(sizes) // record
    limits.check_shape(name, count, 3, 32, 32)
    images = np.empty((count, 3072), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    at = 0
    for f in files:
        with open(f, "rb") as handle:
            while block := handle.read(record * _BLOCK_RECORDS):
                rows = np.frombuffer(block, dtype=np.uint8).reshape(-1, record)
                images[at : at + len(rows)] = rows[:, label_bytes:]
                labels[at : at + len(rows)] = rows[:, label_bytes - 1]
                at += len(rows)
    return torch.from_numpy(images.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)


def _cifar_classes(folder: Path, name: str) -> list[str]:
    meta = folder / ("batches.meta.txt" if name == "CIFAR10" else "fine_label_names.txt")
    if meta.is_file():
        names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if names:
            return names
    if name == "CIFAR10":
        return list(CIFAR10_CLASSES)
    return [f"class_{i}" for i in range(100)]


def _open_idx(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(handle: io.BufferedIOBase, path: Path) -> tuple[int, ...]:
    head = handle.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
        raise DatasetError(f"{path.name} is not an unsigned-byte idx file")
    dims = handle.read(4 * head[3])
    if len(dims) != 4 * head[3]:
        raise DatasetError(f"{path.name} is not an unsigned-byte idx file")
    return tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(head[3]))


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an idx file announces in its header (nothing else is read)."""
    with _open_idx(path) as handle:
        return _idx_header(handle, path)


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file of unsigned bytes (MNIST format), plain or gzipped.

    Read straight into the result: check `idx_shape` against the limits first.
    """
    with _open_idx(path) as handle:
        shape = _idx_header(handle, path)
        body = np.empty(math.prod(shape), dtype=np.uint8)
        view, got = body.data, 0
        while got < body.size and (n := handle.readinto(view[got:])):
            got += n
        more = handle.read(1)
    if got != body.size or more:
        held = f"{got} bytes" if not more else f"more than {got} bytes"
        raise DatasetError(f"{path.name}: header announces {shape}, file holds {held}")
    return body.reshape(shape)


def _read_svhn(path: Path, limits: DecodeLimits) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from scipy.io import loadmat, whosmat  # optional: only SVHN needs it
    except ImportError as exc:  # pragma: no cover - scipy ships with scikit-learn
        raise DatasetError("reading SVHN needs scipy (pip install scipy)") from exc
    shapes = {name: shape for name, shape, _ in whosmat(str(path))}
    if "X" not in shapes or "y" not in shapes:
        raise DatasetError(f"{path.name} has no X/y arrays")
    if len(shapes["X"]) != 4:
        raise DatasetError(f"{path.name}: X has shape {shapes['X']}, not (H, W, C, N)")
    height, width, channels, count = shapes["X"]
    limits.check_shape(f"SVHN {path.name}", count, channels, height, width)
    mat = loadmat(str(path), variable_names=["X", "y"])
    labels = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64) % 10)  # SVHN stores 0 as 10
    return torch.from_numpy(_images_first(mat["X"])), labels


def _images_first(x: np.ndarray) -> np.ndarray:
    """(H, W, C, N) as (N, C, H, W), in place when it can be.

    MATLAB stores X column-major, so ``x.T`` is already (N, C, W, H) in one C-ordered block;
    swapping W and H within each image, a block of images at a time, needs no second copy
    of the whole set.
    """
    if x.dtype != np.uint8 or not x.flags.f_contiguous or x.shape[0] != x.shape[1]:
        return np.ascontiguousarray(x.transpose(3, 2, 0, 1), np.uint8)
    images = x.T
    for start in range(0, len(images), _BLOCK_RECORDS):
        block = images[start : start + _BLOCK_RECORDS]
        block[...] = block.transpose(0, 1, 3, 2).copy()
    return images


def load_torchvision(spec: TorchvisionSpec, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageDataset:
    """Decode a torchvision dataset from its files (see the module docstring)."""
    files = ensure_files(spec)
    name = spec.name
    if name in _CIFAR_DIRS:
        label_bytes = 1 if name == "CIFAR10" else 2
        images, labels = _read_cifar(files, label_bytes, name, limits)
        classes = _cifar_classes(files[0].parent, str(name))
    elif name == "SVHN":
        images, labels = _read_svhn(files[0], limits)
        classes = list(DIGIT_CLASSES)
    else:
        shape, label_shape = idx_shape(files[0]), idx_shape(files[1])
        if len(shape) != 3 or label_shape != shape[:1]:
            raise DatasetError(f"{name} idx files disagree: {shape} vs {label_shape}")
        limits.check_shape(name, shape[0], 1, shape[1], shape[2])
        images = torch.from_numpy(read_idx(files[0])).unsqueeze(1)
        labels = torch.from_numpy(read_idx(files[1]).astype(np.int64))
        classes = list(DIGIT_CLASSES if name == "MNIST" else FASHION_CLASSES)
    if len(labels) and int(labels.max()) >= len(classes):
        raise DatasetError(f"{name}: label {int(labels.max())} beyond {len(classes)} classes")
    return make_dataset(images, labels, classes)


def torchvision_fingerprint(spec: TorchvisionSpec) -> str:
    """Fingerprint of the files read: path, size and modification time."""
    rows = []
    for f in ensure_files(spec):
        info = f.stat()
        rows.append(f"{f.resolve()}\t{info.st_size}\t{info.st_mtime_ns}")
    return "\n".join(rows)
