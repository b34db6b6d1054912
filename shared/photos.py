"""Decoding untrusted photo bytes into an upright RGB image, or a precise error.

Every failure is a ``PhotoError`` subclass with a message naming the problem, so the gateway can
answer 4xx and a worker can mark one job failed instead of dying.

Memory is the attack surface here: a 38 KB PNG can declare 6300 × 6300 pixels, and a decoder
that holds that bitmap at full size, converts it to RGB at full size and then resizes it multiplies
a few kilobytes into hundreds of megabytes per request. So a photo is decoded once and at the size
its caller needs (``min_side``):

* JPEG decodes at a reduced DCT scale (``draft``) no smaller than ``min_side``: the full-resolution
  bitmap never exists.
* Other formats (PNG, WebP, ...) cannot decode at a reduced size in PIL: the native bitmap is
  decoded once, then converted to RGB and ``reduce``-d by an integer factor band by band, so no
  full-size RGB copy is made next to it. How many such native bitmaps a process holds at once is
  bounded by a :class:`DecodeBudget` (in bytes): concurrent large decodes wait for each other
  instead of adding up.
* The pixel cap (``max_pixels``) refuses a declared size before anything is decoded.
* The budget is charged what each decoder really allocates (``_decoder_bytes``: WebP 16 bytes a
  pixel, AVIF 10, measured), and an image whose charge alone is over the whole budget is refused.
* A JPEG with more than ``MAX_JPEG_SCANS`` scans is refused before decoding: libjpeg walks every
  block of the image once per scan, so a 188 KB progressive JPEG whose empty scans repeat cost
  12 s of CPU (issue [G2]). Counting them is a walk over the file's markers (``jpeg_scan_count``).

Decoding is two steps so that a caller can wait for the budget without holding a thread:
``open_photo`` (the header, the checks, the charge; milliseconds) and ``finish_decode`` (the
pixels, inside the budget). ``decode_photo`` is both, for callers that may block (a worker).

An image whose shorter side is under twice ``min_side`` is never reduced, so ordinary photos (every
photo of the dataset) decode exactly as before and serving matches training bit for bit.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "PhotoError",
    "EmptyPhoto",
    "PhotoTooLarge",
    "NotAnImage",
    "UnsupportedImage",
    "CorruptImage",
    "DecompressionBomb",
    "DecodeBudget",
    "AsyncDecodeBudget",
    "OpenedPhoto",
    "open_photo",
    "finish_decode",
    "decode_photo",
    "jpeg_scan_count",
    "MAX_JPEG_SCANS",
    "return_freed_bitmaps_to_the_os",
    "READABLE_FORMATS",
]

DEFAULT_MAX_BYTES = 15 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: any phone photo, but no decompression bomb
# Bytes of native bitmap decoded at once per process (see DecodeBudget). 160 MiB = one 40 MP
# image in a 4-byte mode; bench/hostile_memory.py measures what it costs (SECURITY.md).
DEFAULT_DECODE_BUDGET_BYTES = 160 * 1024 * 1024
# Scans a JPEG may have. Encoders write 1 (baseline), 3 (one per colour component) or about 10
# (progressive: libjpeg's and mozjpeg's scripts); libjpeg costs a pass over every block per scan.
# 100 scans of a 40 MP image cost about half a second of CPU (bench/hostile_memory.py --kind scan_bomb).
MAX_JPEG_SCANS = 100
# Bytes a decoder holds per pixel beyond PIL's own bitmap, where that is more than the mode's
# (measured: peak RSS decoding 8000 x 5000 in a fresh process, Pillow 13). Pillow decodes WebP
# through libwebp's animation decoder (two RGBA canvases, the decoder's own buffers, then PIL's
# copy): 16 bytes a pixel, lossy or lossless. AVIF: YUV planes, then RGBA, then PIL's copy: 9.4.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 16, "AVIF": 10}
# Reduce only while the result stays at least this many times the size the caller needs: the
# same trade as PIL's ``thumbnail(reducing_gap=2.0)``, close to a full-resolution resample.
REDUCING_GAP = 2

# The decoders untrusted bytes may reach. PIL would otherwise also try EPS (which runs
# Ghostscript), PSD, FITS and dozens more formats nobody photographs clothes with.
READABLE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_TRANSPOSE = {  # EXIF orientation → the operation that makes the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_BAND_ROWS = 256  # rows converted to RGB at a time (before reduction)


class PhotoError(ValueError):
    """The bytes are not a usable photo. ``code`` is a stable machine-readable reason."""

    code = "invalid_photo"


class EmptyPhoto(PhotoError):
    code = "empty_photo"


class PhotoTooLarge(PhotoError):
    code = "photo_too_large"


class NotAnImage(PhotoError):
    code = "not_an_image"


class UnsupportedImage(PhotoError):
    """An image, but in a pixel format with no meaningful RGB rendering (e.g. multi-channel float)."""

    code = "unsupported_image"


class CorruptImage(PhotoError):
    code = "corrupt_image"


class DecompressionBomb(PhotoError):
    code = "decompression_bomb"


def return_freed_bitmaps_to_the_os() -> bool:
    """Make glibc serve every allocation over 128 KiB with its own mmap, so a freed bitmap goes
    back to the OS at once. By default glibc raises that threshold after the first large free, and
    from then on bitmaps come from per-thread heap arenas that keep their memory: 16 threads
    decoding a 40 MP PNG one after another (inside the budget) then peak at 1.9 GB instead of
    0.2 GB (measured; bench/hostile_memory.py). Call once at process start in every process that
    decodes photos concurrently; False where the C library is not glibc (nothing changed)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # <malloc.h>; setting it also turns the dynamic threshold off
    return bool(libc.mallopt(m_mmap_threshold, 128 * 1024))


