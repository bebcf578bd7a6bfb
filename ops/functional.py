"""Batched pure augmentation functions on (N, C, H, W) uint8 or float images.

Every op takes ``images`` and a per-sample argument ``arg`` of shape (N,) and returns a new
batch of the same shape, dtype and device. Float images are taken to lie in [0, 1], uint8 in
[0, 255]. The arithmetic follows torchvision.transforms.v2.functional (same blend formulas, same
rounding, same affine-grid construction and nearest sampling), vectorised over the batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_GRAY = (0.2989, 0.587, 0.114)


def _bound(images: Tensor) -> float:
    return 1.0 if images.is_floating_point() else 255.0


def _per_sample(arg: Tensor, images: Tensor) -> Tensor:
    dtype = images.dtype if images.is_floating_point() else torch.float32
    return arg.to(device=images.device, dtype=dtype).view(-1, 1, 1, 1)


def _check(images: Tensor, arg: Tensor | None = None) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    if arg is not None and arg.shape != (images.shape[0],):
        raise ValueError(f"arg must have shape ({images.shape[0]},), got {tuple(arg.shape)}")


def _finish(out: Tensor, like: Tensor) -> Tensor:
    # torchvision clamps and then truncates when casting back to uint8.
    out = out.clamp_(0, _bound(like))
    return out if like.is_floating_point() else out.to(like.dtype)


# --- geometry -------------------------------------------------------------------------------


def _rows(*values: Tensor) -> Tensor:
    return torch.stack(values, dim=-1).view(-1, 2, 3)


def shear_x_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a horizontal shear about the top-left corner."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(one, arg, arg * (height * 0.5), zero, one, zero)


def shear_y_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a vertical shear about the top-left corner."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(one, zero, zero, arg, one, arg * (width * 0.5))


def translate_x_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a shift right by ``arg`` pixels."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(one, zero, -arg, zero, one, zero)


def translate_y_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a shift down by ``arg`` pixels."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(one, zero, zero, zero, one, -arg)


def rotate_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a counter-clockwise rotation by ``arg`` degrees."""
    rot = torch.deg2rad(-arg.to(torch.float64))
    cos, sin = torch.cos(rot).to(arg.dtype), torch.sin(rot).to(arg.dtype)
    zero = torch.zeros_like(arg)
    return _rows(cos, sin, zero, -sin, cos, zero)


def flip_lr_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a left-right mirror (``arg`` unused)."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(-one, zero, zero, zero, one, zero)


def flip_ud_matrix(arg: Tensor, height: int, width: int) -> Tensor:
    """Inverse affine matrices of a top-bottom mirror (``arg`` unused)."""
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    return _rows(one, zero, zero, zero, -one, zero)


def _base_grid(height: int, width: int, device: torch.device) -> Tensor:
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    grid = torch.ones(height, width, 3, device=device)
    grid[..., 0] = xs
    grid[..., 1] = ys.unsqueeze(-1)
    return grid.view(1, height * width, 3)


def warp_affine(images: Tensor, theta: Tensor) -> Tensor:
    """Warp each image by its own inverse affine matrix, nearest sampling, fill 0.

    ``theta`` (N, 2, 3) maps output to input pixel coordinates centred on the image, as
    torchvision's ``_get_inverse_affine_matrix``. The grid is built as torchvision's
    ``_affine_grid`` and rounded like ``grid_sample(mode="nearest", align_corners=False)``, but
    the pixels are gathered directly so uint8 batches never round-trip through float.
    """
    _check(images)
    n, c, h, w = images.shape
    scale = torch.tensor([0.5 * w, 0.5 * h], device=images.device)
    rescaled = theta.to(device=images.device, dtype=torch.float32).transpose(1, 2) / scale
    grid = torch.matmul(_base_grid(h, w, images.device), rescaled)  # (N, H*W, 2)
    ix = ((grid[..., 0] + 1) * w - 1).mul_(0.5).round_()
    iy = ((grid[..., 1] + 1) * h - 1).mul_(0.5).round_()
    valid = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
    index = (iy.clamp_(0, h - 1) * w + ix.clamp_(0, w - 1)).long()
    out = images.reshape(n, c, h * w).gather(2, index.unsqueeze(1).expand(n, c, h * w))
    out = out.masked_fill_(~valid.unsqueeze(1), 0)
    return out.view(n, c, h, w)


