"""Dataset registration and statistics; decoding is delegated to ``search.datasets``."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.datasets import repository, text
from service.datasets.redaction import public_message
from service.datasets.schemas import DatasetCreate
from service.db.models import Dataset, User
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from service.settings import Settings

if TYPE_CHECKING:
    import PIL.Image
    from torch import Tensor

    from search.datasets import ImageDataset
    from search.datasets.limits import DecodeLimits

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MANIFEST_SUFFIXES = (".csv", ".parquet")
SAMPLES_PER_CLASS = 8
MAX_GRID_CLASSES = 20
# Longest side of a sample-grid tile: larger images are drawn shrunk.
SAMPLE_TILE = 96


def get(session: Session, dataset_id: int, user: User) -> Dataset:
    """The dataset, or NotFound (also for another user's dataset)."""
    dataset = repository.get(session, dataset_id, user)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def list_page(session: Session, user: User, offset: int, limit: int) -> tuple[list[Dataset], int]:
    """A page of the datasets ``user`` may see and their total."""
    return repository.list_page(session, user, offset, limit)


def _root_of(real: Path, settings: Settings) -> Path | None:
    # is_relative_to compares whole path parts, so /data/root2 is not inside /data/root.
    for root in settings.allowed_dataset_roots:
        if real == root or real.is_relative_to(root):
            return root
    return None


def _refuse_links_out(real: Path, root: Path, raw: str) -> None:
    """Refuse a tree holding a symbolic link whose target lies outside ``root``."""
    for folder, dirs, files in os.walk(real, followlinks=False):
        for entry in (*dirs, *files):
            candidate = Path(folder) / entry
            if candidate.is_symlink() and _outside(candidate, root):
                inner = candidate.relative_to(real)
                raise Forbidden(f"path {raw!r} holds a link leaving the allowed roots: {inner}")


def _outside(link: Path, root: Path) -> bool:
    target = Path(os.path.realpath(link))
    return not (target == root or target.is_relative_to(root))


def _plain(path: str) -> bool:
    # The loaders open the path through fsspec, which reads "a::b" as a chain of URLs (b
    # opened inside a) and "x://" as a protocol: the location checked here would not be the
    # one read. An absolute path with neither is read exactly as written.
    return "\x00" not in path and "://" not in path and "::" not in path


def _real_under_root(raw: str, settings: Settings) -> tuple[Path, Path]:
    """The real path (``..`` and links resolved) and the allowed root it lies under."""
    if not settings.allowed_dataset_roots:
        raise Forbidden("no dataset roots are configured (AUGSEARCH_ALLOWED_DATASET_ROOTS)")
    if not _plain(raw):
        raise Forbidden(f"path {raw!r} is not a plain server path")
    real = Path(os.path.realpath(raw))
    if not _plain(str(real)):
        raise Forbidden(f"path {raw!r} resolves to a path that is not a plain server path")
    root = _root_of(real, settings)
    if root is None:
        raise Forbidden(f"path {raw!r} is outside the allowed dataset roots")
    return real, root


def resolve_server_path(raw: str, settings: Settings) -> Path:
    """Resolve a server path and require it, and every link inside it, to stay under a root.

    Raises:
        Forbidden: if no roots are configured, or the real path (``..`` and symbolic links
            resolved) escapes them, or a link inside the folder points out of its root.
        InvalidInput: if the path is not a directory.
    """
    real, root = _real_under_root(raw, settings)
    if not real.is_dir():
        raise InvalidInput(f"path {raw!r} is not a directory")
    _refuse_links_out(real, root, raw)
    return real


def resolve_manifest_path(raw: str, settings: Settings) -> Path:
    """Resolve a manifest file by the rules of `resolve_server_path`, applied to its folder.

    The image paths a manifest lists are relative to its folder; ``search.datasets`` checks
    each of them to stay inside it.

    Raises:
        Forbidden: as `resolve_server_path`.
        InvalidInput: if the path is not a .csv or .parquet file.
    """
    return resolve_file_under_root(raw, settings, MANIFEST_SUFFIXES, "a manifest file")


def resolve_file_under_root(
    raw: str, settings: Settings, suffixes: tuple[str, ...], what: str = "a text table"
) -> Path:
    """Resolve a file by the rules of `resolve_server_path`, applied to its folder.

    Raises:
        Forbidden: as `resolve_server_path`.
        InvalidInput: if the path is not a file with one of ``suffixes``.
    """
    real, root = _real_under_root(raw, settings)
    if not (real.is_file() and real.name.lower().endswith(suffixes)):
        raise InvalidInput(f"path {raw!r} is not {what} ({', '.join(suffixes)})")
    _refuse_links_out(real.parent, root, raw)
    return real


def _spec_for(body: DatasetCreate, user: User, settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if body.source == "digits":
        spec["source"] = "digits"
    elif body.source == "torchvision":
        root = settings.data_dir / "torchvision"
        spec.update(source="torchvision", name=body.dataset, path=str(root))
        if body.download:
            # A download writes into the server's data directory, shared by every user.
            if not user.is_admin:
                raise Forbidden("only admins may download torchvision datasets to the server")
            spec["download"] = True
    else:
        if not user.is_admin:
            raise Forbidden("only admins may register server paths")
        raw = body.path or ""
        if body.source == "manifest":
            spec.update(source="manifest", path=str(resolve_manifest_path(raw, settings)))
        else:
            spec.update(source="imagefolder", path=str(resolve_server_path(raw, settings)))
    if body.image_size is not None:
        spec["image_size"] = body.image_size
    return spec


def decode_limits(settings: Settings) -> DecodeLimits:
    """The memory bounds of decoding a dataset, from the settings."""
    from search.datasets.limits import DecodeLimits

    return DecodeLimits(
        max_dataset_bytes=settings.max_dataset_bytes,
        max_image_pixels=settings.max_image_pixels,
        max_image_size=settings.max_image_size,
    )


def _decode(spec: dict[str, Any], settings: Settings, shown_as: str | None = None) -> ImageDataset:
    """Decode ``spec``; a failure is InvalidInput naming ``spec["path"]`` as ``shown_as`` (the
    user's name for it) and no other server folder (`redaction.public_message`)."""
    from search.datasets import DatasetError, load_dataset, parse_dataset_spec

    try:
        parsed = parse_dataset_spec(spec)
        return load_dataset(parsed, settings.data_dir / "cache", decode_limits(settings))
    except (DatasetError, ValueError, OSError) as exc:
        names = {}
        if shown_as is not None:
            names[spec["path"]] = shown_as
            if spec["source"] == "archive":  # stored under a random name
                names[Path(spec["path"]).name] = shown_as
        shown = public_message(str(exc), names, settings, archive=shown_as or "the archive")
        raise InvalidInput(f"cannot load dataset: {shown}") from exc


def _fill_stats(dataset: Dataset, data: ImageDataset) -> None:
    dataset.classes = [str(c) for c in data.classes]
    dataset.counts_per_class = {str(k): int(v) for k, v in data.counts_per_class().items()}
    dataset.num_images = len(data)
    dataset.channels = int(data.channels)
    dataset.image_size = int(data.image_size[0])
    dataset.content_hash = str(data.content_hash)
    dataset.state = "ready"


def register(session: Session, body: DatasetCreate, user: User, settings: Settings) -> Dataset:
    """Validate, decode (slow: callers run this in a worker thread) and store a dataset."""
    if body.source in text.TEXT_SOURCES:
        spec = text.text_spec(body, user, settings)
        name = body.name or Path(spec.get("path", body.source)).name
        return text.register_text(session, spec, name, user, settings, shown_as=body.path)
    spec = _spec_for(body, user, settings)
    data = _decode(spec, settings, shown_as=body.path)
    path = Path(spec.get("path", "digits"))
    # A manifest is often just "manifest.csv": its folder names the dataset better.
    default_name = body.dataset or (path.parent.name if body.source == "manifest" else path.name)
    dataset = Dataset(
        owner_id=user.id, name=body.name or default_name, source=spec["source"], spec=spec
    )
    _fill_stats(dataset, data)
    return repository.add(session, dataset)


def archive_suffix(filename: str) -> str:
    """The archive (or text table) suffix of an uploaded file name, or InvalidInput."""
    lower = filename.lower()
    for suffix in (*ARCHIVE_SUFFIXES, *text.TEXT_TABLE_SUFFIXES):
        if lower.endswith(suffix):
            return suffix
    raise InvalidInput(
        f"upload {filename!r} is not an archive ({', '.join(ARCHIVE_SUFFIXES)}) nor a text "
        f"table ({', '.join(text.TEXT_TABLE_SUFFIXES)})"
    )


def store_upload(stream: IO[bytes], filename: str, settings: Settings) -> Path:
    """Copy an uploaded archive into the upload directory, counting bytes against the limit."""
    suffix = archive_suffix(filename)
    target = settings.data_dir / "uploads" / f"{uuid.uuid4().hex}{suffix}"
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := stream.read(1 << 20):
                written += len(chunk)
                if written > settings.max_upload_bytes:
                    raise PayloadTooLarge(
                        f"upload exceeds the limit of {settings.max_upload_bytes} bytes"
                    )
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def register_archive(
    session: Session,
    archive: Path,
    name: str,
    image_size: int | None,
    user: User,
    settings: Settings,
) -> Dataset:
    """Decode an uploaded archive (checked member by member by ``search.datasets``) and store it."""
    spec: dict[str, Any] = {"source": "archive", "path": str(archive)}
    if image_size is not None:
        spec["image_size"] = image_size
    try:
        data = _decode(spec, settings, shown_as=name)
    except InvalidInput:
        archive.unlink(missing_ok=True)
        raise
    dataset = Dataset(owner_id=user.id, name=name, source="archive", spec=spec)
    _fill_stats(dataset, data)
    return repository.add(session, dataset)


def delete(session: Session, dataset_id: int, user: User, settings: Settings) -> None:
    """Delete a dataset no search refers to; its upload and sample grid go with it."""
    dataset = get(session, dataset_id, user)
    using = repository.search_ids_using(session, dataset.id)
    if using:
        raise Conflict(f"dataset {dataset_id} is used by searches {using}; delete them first")
    if dataset.source == "archive" or text.is_uploaded(dataset, settings):
        Path(dataset.spec["path"]).unlink(missing_ok=True)
    shutil.rmtree(settings.data_dir / "datasets" / str(dataset.id), ignore_errors=True)
    repository.delete(session, dataset)


def samples_png(dataset: Dataset, settings: Settings) -> bytes:
    """A PNG grid: one row per class (up to 20), ``SAMPLES_PER_CLASS`` images each; cached."""
    if dataset.source in text.TEXT_SOURCES:
        raise InvalidInput(f"dataset {dataset.id} holds texts: it has no sample images")
    cached = settings.data_dir / "datasets" / str(dataset.id) / "samples.png"
    if cached.is_file():
        return cached.read_bytes()
    from PIL import Image

    shown_as = dataset.name if dataset.source == "archive" else None
    data = _decode(dataset.spec, settings, shown_as)
    n_classes = min(len(data.classes), MAX_GRID_CLASSES)
    height, width = data.image_size
    cell = min(max(height, width), SAMPLE_TILE)
    tile_w, tile_h = tile_size(height, width, cell)
    grid = Image.new("RGB", (SAMPLES_PER_CLASS * tile_w, n_classes * tile_h))
    for row in range(n_classes):
        idx = (data.labels == row).nonzero().flatten()[:SAMPLES_PER_CLASS].tolist()
        for col, i in enumerate(idx):
            # A cached dataset maps its file: only the images drawn are read.
            grid.paste(thumbnail(data.images[i], cell), (col * tile_w, row * tile_h))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, cached)
    return buffer.getvalue()


def tile_size(height: int, width: int, cell: int) -> tuple[int, int]:
    """Width and height of an image drawn in a ``cell`` x ``cell`` square: shrunk to fit when
    larger, otherwise enlarged by the largest whole factor that fits."""
    longest = max(height, width)
    if longest > cell:
        return max(1, width * cell // longest), max(1, height * cell // longest)
    scale = max(1, cell // longest)
    return width * scale, height * scale


def thumbnail(image: Tensor, cell: int) -> PIL.Image.Image:
    """A uint8 (C, H, W) image as an RGB picture of `tile_size` (grayscale repeated)."""
    from PIL import Image

    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    picture = Image.fromarray(rgb.permute(1, 2, 0).contiguous().numpy())
    size = tile_size(picture.height, picture.width, cell)
    if size == picture.size:
        return picture
    if size[0] > picture.width:  # enlarged: keep the pixels sharp
        return picture.resize(size, Image.Resampling.NEAREST)
    return picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