class DecodeBudget:
    """Bytes of native bitmap a process may hold at once; decodes over it wait their turn.

    One image larger than the whole budget still decodes, alone. Without this, N concurrent
    uploads of the same small-file/large-bitmap PNG cost N bitmaps; with it, memory is bounded by
    the budget whatever the concurrency.
    """

    def __init__(self, capacity_bytes: int = DEFAULT_DECODE_BUDGET_BYTES) -> None:
        self.capacity = capacity_bytes
        self._used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._used == 0 or self._used + nbytes <= self.capacity)
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


_UNLIMITED = DecodeBudget(capacity_bytes=1 << 62)


class AsyncDecodeBudget:
    """:class:`DecodeBudget` for an event loop: a decode waiting its turn waits as a coroutine,
    not in a thread. (The gateway's uploads used to wait inside its thread pool: 45 uploads of a
    slow photo held every thread, and the database calls of every other request queued behind
    them; issue [G2].) Enter it, then hand the decode to a thread."""

    def __init__(self, capacity_bytes: int = DEFAULT_DECODE_BUDGET_BYTES) -> None:
        self.capacity = capacity_bytes
        self._used = 0
        self._cond: asyncio.Condition | None = None  # created on the loop that first waits

    @asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        cond = self._cond = self._cond or asyncio.Condition()
        async with cond:
            await cond.wait_for(lambda: self._used == 0 or self._used + nbytes <= self.capacity)
            self._used += nbytes
        try:
            yield
        finally:
            async with cond:
                self._used -= nbytes
                cond.notify_all()


# A marker that ends a JPEG's entropy-coded data: 0xFF followed by anything but a stuffed zero,
# a restart marker (D0-D7) or fill (another FF).
_JPEG_MARKER_IN_DATA = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = {0xD8, 0x01, *range(0xD0, 0xD8)}  # SOI, TEM, RSTn: no length field