def _warp_op(images: Tensor, arg: Tensor, matrix_fn: object) -> Tensor:
    _check(images, arg)
    h, w = images.shape[-2:]
    theta = matrix_fn(arg.to(device=images.device, dtype=torch.float32), h, w)  # type: ignore[operator]
    return warp_affine(images, theta)


def shear_x(images: Tensor, arg: Tensor) -> Tensor:
    """Shear horizontally by ``arg`` (x += arg * y) about the top-left corner."""
    return _warp_op(images, arg, shear_x_matrix)


def shear_y(images: Tensor, arg: Tensor) -> Tensor:
    """Shear vertically by ``arg`` (y += arg * x) about the top-left corner."""
    return _warp_op(images, arg, shear_y_matrix)


def translate_x(images: Tensor, arg: Tensor) -> Tensor:
    """Shift right by ``arg`` pixels (negative: left)."""
    return _warp_op(images, arg, translate_x_matrix)


def translate_y(images: Tensor, arg: Tensor) -> Tensor:
    """Shift down by ``arg`` pixels (negative: up)."""
    return _warp_op(images, arg, translate_y_matrix)


def rotate(images: Tensor, arg: Tensor) -> Tensor:
    """Rotate counter-clockwise by ``arg`` degrees about the centre."""
    return _warp_op(images, arg, rotate_matrix)


def flip_lr(images: Tensor, arg: Tensor) -> Tensor:
    """Mirror left-right (``arg`` unused)."""
    _check(images, arg)
    return images.flip(-1)


def flip_ud(images: Tensor, arg: Tensor) -> Tensor:
    """Mirror top-bottom (``arg`` unused)."""
    _check(images, arg)
    return images.flip(-2)


# --- colour ---------------------------------------------------------------------------------


def identity(images: Tensor, arg: Tensor) -> Tensor:
    """Return the images unchanged."""
    _check(images, arg)
    return images


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return _finish(images * factor + other * (1.0 - factor), images)


def _grayscale(images: Tensor) -> Tensor:
    r, g, b = images.unbind(dim=1)
    gray = (r * _GRAY[0]).add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(1)
    return gray if images.is_floating_point() else gray.floor_()


def brightness(images: Tensor, arg: Tensor) -> Tensor:
    """Scale intensities by ``1 + arg``."""
    _check(images, arg)
    return _finish(images * (1.0 + _per_sample(arg, images)), images)


def color(images: Tensor, arg: Tensor) -> Tensor:
    """Blend with the grayscale image by factor ``1 + arg`` (identity on 1-channel images)."""
    _check(images, arg)
    if images.shape[1] == 1:
        return images
    return _blend(images, _grayscale(images), 1.0 + _per_sample(arg, images))


def contrast(images: Tensor, arg: Tensor) -> Tensor:
    """Blend with the mean grayscale level by factor ``1 + arg``."""
    _check(images, arg)
    gray = _grayscale(images) if images.shape[1] == 3 else images.float()
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, 1.0 + _per_sample(arg, images))


def _box_sum(images: Tensor) -> Tensor:
    """3x3 neighbourhood sums of the interior pixels, exact in int32 for uint8 input."""
    work = images if images.is_floating_point() else images.to(torch.int32)
    _h, w = work.shape[-2:]
    rows = work[..., :-2, :] + work[..., 1:-1, :] + work[..., 2:, :]
    return rows[..., :-2] + rows[..., 1 : w - 1] + rows[..., 2:]


def sharpness(images: Tensor, arg: Tensor) -> Tensor:
    """Blend with a 3x3 smoothed image by factor ``1 + arg`` (borders kept, as PIL)."""
    _check(images, arg)
    h, w = images.shape[-2:]
    if h <= 2 or w <= 2:
        return images
    centre = images[..., 1:-1, 1:-1]
    if images.is_floating_point():
        blurred = (_box_sum(images) + 4 * centre) / 13.0
    else:
        # (sum + 4 * centre) / 13 never ends in .5, so this integer form is exactly round().
        total = _box_sum(images) + 4 * centre.to(torch.int32)
        blurred = (2 * total + 13).div_(26, rounding_mode="floor").float()
    factor = 1.0 + _per_sample(arg, images)
    inner = _finish(centre + (blurred - centre) * (1.0 - factor), images)
    out = images.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def posterize(images: Tensor, arg: Tensor) -> Tensor:
    """Keep the ``arg`` most significant bits (0..8) of each intensity."""
    _check(images, arg)
    bits = arg.to(device=images.device).round().clamp(0, 8).long()
    if images.is_floating_point():
        levels = (2**bits).to(images.dtype).view(-1, 1, 1, 1)
        return (images * levels).floor_().clamp_(min=0).minimum(levels - 1).div_(levels)
    mask = ((255 << (8 - bits)) & 255).to(torch.uint8).view(-1, 1, 1, 1)
    return images & mask


