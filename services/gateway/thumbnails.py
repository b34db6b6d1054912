"""Thumbnails of stored photos for the web page's wardrobe grid.

Why not the photo itself: a phone photo is megabytes, a grid of them would be tens of megabytes
per page view; a 320 px JPEG is a few kilobytes. Decoded with the same bounded decoder as uploads
(``shared.photos``: reduced JPEG decoding, the process's decode budget, EXIF orientation applied).
"""

from __future__ import annotations

import io

from shared.photos import DecodeBudget, decode_photo

__all__ = ["SIDE", "thumbnail"]

SIDE = 320  # longest side, px: sharp on a phone's 2-3x screen at the grid's ~120 css px


def thumbnail(data: bytes, max_bytes: int, max_pixels: int, budget: DecodeBudget) -> bytes:
    img = decode_photo(data, max_bytes, max_pixels, min_side=SIDE, budget=budget)
    img.thumbnail((SIDE, SIDE))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=80)
    return out.getvalue()