def jpeg_scan_count(data: bytes, stop_after: int = MAX_JPEG_SCANS) -> int:
    """Start-of-scan markers in the first image of a JPEG, counted by walking its segments (a
    byte search would also count FFDA inside EXIF thumbnails and other segments' payloads).
    Stops once past ``stop_after``; a malformed stream ends the count where it breaks (the
    decoder then reports it)."""
    scans, pos, n = 0, 2, len(data)  # after SOI
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return scans
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI: the first image ends (an MPO's next images are not decoded)
            return scans
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # SOS: its header, then entropy-coded data up to the next marker
            scans += 1
            if scans > stop_after:
                return scans
            found = _JPEG_MARKER_IN_DATA.search(data, pos)
            if found is None:
                return scans
            pos = found.start()
    return scans


def _decoder_bytes(img: Image.Image, w: int, h: int) -> int:
    """Bytes the decoder of ``img`` holds at its peak for a ``w`` x ``h`` decode."""
    per_pixel = _DECODER_BYTES_PER_PIXEL.get(img.format or "", 0)
    return w * h * max(per_pixel, _bytes_per_pixel(img.mode))


def _bytes_per_pixel(mode: str) -> int:
    """What PIL stores per pixel: 1 for L/P/1, 2 for I;16*, else 4 (RGB is stored as RGBX)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: alpha composited on white, 16-bit and 32-bit grey scaled (not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey (PNG I;16) spans 0..65535; converting straight to L clips it all to white.
        a = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16)
        grey = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0  # floats are 0..1 by convention, else 0..255
        return Image.fromarray(np.clip(a * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def _rgb_reduced(img: Image.Image, factor: int) -> Image.Image:
    """``_to_rgb(img).reduce(factor)``, computed in bands of rows so that no full-size RGB copy
    of a large image is made (the band's rows are a multiple of ``factor``: same result)."""
    if factor == 1 and img.mode == "RGB":
        return img
    w, h = img.size
    out = Image.new("RGB", (-(-w // factor), -(-h // factor)))
    rows = max(1, _BAND_ROWS // factor) * factor
    for top in range(0, h, rows):
        band = _to_rgb(img.crop((0, top, w, min(top + rows, h))))
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth refusing the photo
        return None


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap decides
            Image.init()  # register every plugin (MPO, AVIF) before restricting to ours
            return Image.open(io.BytesIO(data), formats=[f for f in READABLE_FORMATS if f in Image.OPEN])
    except UnidentifiedImageError:
        raise NotAnImage("the file is not an image in a format Wardrobe reads "
                         f"({', '.join(READABLE_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"the image is a decompression bomb: {exc}") from None
    except ValueError as exc:
        if "too large" in str(exc).lower() or "memory" in str(exc).lower():  # PNG text-chunk bombs
            raise DecompressionBomb(f"the image is a decompression bomb: {exc}") from None
        raise CorruptImage(f"the image is truncated or corrupt and cannot be opened: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on hostile input
        raise CorruptImage(f"the image is truncated or corrupt and cannot be opened: {exc}") from None


@dataclass
class OpenedPhoto:
    """A photo whose header passed every check; ``cost``: the bytes its decode is charged."""

    img: Image.Image
    cost: int
    min_side: int | None


@contextmanager
def _decode_errors(img: Image.Image | None = None) -> Iterator[None]:
    """PIL's many exception types on hostile input → one :class:`PhotoError` each."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"the image is a decompression bomb: {exc}") from None
    except PhotoError:
        raise
    except MemoryError:
        raise DecompressionBomb("the image needs more memory to decode than this server allows") from None
    except (ValueError, TypeError) as exc:
        if img is not None and ("conversion" in str(exc) or "mode" in str(exc)):
            raise UnsupportedImage(f"the image's pixel format ({img.mode}) cannot be shown as RGB: {exc}") from None
        raise CorruptImage(f"the image is truncated or corrupt: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise CorruptImage(f"the image is truncated or corrupt: {exc}") from None


def open_photo(
    data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None, max_decode_bytes: int | None = None,
) -> OpenedPhoto:
    """Read the header and refuse what must not be decoded: empty, over ``max_bytes``, not an
    image Wardrobe reads, over ``max_pixels``, a JPEG of more than ``MAX_JPEG_SCANS`` scans, or a
    decode that would cost more than ``max_decode_bytes`` (the whole budget) on its own. Decodes
    nothing; milliseconds whatever the file."""
    assert not ImageFile.LOAD_TRUNCATED_IMAGES, "truncated photos must fail, not decode as grey"
    if not data:
        raise EmptyPhoto("the photo is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"the photo is {len(data)} bytes; the limit is {max_bytes} bytes")
    img = _open(data)
    w, h = img.size
    if w * h > max_pixels:
        raise DecompressionBomb(f"the image is {w}x{h} pixels; the limit is {max_pixels} pixels")
    if w == 0 or h == 0:
        raise CorruptImage(f"the image is {w}x{h} pixels")
    with _decode_errors(img):
        jpeg = img.format in ("JPEG", "MPO")
        if jpeg and (scans := jpeg_scan_count(data)) > MAX_JPEG_SCANS:
            raise DecompressionBomb(f"the JPEG has more than {MAX_JPEG_SCANS} scans ({scans} counted before "
                                    "stopping); decoding costs a pass over the whole image per scan")
        # A progressive JPEG keeps every DCT coefficient of the full-size image while it decodes,
        # whatever the scale: about 3 bytes per full-size pixel (measured: 120 MB for 40 MP).
        progressive = jpeg and bool(img.info.get("progressive") or img.info.get("progression"))
        coefficients = w * h * 3 if progressive else 0
        if min_side is not None and jpeg:
            gap = REDUCING_GAP * min_side
            img.draft("RGB", (gap, gap))  # decode at 1/2, 1/4 or 1/8 scale when that stays ≥ gap
        cost = coefficients + _decoder_bytes(img, *img.size)
    if max_decode_bytes is not None and cost > max_decode_bytes:
        raise DecompressionBomb(f"decoding this {w}x{h} {img.format} image takes about {cost >> 20} MiB; this "
                                f"server decodes at most {max_decode_bytes >> 20} MiB at once")
    return OpenedPhoto(img, cost, min_side)


def finish_decode(opened: OpenedPhoto) -> Image.Image:
    """Decode an opened photo's pixels: upright RGB (EXIF orientation applied, alpha on white),
    reduced for its ``min_side``. The caller holds ``opened.cost`` of its decode budget."""
    img, min_side = opened.img, opened.min_side
    with _decode_errors(img):
        w, h = img.size
        img.load()  # decode fully now: truncated files fail here, not later in a worker
        orientation = _orientation(img)
        factor = max(1, min(w, h) // (REDUCING_GAP * min_side)) if min_side else 1
        img = _rgb_reduced(img, factor)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
    return img


def decode_photo(
    data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None, budget: DecodeBudget | None = None,
) -> Image.Image:
    """Bytes → decoded upright RGB image (EXIF orientation applied, alpha on white).

    ``min_side``: the caller needs the shorter side no larger than this (serving: see
    ``shared.preprocessing.decode_min_side``); larger images are decoded reduced, never below
    ``REDUCING_GAP × min_side``. None decodes at full size (training, which reads its own files).
    ``budget``: the process's :class:`DecodeBudget` (waited for in this thread; an image costing
    more than all of it is refused); None means unbounded.
    Every byte of the image data is decoded either way, so truncated or corrupt files fail.
    """
    opened = open_photo(data, max_bytes, max_pixels, min_side, budget.capacity if budget is not None else None)
    with (budget or _UNLIMITED).hold(opened.cost):
        return finish_decode(opened)
