"""Decoding untrusted photo bytes into an upright RGB image, or a precise error.

Every failure is a ``PhotoError`` subclass with a message naming the problem, so the gateway can
answer 4xx and a worker can mark one job failed instead of dying.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "PhotoError",
    "EmptyPhoto",
    "PhotoTooLarge",
    "NotAnImage",
    "CorruptImage",
    "DecompressionBomb",
    "decode_photo",
]

DEFAULT_MAX_BYTES = 15 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: any phone photo, but no decompression bomb


class PhotoError(ValueError):
    """The bytes are not a usable photo. ``code`` is a stable machine-readable reason."""

    code = "invalid_photo"


class EmptyPhoto(PhotoError):
    code = "empty_photo"


class PhotoTooLarge(PhotoError):
    code = "photo_too_large"


class NotAnImage(PhotoError):
    code = "not_an_image"


class CorruptImage(PhotoError):
    code = "corrupt_image"


class DecompressionBomb(PhotoError):
    code = "decompression_bomb"


def decode_photo(
    data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Bytes → fully decoded RGB image, EXIF orientation applied.

    ``draft`` (validation only, never for the network's input): let JPEG decode at a reduced DCT
    scale no smaller than this size. Every byte is still entropy-decoded, so truncated or corrupt
    files fail the same way, several times faster.
    """
    if not data:
        raise EmptyPhoto("the photo is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"the photo is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImage("the file is not an image in a format Wardrobe reads (JPEG, PNG, WebP, ...)") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on hostile input
        raise CorruptImage(f"the image is truncated or corrupt and cannot be opened: {exc}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise DecompressionBomb(f"the image is {w}x{h} pixels; the limit is {max_pixels} pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", draft)
            img.load()  # decode fully now: truncated files fail here, not later in a worker
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    background = Image.new("RGB", rgba.size, (255, 255, 255))
                    background.paste(rgba, mask=rgba.getchannel("A"))
                    img = background
                else:
                    img = img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(f"the image is a decompression bomb: {exc}") from None
    except PhotoError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptImage(f"the image is truncated or corrupt: {exc}") from None
    return img
