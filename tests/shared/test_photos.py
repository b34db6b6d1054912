"""Decoding untrusted photos: serving-size decoding, pixel formats, bombs, the decode budget."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from shared.model_card import PreprocessConfig
from shared.photos import (REDUCING_GAP, CorruptImage, DecodeBudget, DecompressionBomb, NotAnImage,
                           decode_photo)
from shared.preprocessing import decode_min_side, preprocess
from tests.factories import flat_png


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def test_pixel_amplification_png_is_decoded_reduced():
    data = flat_png(6300, 6300)  # ~130 KB declaring 40 MP
    img = decode_photo(data, min_side=256)
    assert img.mode == "RGB" and min(img.size) >= REDUCING_GAP * 256 and max(img.size) < 6300 // 8
    assert img.getpixel((10, 10)) == (127, 127, 127)


def test_large_jpeg_decodes_at_a_reduced_dct_scale():
    data = encode(noise((2400, 1600)), "JPEG", quality=80)
    img = decode_photo(data, min_side=200)
    assert img.size == (600, 400)  # 1/4 scale: the largest that stays ≥ 2 × 200 on both sides


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_ordinary_photos_decode_exactly_as_at_full_size(fmt):
    """Photos under twice the serving size are never reduced: what serving feeds the network is
    what training saw (bench/decode_parity.py checks the whole dataset)."""
    cfg = PreprocessConfig(input_size=224, resize_size=256)
    data = encode(noise((500, 380), seed=3), fmt)
    full = preprocess(decode_photo(data), cfg)
    served = preprocess(decode_photo(data, min_side=decode_min_side(cfg)), cfg)
    np.testing.assert_array_equal(full, served)


def test_reduced_decoding_stays_close_to_full_resolution():
    cfg = PreprocessConfig(input_size=224, resize_size=256)
    smooth = noise((60, 40), seed=1).resize((3000, 2000), Image.Resampling.BICUBIC)
    data = encode(smooth, "PNG")
    full = preprocess(decode_photo(data), cfg)
    served = preprocess(decode_photo(data, min_side=decode_min_side(cfg)), cfg)
    assert np.abs(full - served).mean() < 0.02  # normalised units: under 1 % of the range


def test_band_wise_reduction_equals_whole_image_reduction():
    img = noise((1300, 1100), seed=2)
    data = encode(img, "PNG")
    factor = 1100 // (REDUCING_GAP * 100)
    expected = img.reduce(factor)
    np.testing.assert_array_equal(np.asarray(decode_photo(data, min_side=100)), np.asarray(expected))


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white():
    ramp = (np.arange(64, dtype=np.uint16)[None, :].repeat(8, 0) * 1024)  # 0 .. 64512
    img = decode_photo(encode(Image.fromarray(ramp), "PNG"))
    row = np.asarray(img)[0, :, 0]
    assert row[0] == 0 and row[-1] == 64512 >> 8 and len(set(row.tolist())) == 64


def test_cmyk_jpeg_keeps_its_colour():
    img = decode_photo(encode(Image.new("RGB", (32, 32), (220, 20, 20)).convert("CMYK"), "JPEG", quality=95))
    r, g, b = img.getpixel((16, 16))
    assert r > 180 and g < 70 and b < 70


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode):
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (0, 0, 8, 16))  # left half opaque blue, right half transparent
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P")  # PIL keeps the transparent index in info["transparency"]
    out = decode_photo(encode(img, "PNG"))
    assert out.getpixel((12, 8)) == (255, 255, 255)
    assert out.getpixel((2, 8)) != (255, 255, 255)


def test_transparency_survives_reduction():
    data = flat_png(1200, 1200, color_type=6)  # grey 0x7f with alpha 0x7f everywhere
    out = decode_photo(data, min_side=100)
    assert out.size == (200, 200)
    assert out.getpixel((5, 5)) == pytest.approx((191, 191, 191), abs=1)  # half grey over white


def test_exif_orientation_applies_after_reduction():
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_photo(encode(noise((2400, 1200)), "JPEG", exif=exif), min_side=100)
    assert out.size[1] > out.size[0]  # portrait after the rotation


def test_huge_declared_size_is_a_bomb_not_corrupt():
    with pytest.raises(DecompressionBomb, match="pixels|bomb"):
        decode_photo(flat_png(20000, 20000, color_type=0, rows=1))
    with pytest.raises(DecompressionBomb, match="limit"):
        decode_photo(flat_png(7000, 7000, color_type=0, rows=1))  # 49 MP: over the 40 MP cap


def test_truncated_png_is_corrupt():
    data = flat_png(800, 800)
    with pytest.raises(CorruptImage):
        decode_photo(data[: len(data) // 2], min_side=100)


def test_formats_outside_the_list_are_not_read():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(NotAnImage):
        decode_photo(eps)
    with pytest.raises(NotAnImage):
        decode_photo(encode(Image.new("RGB", (8, 8)), "ICO"))


def test_decode_budget_serialises_holders_over_capacity():
    budget = DecodeBudget(capacity_bytes=100)
    inside, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with budget.hold(60):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    with budget.hold(500):  # one holder larger than the budget still gets through, alone
        pass


def test_a_progressive_jpeg_is_charged_for_its_full_size_coefficients():
    """libjpeg holds all DCT coefficients of a progressive JPEG, at any scale: the budget counts them."""
    data = encode(Image.new("RGB", (2000, 1000), (10, 20, 30)), "JPEG", progressive=True)
    charged = []

    class Recording(DecodeBudget):
        def hold(self, nbytes):  # noqa: ANN001, ANN201
            charged.append(nbytes)
            return super().hold(nbytes)

    decode_photo(data, min_side=100, budget=Recording())
    assert charged[0] >= 2000 * 1000 * 3


# --- decode cost: scans, per-format charges, the async budget (issue [G2]) ---------------------
def test_a_jpeg_scan_bomb_is_refused_from_its_markers_without_decoding():
    """188 KB and 1.25 MB of repeated empty scans (12 s and 155 s of CPU before): refused by
    open_photo, which decodes nothing, so the cost is a walk over the markers."""
    from shared.photos import MAX_JPEG_SCANS, open_photo
    from tests.hostile import scan_bomb

    for data in (scan_bomb(), scan_bomb(scans=111_000)):
        with pytest.raises(DecompressionBomb, match=f"more than {MAX_JPEG_SCANS} scans"):
            open_photo(data, min_side=224)


def test_a_jpeg_with_as_many_scans_as_allowed_decodes():
    from shared.photos import MAX_JPEG_SCANS, jpeg_scan_count
    from tests.hostile import scan_bomb

    own = jpeg_scan_count(scan_bomb(256, 0))  # libjpeg's progressive script: 6 scans for grey
    data = scan_bomb(256, MAX_JPEG_SCANS - own)
    assert jpeg_scan_count(data) == MAX_JPEG_SCANS
    assert decode_photo(data, min_side=100).size == (256, 256)


def test_scans_are_counted_by_segment_not_by_byte():
    """FFDA inside a segment's payload (an EXIF block, a thumbnail) is not a scan; an ordinary
    progressive JPEG has libjpeg's 10 scans, a baseline one 1."""
    from shared.photos import jpeg_scan_count

    exif = Image.Exif()
    exif[0x010E] = "\xff\xda" * 500  # ImageDescription full of SOS look-alikes
    assert jpeg_scan_count(encode(noise((64, 48)), "JPEG", exif=exif.tobytes())) == 1
    assert jpeg_scan_count(encode(noise((64, 48)), "JPEG", progressive=True)) == 10


