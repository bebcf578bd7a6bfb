"""How much memory decoding one dataset may take: `DecodeLimits`.

Every source checks the shape of what it is about to hold before it allocates it: image files
from their headers (Pillow reads the size without decoding the pixels), the torchvision files
from their sizes or headers, the generated sources from their spec, and a resize from the
requested ``image_size``. A dataset over a limit is refused with a `DatasetError` naming the
limit, before the memory is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.datasets.dataset import DatasetError

MIB = 1024**2


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.1f} MiB"


@dataclass(frozen=True)
class DecodeLimits:
    """The memory bounds of decoding one dataset.

    Attributes:
        max_dataset_bytes: most bytes of the decoded dataset, images x channels x height x
            width as uint8 after resizing. Image files count three channels (they are decoded
            as RGB), and a dataset being resized counts both sizes.
        max_image_pixels: most pixels (width x height) of one image file, read from its header
            before it is decoded.
        max_image_size: largest side of the dataset's images: the ``image_size`` asked for or,
            without one, the size of the files.
    """

    max_dataset_bytes: int = 256 * MIB
    max_image_pixels: int = 24_000_000
    max_image_size: int = 512

    def check_shape(
        self, what: str, count: int, channels: int, height: int, width: int, held: int = 0
    ) -> None:
        """Refuse a dataset of ``count`` images of ``channels`` x ``height`` x ``width``.

        Args:
            what: the dataset, for the message.
            count: number of images.
            channels: channels as held in memory.
            height: image height.
            width: image width.
            held: bytes already decoded that stay alive meanwhile (a dataset being resized).

        Raises:
            DatasetError: a side over ``max_image_size``, or more than ``max_dataset_bytes``.
        """
        if max(height, width) > self.max_image_size:
            raise DatasetError(
                f"{what}: images of {height}x{width} pixels are larger than "
                f"{self.max_image_size} a side (max_image_size); ask for an image_size of at "
                f"most {self.max_image_size}"
            )
        nbytes = count * channels * height * width + held
        if nbytes > self.max_dataset_bytes:
            raise DatasetError(
                f"{what}: {count} images of {channels}x{height}x{width} need {_mib(nbytes)} "
                f"decoded, more than the limit of {_mib(self.max_dataset_bytes)} "
                "(max_dataset_bytes); ask for a smaller image_size or use fewer images"
            )

    def image_problem(self, width: int, height: int) -> str | None:
        """Why an image file of this size is refused, or None when it may be decoded."""
        if width * height > self.max_image_pixels:
            return (
                f"{width}x{height} is {width * height} pixels, more than the limit of "
                f"{self.max_image_pixels} (max_image_pixels)"
            )
        return None


DEFAULT_LIMITS = DecodeLimits()
