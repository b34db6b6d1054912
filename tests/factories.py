"""Test data: a tiny ONNX model honouring the serving contract, and photos good and bad."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from shared.model_card import ModelCard, PreprocessConfig, sha256_file
from services.trainer.model.onnx_export import export_onnx
from shared.taxonomy import Taxonomy, load_taxonomy

__all__ = ["make_tiny_model", "jpeg_bytes", "png_bytes", "bomb_png", "flat_png", "bad_uploads"]


def make_tiny_model(
    model_dir: str | Path,
    version: str,
    classes: list[str] | None = None,
    input_size: int = 32,
    seed: int = 0,
    taxonomy: Taxonomy | None = None,
    calibration: dict | str = "auto",
    backbone: str = "tiny",
    calibration_samples: int = 400,
) -> Path:
    """Write ``<model_dir>/<version>/{model.onnx,card.json}``; returns that directory.

    The net: conv → global average pool → linear → softmax(logits / T), exported by the model
    contract's ``export_onnx`` (input [N, 3, S, S] float32 with a dynamic batch axis, output the
    probabilities [N, len(classes)]).
    ``calibration="auto"`` calibrates the hedger on the net's own outputs for random photos, with
    labels drawn from those outputs (a perfectly calibrated toy); ``{}`` leaves it empty.
    ``backbone="efficientnet_b0"`` (untrained torchvision net) gives a stand-in with the compute
    cost of the real model, for benchmarks.
    """
    import torch

    taxonomy = taxonomy or load_taxonomy()
    classes = list(classes or taxonomy.leaves)
    temperature = 1.5
    torch.manual_seed(seed)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
            self.head = torch.nn.Linear(8, len(classes))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(images)).mean(dim=(2, 3))  # (N, 8)
            return torch.softmax(self.head(x) * 40.0 / temperature, dim=1)

    out = Path(model_dir) / version
    out.mkdir(parents=True, exist_ok=True)
    if backbone == "tiny":
        net = Tiny().eval()
    else:
        import torchvision

        class Standin(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = getattr(torchvision.models, backbone)(weights=None, num_classes=len(classes))

            def forward(self, images: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.body(images) / temperature, dim=1)

        net = Standin().eval()
    export_onnx(net, out / "model.onnx", input_size, batch=2)
    if calibration == "auto":
        from shared.hedging.calibration import calibrate

        rng = np.random.default_rng(seed)
        with torch.no_grad():
            probs = net(torch.from_numpy(rng.normal(0, 1, (calibration_samples, 3, input_size, input_size)).astype(np.float32)))
        probs = probs.double().numpy()
        probs /= probs.sum(axis=1, keepdims=True)
        full = np.zeros((len(probs), len(taxonomy.leaves)))
        for j, leaf in enumerate(classes):
            full[:, taxonomy.leaves.index(leaf)] = probs[:, j]
        true_leaf = np.array([rng.choice(len(taxonomy.leaves), p=row) for row in full])
        calibration = calibrate(full, true_leaf, taxonomy).model_dump(mode="json")
    card = ModelCard(
        version=version,
        created_at=datetime.now(timezone.utc).isoformat(),
        architecture="tiny-test-cnn" if backbone == "tiny" else f"{backbone}-untrained-standin",
        preprocess=PreprocessConfig(input_size=input_size, resize_size=input_size + input_size // 7),
        classes=classes,
        taxonomy_version=taxonomy.version,
        taxonomy_digest=taxonomy.digest,
        temperature=temperature,
        calibration=calibration,
        hashes={"model.onnx": sha256_file(out / "model.onnx")},
    )
    card.save(out)
    return out


def _image(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def jpeg_bytes(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    _image(size, seed).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    _image(size, seed).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int = 9000) -> bytes:
    """A few hundred KB that decode to side² pixels (81 MP by default): a decompression bomb."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def flat_png(width: int, height: int, color_type: int = 2, bit_depth: int = 8, interlace: int = 0,
             rows: int | None = None) -> bytes:
    """A PNG of one flat colour written row by row with zlib (never holding the bitmap): a 6300 × 6300
    RGB one is 130 KB, a grey one 38 KB. ``color_type`` 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
    (PNG spec). ``rows`` writes only that many rows (a header-only bomb is enough to test a size cap)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = b"\x00" + b"\x7f" * (width * channels * bit_depth // 8)  # filter 0, mid-grey
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    plte = chunk(b"PLTE", bytes(range(256)) * 3) if color_type == 3 else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_uploads(max_bytes: int) -> list[tuple]:
    """(case id, files, query params, status, error code, message fragment) for every bad input.
    ``max_bytes`` is the gateway's photo size limit (a PNG of noise is made larger than it)."""
    side = int((max_bytes / 3) ** 0.5) + 50  # noise PNG ≈ 3 bytes per pixel
    good = jpeg_bytes()
    return [
        ("zero_bytes", {"photo": ("a.jpg", b"", "image/jpeg")}, {}, 400, "empty_photo", "empty"),
        ("not_an_image", {"photo": ("a.jpg", b"%PDF-1.4 hello", "image/jpeg")}, {}, 415, "not_an_image",
         "not an image"),
        ("truncated_jpeg", {"photo": ("a.jpg", jpeg_bytes((256, 256))[:1500], "image/jpeg")}, {}, 400,
         "corrupt_image", "truncated"),
        ("over_size_limit", {"photo": ("a.png", png_bytes((side, side)), "image/png")}, {}, 413,
         "photo_too_large", "limit"),
        ("decompression_bomb", {"photo": ("a.png", bomb_png(), "image/png")}, {}, 413, "decompression_bomb",
         "pixels"),
        ("missing_field", {}, {}, 422, "invalid_request", "missing form field 'photo'"),
        ("wrong_field_name", {"image": ("a.jpg", good, "image/jpeg")}, {}, 422, "invalid_request",
         "field named 'photo'"),
        ("accuracy_too_high", {"photo": ("a.jpg", good)}, {"accuracy": 1.0}, 422, "invalid_request",
         "accuracy must be between"),
        ("accuracy_too_low", {"photo": ("a.jpg", good)}, {"accuracy": 0.2}, 422, "invalid_request",
         "accuracy must be between"),
        ("accuracy_not_a_number", {"photo": ("a.jpg", good)}, {"accuracy": "high"}, 422, "invalid_request",
         "query parameter 'accuracy'"),
        ("accuracy_nan", {"photo": ("a.jpg", good)}, {"accuracy": "nan"}, 422, "invalid_request", "accuracy"),
        ("wait_too_long", {"photo": ("a.jpg", good)}, {"wait": 300}, 422, "invalid_request",
         "wait must be between"),
    ]


def garment_jpeg(kind: str = "tee", color: tuple[int, int, int] = (38, 84, 150), size: int = 480, seed: int = 0) -> bytes:
    """A drawn garment on a light floor (a flat-lay as people photograph clothes): a ``tee`` or
    ``trousers`` silhouette with fabric-like noise, so the real model sees a garment-shaped thing
    and each seed gives other bytes. Not a dataset photo: tests never read ../shared."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (228, 224, 216))
    draw = ImageDraw.Draw(img)
    s = size / 100
    shapes = {
        "tee": [(30, 12), (42, 8), (50, 13), (58, 8), (70, 12), (88, 28), (78, 38), (70, 32), (70, 90), (30, 90),
                (30, 32), (22, 38), (12, 28)],
        "trousers": [(30, 8), (70, 8), (74, 92), (56, 92), (50, 36), (44, 92), (26, 92)],
    }
    draw.polygon([(x * s, y * s) for x, y in shapes[kind]], fill=color)
    arr = np.asarray(img).astype(np.int16)
    arr += rng.integers(-14, 15, arr.shape[:2], dtype=np.int16)[..., None]  # weave, floor grain
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()
