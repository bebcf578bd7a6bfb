"""CIFAR10/100, SVHN, MNIST and FashionMNIST read from their published on-disk formats.

CIFAR is read from the *binary* distributions (``cifar-10-batches-bin``: one label byte and
3072 pixel bytes per record; ``cifar-100-binary``: coarse and fine label bytes, then the
pixels), never from the "python version", whose batches can run code when read. MNIST and
FashionMNIST are parsed from the idx files (plain or gzipped) in ``<root>/<Name>/raw`` as
torchvision lays them out, SVHN from ``<root>/<split>_32x32.mat`` with scipy. With
``download=True`` the missing files are fetched with torchvision's download helpers.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from search.datasets.dataset import DatasetError, ImageDataset, make_dataset
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


def _read_cifar(files: list[Path], label_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    record = label_bytes + 3072
    chunks = []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DatasetError(f"{f.name} is not a CIFAR binary batch ({raw.size} bytes)")
        chunks.append(raw.reshape(-1, record))
    data = np.concatenate(chunks)
    labels = torch.from_numpy(data[:, label_bytes - 1].astype(np.int64))
    images = torch.from_numpy(data[:, label_bytes:].reshape(-1, 3, 32, 32).copy())
    return images, labels


def _cifar_classes(folder: Path, name: str) -> list[str]:
    meta = folder / ("batches.meta.txt" if name == "CIFAR10" else "fine_label_names.txt")
    if meta.is_file():
        names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if names:
            return names
    if name == "CIFAR10":
        return list(CIFAR10_CLASSES)
    return [f"class_{i}" for i in range(100)]


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file of unsigned bytes (MNIST format), plain or gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path.name} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path.name}: header announces {shape}, file holds {body.size} bytes")
    return body.reshape(shape)


def _read_svhn(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from scipy.io import loadmat  # optional: only SVHN needs it
    except ImportError as exc:  # pragma: no cover - scipy ships with scikit-learn
        raise DatasetError("reading SVHN needs scipy (pip install scipy)") from exc
    mat = loadmat(str(path))
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path.name} has no X/y arrays")
    images = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1), np.uint8))
    labels = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64) % 10)  # SVHN stores 0 as 10
    return images, labels


def load_torchvision(spec: TorchvisionSpec) -> ImageDataset:
    """Decode a torchvision dataset from its files (see the module docstring)."""
    files = ensure_files(spec)
    name = spec.name
    if name in _CIFAR_DIRS:
        label_bytes = 1 if name == "CIFAR10" else 2
        images, labels = _read_cifar(files, label_bytes)
        classes = _cifar_classes(files[0].parent, str(name))
    elif name == "SVHN":
        images, labels = _read_svhn(files[0])
        classes = list(DIGIT_CLASSES)
    else:
        pixels, raw_labels = read_idx(files[0]), read_idx(files[1])
        if pixels.ndim != 3 or raw_labels.shape != (pixels.shape[0],):
            raise DatasetError(f"{name} idx files disagree: {pixels.shape} vs {raw_labels.shape}")
        images = torch.from_numpy(pixels.copy()).unsqueeze(1)
        labels = torch.from_numpy(raw_labels.astype(np.int64))
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