def solarize(images: Tensor, arg: Tensor) -> Tensor:
    """Invert intensities at or above ``arg * max`` (``arg`` a fraction in [0, 1])."""
    _check(images, arg)
    if images.is_floating_point():
        return torch.where(images >= _per_sample(arg, images), 1.0 - images, images)
    # On integers, pixel >= t is pixel >= ceil(t); XOR with 255 inverts the chosen pixels.
    threshold = torch.ceil(arg.to(images.device, torch.float64) * 255.0).clamp_(0, 255)
    chosen = images >= threshold.to(torch.uint8).view(-1, 1, 1, 1)
    return images ^ (chosen.to(torch.uint8) * 255)


def solarize_add(images: Tensor, arg: Tensor) -> Tensor:
    """Add ``arg`` levels (of 255) to intensities below 128 (timm's SolarizeAdd)."""
    _check(images, arg)
    if images.is_floating_point():
        added = (images + _per_sample(arg, images) / 255.0).clamp_(0, 1)
        return torch.where(images < 128 / 255.0, added, images)
    add = arg.to(images.device).round().clamp(0, 255).to(torch.int16).view(-1, 1, 1, 1)
    added = (images.to(torch.int16) + add).clamp_(0, 255).to(torch.uint8)
    return torch.where(images < 128, added, images)


def invert(images: Tensor, arg: Tensor) -> Tensor:
    """Return ``max - images`` (``arg`` unused)."""
    _check(images)
    return 1.0 - images if images.is_floating_point() else images.bitwise_not()


def autocontrast(images: Tensor, arg: Tensor) -> Tensor:
    """Stretch each channel of each image linearly to the full range (``arg`` unused)."""
    _check(images)
    bound = _bound(images)
    low = images.amin(dim=(-2, -1), keepdim=True).float()
    high = images.amax(dim=(-2, -1), keepdim=True).float()
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low) / bound)
    low = torch.where(flat, 0.0, low)
    work = images if images.is_floating_point() else images.float()
    return (work - low).div_(inv_scale).clamp_(0, bound).to(images.dtype)


def equalize(images: Tensor, arg: Tensor) -> Tensor:
    """Histogram-equalise each channel of each image with PIL's LUT (``arg`` unused).

    One ``bincount`` over offset pixel values builds every (image, channel) histogram at once.
    """
    _check(images)
    n, c, h, w = images.shape
    as_uint8 = images if images.dtype == torch.uint8 else images.mul(255).round_().to(torch.uint8)
    flat = as_uint8.reshape(n * c, h * w).long()
    offsets = torch.arange(n * c, device=images.device).unsqueeze(1) * 256
    hist = torch.bincount((flat + offsets).view(-1), minlength=n * c * 256).view(n * c, 256)
    cum = hist.cumsum(dim=1)
    last = cum.argmax(dim=1, keepdim=True)  # first bin reaching the total: the largest value
    step = (h * w - hist.gather(1, last)).div(255, rounding_mode="floor")
    lut = (cum[:, :-1] + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1).to(torch.uint8)
    out = torch.where(step > 0, lut.gather(1, flat), flat.to(torch.uint8)).view(n, c, h, w)
    if images.dtype == torch.uint8:
        return out
    return torch.where((step > 0).view(n, c, 1, 1), out.to(images.dtype) / 255.0, images)


def cutout(images: Tensor, arg: Tensor, centre: Tensor) -> Tensor:
    """Zero a square of side ``arg`` pixels per image, clipped at the border.

    Args:
        images: (N, C, H, W) batch.
        arg: (N,) square sides in pixels.
        centre: (N, 2) uniform draws in [0, 1) giving the (row, column) of each centre.
    """
    _check(images, arg)
    _n, _, h, w = images.shape
    side = arg.to(images.device).round().long()
    cy = (centre[:, 0].to(images.device) * h).long().clamp_(0, h - 1)
    cx = (centre[:, 1].to(images.device) * w).long().clamp_(0, w - 1)
    top, left = cy - side // 2, cx - side // 2
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + side)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + side)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)
    return images.masked_fill(mask, 0)


def degrees_of_shear(arg: float) -> float:
    """Shear angle in degrees that torchvision's ``affine`` takes for a shear factor."""
    return math.degrees(math.atan(arg))
