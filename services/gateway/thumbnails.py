"""Thumbnails of stored photos for the web page's wardrobe grid.

Why not the photo itself: a phone photo is megabytes, a grid of them would be tens of megabytes
per page view; a 320 px JPEG is a few kilobytes. Decoded with the same bounded decoder as uploads
(``shared.photos``: reduced JPEG decoding, the process's decode budget, EXIF orientation applied).
"""

from __future__ import annotations

import io

from starlette.concurrency import run_in_threadpool

from shared.photos import AsyncDecodeBudget, finish_decode, open_photo

__all__ = ["SIDE", "thumbnail"]

SIDE = 320  # longest side, px: sharp on a phone's 2-3x screen at the grid's ~120 css px


def _jpeg(img) -> bytes:  # noqa: ANN001 - a PIL image
    img.thumbnail((SIDE, SIDE))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=80)
    return out.getvalue()


async def thumbnail(data: bytes, max_bytes: int, max_pixels: int, budget: AsyncDecodeBudget) -> bytes:
    """The header checked in a thread, the budget awaited on the event loop (no thread held while
    waiting), then the decode and the encode in a thread: as an upload is validated."""
    opened = await run_in_threadpool(open_photo, data, max_bytes, max_pixels, SIDE, budget.capacity)
    async with budget.hold(opened.cost):
        img = await run_in_threadpool(finish_decode, opened)
    return await run_in_threadpool(_jpeg, img)
