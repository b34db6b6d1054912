from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.model_card import PreprocessConfig
from shared.photos import (CorruptImage, DecompressionBomb, EmptyPhoto, NotAnImage, PhotoTooLarge,
                           decode_photo)
from shared.preprocessing import preprocess, preprocess_batch


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_preprocess_shape_and_normalisation():
    cfg = PreprocessConfig(input_size=32, resize_size=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = preprocess(Image.new("RGB", (50, 80), (255, 0, 128)), cfg)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25], atol=1e-5)
    assert preprocess_batch([], cfg).shape == (0, 3, 32, 32)


def test_centre_crop_keeps_the_centre():
    cfg = PreprocessConfig(input_size=10, resize_size=10, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    img = Image.new("RGB", (10, 30), (0, 0, 0))
    img.paste((255, 255, 255), (0, 10, 10, 20))  # the white middle third survives the crop
    assert preprocess(img, cfg).min() == pytest.approx(1.0)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    decoded = decode_photo(jpeg_bytes(img, exif=exif))
    assert decoded.size == (20, 40) and decoded.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_any_mode_becomes_rgb(mode):
    buf = io.BytesIO()
    img = Image.new("RGB", (8, 8), (1, 2, 3)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    img.save(buf, format="PNG" if mode != "CMYK" else "JPEG")
    assert decode_photo(buf.getvalue()).mode == "RGB"


def test_bad_photos_raise_precise_errors():
    good = jpeg_bytes(Image.new("RGB", (64, 64), (9, 9, 9)))
    with pytest.raises(EmptyPhoto):
        decode_photo(b"")
    with pytest.raises(NotAnImage):
        decode_photo(b"hello, this is text")
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        decode_photo(good[: len(good) // 2])
    with pytest.raises(PhotoTooLarge, match="limit"):
        decode_photo(good, max_bytes=100)
    with pytest.raises(DecompressionBomb, match="pixels"):
        decode_photo(good, max_pixels=64 * 63)


def test_a_strip_is_cut_to_its_centre_before_resizing():
    """20000 × 2 would be resized to 2.5 million pixels wide; only its centre can reach the crop."""
    cfg = PreprocessConfig(input_size=224, resize_size=256)
    strip = Image.new("RGB", (20000, 2), (0, 0, 255))
    strip.paste((255, 0, 0), (9999, 0, 10001, 2))  # a red mark in the middle survives
    x = preprocess(strip, cfg)
    assert x.shape == (3, 224, 224)
    assert x[0, 112, 112] > x[2, 112, 112]  # red at the centre
