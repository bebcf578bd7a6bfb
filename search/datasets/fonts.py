"""Characters rendered in the machine's typefaces: a dataset on which augmentation helps.

Each class is one character; each image is that character drawn in one TrueType/OpenType font
at a random size and position, bright ink on a dark ``size`` x ``size`` grayscale canvas. The
font of every image is kept as its group, so :func:`search.datasets.group_split` can hold out
whole typefaces (the test set then measures generalisation to unseen fonts).

Fonts come from ``spec.path`` when given, otherwise from the usual system font folders. Fonts
that cannot draw every character distinctly (symbol fonts) are skipped. With fewer than four
usable fonts, Pillow's built-in font is added at several sizes, each size counted as a group.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from search.datasets.dataset import DatasetError, ImageDataset, make_dataset
from search.datasets.limits import DEFAULT_LIMITS, DecodeLimits
from search.datasets.spec import FontsSpec

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
MIN_FONTS = 4

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def find_font_files(path: str | None) -> list[Path]:
    """Font files under ``path`` or the system font folders, sorted for reproducibility."""
    roots = [Path(path)] if path else [Path(d).expanduser() for d in FONT_DIRS]
    if path and not roots[0].is_dir():
        raise DatasetError(f"font folder {path!r} does not exist")
    found = {
        f.resolve()
        for root in roots
        if root.is_dir()
        for f in root.rglob("*")
        if f.suffix.lower() in FONT_SUFFIXES and f.is_file()
    }
    return sorted(found)


def _glyph(font: Font, char: str, size: int) -> bytes:
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text((size / 2, size / 2), char, font=font, fill=255, anchor="mm")
    return canvas.tobytes()


def _usable(font: Font, characters: str, size: int) -> bool:
    glyphs = [_glyph(font, c, size) for c in characters]
    return all(any(g) for g in glyphs) and len(set(glyphs)) == len(glyphs)


def _fonts(spec: FontsSpec) -> list[tuple[str, Path | None, int | None]]:
    """(name, file, fixed size) of every usable font; file None means Pillow's built-in font."""
    fonts: list[tuple[str, Path | None, int | None]] = []
    for f in find_font_files(spec.path):
        try:
            font = ImageFont.truetype(str(f), size=spec.size * 3 // 4)
        except OSError:
            continue
        if _usable(font, spec.characters, spec.size):
            fonts.append((f.stem, f, None))
    if len(fonts) < MIN_FONTS:
        fonts += [
            (f"default-{s}", None, s)
            for s in (spec.size // 2, spec.size * 5 // 8, spec.size * 3 // 4, spec.size * 7 // 8)
        ]
    return fonts


class _FontCache:
    """Opens each (file, point size) once: reading a font file per glyph is slow."""

    def __init__(self) -> None:
        self._fonts: dict[tuple[Path | None, int], Font] = {}

    def get(self, file: Path | None, point: int) -> Font:
        key = (file, point)
        if key not in self._fonts:
            self._fonts[key] = (
                ImageFont.load_default(size=point)
                if file is None
                else ImageFont.truetype(str(file), size=point)
            )
        return self._fonts[key]


def _render(font: Font, char: str, spec: FontsSpec, rng: np.random.Generator) -> np.ndarray:
    jitter = spec.size // 8
    dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
    canvas = Image.new("L", (spec.size, spec.size), 0)
    centre = (spec.size / 2 + dx, spec.size / 2 + dy)
    ImageDraw.Draw(canvas).text(centre, char, font=font, fill=255, anchor="mm")
    return np.asarray(canvas)


def load_fonts(spec: FontsSpec, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageDataset:
    """Render ``spec.per_font`` images of every character in every usable font."""
    fonts = _fonts(spec)
    count = len(fonts) * len(spec.characters) * spec.per_font
    limits.check_shape("fonts dataset", count, 1, spec.size, spec.size)
    rng = np.random.default_rng(spec.seed)
    cache = _FontCache()
    low, high = spec.size // 2, spec.size * 7 // 8
    images = np.empty((count, 1, spec.size, spec.size), dtype=np.uint8)
    labels: list[int] = []
    groups: list[int] = []
    for group, (_, file, fixed) in enumerate(fonts):
        for label, char in enumerate(spec.characters):
            for _ in range(spec.per_font):
                point = fixed or int(rng.integers(low, high + 1))
                images[len(labels), 0] = _render(cache.get(file, point), char, spec, rng)
                labels.append(label)
                groups.append(group)
    return make_dataset(
        torch.from_numpy(images),
        torch.tensor(labels, dtype=torch.int64),
        list(spec.characters),
        groups=torch.tensor(groups, dtype=torch.int64),
        group_names=[name for name, _, _ in fonts],
    )


def fonts_fingerprint(spec: FontsSpec) -> str:
    """Fingerprint of the font files (path, size, modification time) and the Pillow build."""
    digest = hashlib.sha256(Image.__version__.encode())
    for f in find_font_files(spec.path):
        info = f.stat()
        digest.update(f"{f}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()
