"""Synthetic house numbers: SVHN-like colour crops of digits, rendered offline, grouped by typeface.

Each image is a ``size`` x ``size`` RGB crop centred on one digit (the class), drawn in one of
the machine's typefaces at a random size and offset, with neighbouring digits cut by the crop
edges, a random ink and plate colour (either may be the darker), uneven lighting and sensor
noise. Rendering is supersampled then reduced, so the strokes are antialiased as in a photo.
The typeface of every image is its group, so whole typefaces can be held out: the shift
between the training and test splits is then the one a house-number reader meets in a new
street.

Only the fonts installed on the machine are used (the system font folders, or ``font_dir``);
nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from search.datasets import DatasetError, ImageDataset
from search.datasets.dataset import make_dataset
from search.datasets.fonts import find_font_files

DIGITS = "0123456789"
#: Rendering happens at this multiple of the final side, then is reduced (antialiasing).
SUPERSAMPLE = 3
#: Least luminance difference between ink and plate, on the 0-255 scale.
MIN_CONTRAST = 40.0
#: Probability of a neighbouring digit on each side, cut by the crop.
NEIGHBOUR_P = 0.85
#: Largest tilt in degrees, defocus (Gaussian sigma in output pixels), plate texture (share
#: of the colour range) and sensor noise (standard deviation on the 0-255 scale).
MAX_TILT, MAX_BLUR, MAX_TEXTURE, MAX_NOISE = 8.0, 1.0, 0.25, 10.0
_LUMA = np.array([0.299, 0.587, 0.114])


def digit_fonts(font_dir: str | None = None) -> list[Path]:
    """Font files that draw the ten digits as ten distinct, non-empty glyphs."""
    usable = []
    for path in find_font_files(font_dir):
        try:
            font = ImageFont.truetype(str(path), size=24)
        except OSError:
            continue
        glyphs = []
        for d in DIGITS:
            canvas = Image.new("L", (32, 32), 0)
            ImageDraw.Draw(canvas).text((16, 16), d, font=font, fill=255, anchor="mm")
            glyphs.append(canvas.tobytes())
        if all(any(g) for g in glyphs) and len(set(glyphs)) == len(glyphs):
            usable.append(path)
    return usable


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ink, plate) RGB colours at least `MIN_CONTRAST` apart in luminance."""
    while True:
        ink, plate = rng.integers(0, 256, size=(2, 3)).astype(np.float64)
        if abs(float(_LUMA @ ink) - float(_LUMA @ plate)) >= MIN_CONTRAST:
            return ink, plate


def _glyph_mask(
    font: ImageFont.FreeTypeFont, digit: str, side: int, rng: np.random.Generator
) -> np.ndarray:
    """Ink coverage in [0, 1] of the centred digit and its cut neighbours, at ``side``.

    The digits are drawn supersampled, tilted by a few degrees, defocused, then reduced.
    """
    big = side * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    jitter = big // 16
    cx = big / 2 + int(rng.integers(-jitter, jitter + 1))
    cy = big / 2 + int(rng.integers(-jitter, jitter + 1))
    draw.text((cx, cy), digit, font=font, fill=255, anchor="mm")
    gap = font.getlength("0") * float(rng.uniform(0.9, 1.2))
    for direction in (-1, 1):
        if rng.random() < NEIGHBOUR_P:
            other = DIGITS[int(rng.integers(len(DIGITS)))]
            draw.text((cx + direction * gap, cy), other, font=font, fill=255, anchor="mm")
    tilted = canvas.rotate(float(rng.uniform(-MAX_TILT, MAX_TILT)), Image.Resampling.BILINEAR)
    blurred = tilted.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, MAX_BLUR)) * SUPERSAMPLE))
    small = blurred.resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _photo(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour, light, texture and noise a coverage mask into a uint8 (side, side, 3) image."""
    side = mask.shape[0]
    ink, plate = _colours(rng)
    image = plate + mask[..., None] * (ink - plate)
    ys, xs = np.mgrid[0:side, 0:side] / max(1, side - 1) - 0.5
    slope = rng.uniform(-0.5, 0.5, size=2)
    light = 1.0 + slope[0] * xs + slope[1] * ys
    # A weathered plate: smooth colour blotches, from a coarse grid upsampled.
    coarse = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
    blotches = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), np.float64)
    texture = (blotches - 127.5) * float(rng.uniform(0, MAX_TEXTURE))
    noise = rng.normal(0.0, float(rng.uniform(2.0, MAX_NOISE)), size=image.shape)
    image = image * light[..., None] + texture + noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_house_numbers(
    per_font: int, *, size: int = 32, seed: int = 0, font_dir: str | None = None
) -> ImageDataset:
    """Render ``per_font`` crops of each digit in each usable typeface (group = typeface).

    Raises:
        DatasetError: fewer than two usable fonts on the machine.
    """
    fonts = digit_fonts(font_dir)
    if len(fonts) < 2:
        raise DatasetError(f"house numbers need >= 2 fonts that draw digits, found {len(fonts)}")
    rng = np.random.default_rng(seed)
    big = size * SUPERSAMPLE
    cache: dict[tuple[Path, int], ImageFont.FreeTypeFont] = {}
    images, labels, groups = [], [], []
    for group, path in enumerate(fonts):
        for label, digit in enumerate(DIGITS):
            for _ in range(per_font):
                point = int(rng.integers(int(big * 0.6), int(big * 0.95) + 1))
                if (path, point) not in cache:
                    cache[path, point] = ImageFont.truetype(str(path), size=point)
                images.append(_photo(_glyph_mask(cache[path, point], digit, size, rng), rng))
                labels.append(label)
                groups.append(group)
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return make_dataset(
        tensor,
        torch.tensor(labels, dtype=torch.int64),
        list(DIGITS),
        groups=torch.tensor(groups, dtype=torch.int64),
        group_names=[p.stem for p in fonts],
    )
