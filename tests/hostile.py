"""A corpus of hostile and odd photos, generated (never read from disk), each with the answer the
API documents for it. Used by tests/e2e/test_hostile.py and bench/hostile_memory.py.

``Photo.status`` 200 means "accepted and classified" (the job reaches ``done``); anything else is
the refusal status with its error code. Requests that are hostile as HTTP rather than as a photo
(chunked over-limit bodies, slow uploads, forged keys, ...) are in the e2e test itself.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.factories import flat_png, jpeg_bytes, png_bytes

__all__ = ["Photo", "hostile_photos", "scan_bomb", "lossless_webp_declaring", "WORST_FOR_MEMORY"]


@dataclass(frozen=True)
class Photo:
    kind: str
    data: bytes
    status: int  # 200: accepted and classified; else the refusal
    code: str | None = None  # the error code of a refusal
    filename: str = "photo"


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_chunk_after_ihdr(png: bytes, kind: bytes, body: bytes) -> bytes:
    return png[:33] + _chunk(kind, body) + png[33:]  # 8 signature + 25 IHDR


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(jpeg_bytes((16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(len(mode))
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode)


def _exif_bomb() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 9  # an orientation that does not exist
    exif[0x010E] = "x" * 60000  # ImageDescription: a 60 KB string
    return _encode(_noise((64, 48)), "JPEG", exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (0, 0, 32, 64))
    return _encode(img.convert("P"), "PNG")


def _many_frames_gif() -> bytes:
    frames = [Image.new("P", (64, 64), i % 256) for i in range(500)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _sixteen_bit_grey() -> bytes:
    ramp = (np.arange(64, dtype=np.uint16)[None, :].repeat(48, 0) * 1000)
    return _encode(Image.fromarray(ramp), "PNG")


def scan_bomb(side: int = 6000, scans: int = 4_700) -> bytes:
    """A progressive JPEG whose first scan (DC, no data left for it) repeats ``scans`` times: ten
    bytes each, and libjpeg walks every block of the ``side`` x ``side`` image for each (issue [G2]:
    188 KB cost 12 s of CPU, 1.25 MB 155 s). The defaults make the 188 KB one."""
    grey = _encode(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=50)
    sos = grey.index(b"\xff\xda")
    header = grey[sos:sos + 2 + struct.unpack(">H", grey[sos + 2:sos + 4])[0]]
    eoi = grey.rindex(b"\xff\xd9")
    return grey[:eoi] + header * scans + grey[eoi:]


def lossless_webp_declaring(width: int = 8000, height: int = 5000) -> bytes:
    """A flat lossless WebP: 1.6 KB for 8000 x 5000; libwebp decodes it at 16 bytes a pixel (640 MB)."""
    return _encode(Image.new("RGB", (width, height), (40, 90, 160)), "WEBP", lossless=True)


# The worst photo for memory: the smallest file with the largest bitmap a 4-byte mode can hold
# under the pixel cap (RGB is stored as 4 bytes per pixel in PIL). bench/hostile_memory.py
# sends it at concurrency 16.
WORST_FOR_MEMORY = "pixel_amplification_png_rgb"


def hostile_photos(max_bytes: int) -> list[Photo]:
    """Every photo kind, for a gateway whose upload limit is ``max_bytes``."""
    side = int((max_bytes / 3) ** 0.5) + 50  # noise PNG ≈ 3 bytes per pixel: over the limit
    return [
        # accepted, whatever they look like
        Photo("pixel_amplification_png_rgb", flat_png(6300, 6300), 200),  # 130 KB → 40 MP
        Photo("pixel_amplification_png_grey", flat_png(6300, 6300, color_type=0), 200),  # 38 KB → 40 MP
        Photo("progressive_jpeg_40mp", _encode(Image.new("RGB", (6300, 6300), (120, 30, 200)), "JPEG",
                                               progressive=True, quality=50), 200),  # 230 KB
        Photo("sixteen_bit_grey_png", _sixteen_bit_grey(), 200),
        Photo("sixteen_bit_rgb_png", flat_png(64, 48, bit_depth=16), 200),
        Photo("cmyk_jpeg", _encode(_noise((64, 48), "CMYK"), "JPEG"), 200),
        Photo("palette_with_transparency", _palette_with_transparency(), 200),
        Photo("rgba_png", _encode(_noise((64, 48), "RGBA"), "PNG"), 200),
        Photo("grey_alpha_png", flat_png(64, 48, color_type=4), 200),
        Photo("one_bit_png", _encode(_noise((64, 48), "1"), "PNG"), 200),
        Photo("gif_500_frames", _many_frames_gif(), 200),
        Photo("tiff", _encode(_noise((64, 48)), "TIFF"), 200),
        Photo("bmp", _encode(_noise((64, 48)), "BMP"), 200),
        Photo("webp", _encode(_noise((64, 48)), "WEBP"), 200),
        Photo("progressive_jpeg", _encode(_noise((640, 480)), "JPEG", progressive=True), 200),
        Photo("extreme_aspect_ratio", flat_png(20000, 2), 200),  # would resize to 2.5 million px wide
        Photo("extreme_aspect_ratio_tall", flat_png(3, 13_000_000 // 3, color_type=0), 200),
        Photo("exif_bomb_bad_orientation", _exif_bomb(), 200),
        Photo("path_traversal_filename", jpeg_bytes(), 200, filename="../../../../etc/passwd"),
        # refused, each with its documented status and code
        Photo("zero_bytes", b"", 400, "empty_photo"),
        Photo("text", b"hello, this is not a photo\n" * 10, 415, "not_an_image"),
        Photo("pdf", b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", 415, "not_an_image"),
        Photo("eps_ghostscript", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 415,
              "not_an_image"),
        Photo("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "not_an_image"),
        Photo("ico", _encode(Image.new("RGB", (16, 16)), "ICO"), 415, "not_an_image"),
        Photo("zero_width_png", flat_png(0, 5, rows=0), 415, "not_an_image"),
        Photo("truncated_jpeg", jpeg_bytes((256, 256))[:1500], 400, "corrupt_image"),
        Photo("truncated_png", flat_png(1200, 1200)[:400], 400, "corrupt_image"),
        Photo("png_bad_crc", flat_png(64, 48)[:-5] + b"\x00" * 5, 200),  # IEND's CRC is not checked: harmless
        Photo("over_size_limit", png_bytes((side, side)), 413, "photo_too_large"),
        Photo("bomb_20000_square", flat_png(20000, 20000, color_type=0, rows=1), 413, "decompression_bomb"),
        Photo("bomb_over_pixel_cap", flat_png(7000, 7000, color_type=0, rows=1), 413, "decompression_bomb"),
        Photo("jpeg_declaring_65000_square", _jpeg_declaring(65000, 65000), 413, "decompression_bomb"),
        Photo("jpeg_scan_bomb", scan_bomb(), 413, "decompression_bomb"),  # 188 KB, 4,700 scans
        Photo("lossless_webp_8000x5000", lossless_webp_declaring(), 413, "decompression_bomb"),  # 1.6 KB
        Photo("png_text_chunk_bomb", _with_chunk_after_ihdr(
            flat_png(8, 8), b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (20 << 20), 9)), 413,
            "decompression_bomb"),
    ]