def test_webp_is_charged_what_libwebp_allocates_and_refused_over_the_whole_budget():
    """libwebp (through Pillow's animation decoder) peaks at 16 bytes a pixel, lossy or lossless
    (measured: 8000 x 5000 → 633 MB RSS): a 1.6 KB lossless WebP declaring that is charged 640 MB,
    more than a 160 MiB budget, and refused before decoding."""
    from shared.photos import DEFAULT_DECODE_BUDGET_BYTES, open_photo
    from tests.hostile import lossless_webp_declaring

    small = open_photo(encode(noise((64, 48)), "WEBP"))
    assert small.cost == 64 * 48 * 16
    with pytest.raises(DecompressionBomb, match="MiB at once"):
        open_photo(lossless_webp_declaring(), max_decode_bytes=DEFAULT_DECODE_BUDGET_BYTES)
    with pytest.raises(DecompressionBomb):
        decode_photo(lossless_webp_declaring(), budget=DecodeBudget())


def test_the_async_budget_serialises_holders_over_capacity_without_threads():
    import asyncio

    from shared.photos import AsyncDecodeBudget

    async def main() -> int:
        budget, inside, peak = AsyncDecodeBudget(capacity_bytes=100), [0], [0]

        async def work() -> None:
            async with budget.hold(60):
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                await asyncio.sleep(0.01)
                inside[0] -= 1

        await asyncio.gather(*(work() for _ in range(6)))
        async with budget.hold(500):  # one holder larger than the capacity still gets through, alone
            pass
        return peak[0]

    assert asyncio.run(main()) == 1
