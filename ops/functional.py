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


def _float(images: Tensor) -> Tensor:
    # Convert before any arithmetic: mixed uint8/float kernels are many times slower on CPU.
    return images if images.is_floating_point() else images.to(torch.float32)


def _finish(out: Tensor, like: Tensor) -> Tensor:
    # torchvision clamps and then truncates when casting back to uint8; float -> int16 -> uint8
    # truncates the same way and is several times faster than a direct float -> uint8 cast.
    out = out.clamp_(0, _bound(like))
    return out if like.is_floating_point() else out.to(torch.int16).to(like.dtype)


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


#: Rows per block of a CPU warp hold about this many pixels: the int64 gather index then stays
#: in cache and under the allocator's mmap threshold, which would page-fault on every call.
WARP_BLOCK_PIXELS = 2**18


def _unnormalised(grid: Tensor, size: int) -> Tensor:
    """grid_sample's nearest source index, +1 for the zero border and clamped onto it."""
    grid = grid.add_(1).mul_(size).sub_(1).mul_(0.5).round_()
    return grid.add_(1).clamp_(0, size + 1)


def _source_index(theta: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """Flat nearest source index into the zero-bordered image, (N, 1, H * W) int64."""
    h, w = ys.numel(), xs.numel()
    scale = torch.tensor([0.5 * w, 0.5 * h], device=theta.device)
    rescaled = theta.transpose(1, 2) / scale  # (N, 3, 2), as torchvision's _affine_grid
    # torchvision's grid is base_grid @ rescaled: (x * r0 + y * r1) + r2 per output pixel. The
    # same sums in the same order, split into a row and a column term, give identical floats,
    # so rounding ties (e.g. on the diagonals of a 135 degree rotation) go the same way.
    index = []
    for j, size in ((0, w), (1, h)):
        col, row, const = (rescaled[:, k, j, None] for k in range(3))
        grid = torch.add((xs * col)[:, None, :], (ys * row)[:, :, None])
        index.append(_unnormalised(grid.add_(const[:, :, None]), size))
    # Exact in float32: indices stay far below 2**24 for any realistic image.
    return index[1].mul_(w + 2).add_(index[0]).view(-1, 1, h * w).long()


def warp_index(theta: Tensor, height: int, width: int) -> Tensor:
    """Nearest source pixel of every output pixel of a warp, for :func:`warp_gather`.

    Args:
        theta: (N, 2, 3) inverse affine matrices, as :func:`warp_affine`'s.
        height: Image height.
        width: Image width.

    Returns:
        (N, 1, H * W) int64 flat indices into the image padded by a one-pixel zero border.
    """
    dev = theta.device
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=dev)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=dev)
    return _source_index(theta.to(torch.float32), xs, ys)


def warp_gather(images: Tensor, index: Tensor, out: Tensor | None = None) -> Tensor:
    """Read each output pixel of ``images`` (N, C, H, W) at its :func:`warp_index` source.

    ``index`` is (N, 1, H * W), or (1, 1, H * W) for one warp shared by every image.
    """
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    if out is None:
        out = torch.empty(images.shape, dtype=images.dtype, device=images.device)
    torch.gather(padded.view(n, c, -1), 2, index.expand(n, c, h * w), out=out.view(n, c, h * w))
    return out


def warp_affine(images: Tensor, theta: Tensor) -> Tensor:
    """Warp each image by its own inverse affine matrix, nearest sampling, fill 0.

    ``theta`` (N, 2, 3) maps output to input pixel coordinates centred on the image, as
    torchvision's ``_get_inverse_affine_matrix``. Source positions are those of torchvision's
    ``_affine_grid`` rounded like ``grid_sample(mode="nearest", align_corners=False)``, but the
    pixels are gathered directly so uint8 batches never round-trip through float. Positions
    outside the image read a one-pixel zero border, so no validity mask is needed.
    """
    _check(images)
    n, _c, h, w = images.shape
    dev = images.device
    theta = theta.to(device=dev, dtype=torch.float32)
    out = torch.empty(images.shape, dtype=images.dtype, device=dev)
    step = n if dev.type != "cpu" else max(1, WARP_BLOCK_PIXELS // (h * w))
    for start in range(0, n, step):  # blocks of rows bound the temporaries, see above
        rows = slice(start, start + step)
        warp_gather(images[rows], warp_index(theta[rows], h, w), out=out[rows])
    return out


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
    work = _float(images).mul(factor)
    return _finish(work.add_(other * (1.0 - factor)), images)


def _grayscale(images: Tensor) -> Tensor:
    r, g, b = _float(images).unbind(dim=1)
    gray = (r * _GRAY[0]).add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(1)
    return gray if images.is_floating_point() else gray.floor_()


def brightness(images: Tensor, arg: Tensor) -> Tensor:
    """Scale intensities by ``1 + arg``."""
    _check(images, arg)
    return _finish(_float(images).mul(1.0 + _per_sample(arg, images)), images)


def color(images: Tensor, arg: Tensor) -> Tensor:
    """Blend with the grayscale image by factor ``1 + arg`` (identity on 1-channel images)."""
    _check(images, arg)
    if images.shape[1] == 1:
        return images
    return _blend(images, _grayscale(images), 1.0 + _per_sample(arg, images))


def contrast(images: Tensor, arg: Tensor) -> Tensor:
    """Blend with the mean grayscale level by factor ``1 + arg``."""
    _check(images, arg)
    gray = _grayscale(images) if images.shape[1] == 3 else _float(images)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, 1.0 + _per_sample(arg, images))


def _box_sum(images: Tensor) -> Tensor:
    """3x3 neighbourhood sums of the interior pixels (int16 for uint8 input: at most 2295)."""
    work = images if images.is_floating_point() else images.to(torch.int16)
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
        work = centre
    else:
        # round((sum + 4 * centre) / 13): the quotient never ends in .5, and float32 is far
        # more precise than the 1/26 it keeps from any integer, so floor(x + 0.5) is exact.
        total = _box_sum(images).add_(centre.to(torch.int16), alpha=4)
        blurred = total.to(torch.float32).add_(6.5).div_(13.0).floor_()
        work = centre.to(torch.float32)
    factor = 1.0 + _per_sample(arg, images)
    inner = _finish((blurred - work).mul_(1.0 - factor).add_(work), images)
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
    return _finish((_float(images) - low).div_(inv_scale), images)


def equalize(images: Tensor, arg: Tensor) -> Tensor:
    """Histogram-equalise each channel of each image with PIL's LUT (``arg`` unused).

    One ``bincount`` over offset pixel values builds every (image, channel) histogram at once.
    """
    _check(images)
    n, c, h, w = images.shape
    as_uint8 = images if images.dtype == torch.uint8 else images.mul(255).round_().to(torch.uint8)
    flat = as_uint8.reshape(n * c, h * w).long()
    ones = torch.ones(1, dtype=torch.long, device=images.device).expand(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=images.device)
    hist.scatter_add_(1, flat, ones)
    cum = hist.cumsum(dim=1)
    last = cum.argmax(dim=1, keepdim=True)  # first bin reaching the total: the largest value
    step = (h * w - hist.gather(1, last)).div(255, rounding_mode="floor")
    lut = (cum[:, :-1] + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1)
    # A channel with a single value (step 0) is left unchanged: identity table.
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device))
    out = lut.to(torch.uint8).gather(1, flat).view(n, c, h, w)
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
