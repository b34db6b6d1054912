"""The model card: everything needed to use a model version, travelling next to its ONNX file.

Preprocessing is read from the card (timm's idea: the transforms are derived from the model's
config), so training, evaluation, export checks and serving cannot drift apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_serializer, field_validator, model_validator

from shared.hedging.calibration import Calibration
from shared.recipe import ModelRecipe
from shared.taxonomy import Taxonomy, TaxonomyError

__all__ = ["card_taxonomy", "PreprocessConfig", "Quantization", "ModelCard", "sha256_file", "CARD_FILENAME", "ONNX_FILENAME",
           "TRAINED_ON_ALL", "INPUT_NAME", "OUTPUT_NAME"]

CARD_FILENAME = "card.json"
# the ONNX tensor names of the model contract (shared.model_contract runs them, the trainer's
# onnx_export writes them); recorded in each card, so a version says how it is called
INPUT_NAME = "images"  # float32 [N, 3, S, S]
OUTPUT_NAME = "probabilities"  # softmax(logits / temperature), already calibrated
ONNX_FILENAME = "model.onnx"
# card.data["trained_on"] of a version that held no dataset split out (wardrobe cv|ensemble --version);
# the promotion gate then does not judge it on the evaluation split it learned from
TRAINED_ON_ALL = "all labelled photos"


class PreprocessConfig(BaseModel):
    """How a decoded RGB photo becomes the network's input tensor."""

    input_size: int = 224  # square side fed to the network
    resize_size: int = 256  # shorter side before the centre crop (eval/serving)
    interpolation: str = "bilinear"  # PIL resampling name
    mean: tuple[float, float, float] = (0.498, 0.498, 0.498)  # EfficientNet-Lite: (x - 127) / 128
    std: tuple[float, float, float] = (0.502, 0.502, 0.502)


class Quantization(BaseModel):
    """How an INT8 version was made from a float one (``wardrobe quantize``). The network, its
    temperature and the hedger's λ tables are the source version's; only the arithmetic changed,
    so the card says which float version it is and how close it stays to it."""

    source_version: str
    source_onnx_sha256: str
    format: str = "QDQ"  # QuantizeLinear/DequantizeLinear pairs (ONNX Runtime fuses them per provider)
    weights: str = "int8, per channel"
    activations: str = "uint8, per tensor"
    calibration_method: str  # minmax | entropy | percentile
    calibration_photos: int
    calibration_selection: str  # which photos, by rule (so they can be chosen again)
    calibration_seed: int = 0  # the rule's seed
    float_nodes: list[str] = Field(default_factory=list)  # left in float on purpose
    provider: str = "CPUExecutionProvider"  # where its int8 kernels are fast (load_model uses it alone)
    # measured against the source version on photos the calibration did not use
    agreement: dict[str, Any] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """Self-describing model version (model arguments, data, recipe, metrics, hashes)."""

    version: str
    created_at: str
    architecture: str
    preprocess: PreprocessConfig
    classes: list[str]  # leaf dotted names, in output order
    taxonomy_version: str
    taxonomy_digest: str
    # the taxonomy file's content the model was trained with: a version keeps answering (and its
    # stored answers keep rendering) after a leaf is added to shared/taxonomy.yaml
    taxonomy: dict[str, Any] | None = None
    onnx_file: str = ONNX_FILENAME
    onnx_input: str = INPUT_NAME  # the tensor names above
    onnx_output: str = OUTPUT_NAME
    temperature: float = 1.0
    # the hedger's λ(ε) tables (shared.hedging.calibration), checked here, when the card loads
    calibration: Calibration | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # dataset dir, split file, counts
    recipe: dict[str, Any] = Field(default_factory=dict)  # resolved training recipe (first member's)
    # the served kind that made this version: members, combination, calibration (shared.recipe);
    # a card written before cards carried it gets the one derived from ``recipe`` and ``data``
    model_recipe: ModelRecipe | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    # an INT8 version's making (None: the float network as exported)
    quantization: Quantization | None = None
    hashes: dict[str, str] = Field(default_factory=dict)  # file name -> sha256

    @field_validator("calibration", mode="before")
    @classmethod
    def _no_tables(cls, value: Any) -> Any:
        """Cards written before the field was typed say ``{}`` for "not calibrated"."""
        return None if value == {} else value

    @field_validator("model_recipe", mode="before")
    @classmethod
    def _recipe_from_dict(cls, value: Any) -> Any:
        return ModelRecipe.from_dict(value) if isinstance(value, dict) else value

    @field_serializer("model_recipe")
    def _recipe_to_dict(self, value: ModelRecipe | None) -> dict | None:
        return value.to_dict() if value is not None else None

    @model_validator(mode="after")
    def _derive_model_recipe(self) -> "ModelCard":
        """Older cards: the model recipe their ``recipe`` and ``data`` describe."""
        if self.model_recipe is None and self.recipe:
            unit = self.calibration.crc_unit if self.calibration is not None else None
            self.model_recipe = ModelRecipe.from_card(self.recipe, self.data, unit)
        return self

    @classmethod
    def load(cls, model_dir: str | Path) -> "ModelCard":
        return cls.model_validate_json((Path(model_dir) / CARD_FILENAME).read_text(encoding="utf-8"))

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CARD_FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def card_taxonomy(card: ModelCard | dict[str, Any], fallback: Taxonomy) -> Taxonomy:
    """The taxonomy a version was trained with: its card's copy, so it keeps answering (and its
    stored answers keep re-hedging) after a leaf is added to ``taxonomy.yaml``. Cards written
    before cards carried it: ``fallback`` (the served file), which must then be the same tree."""
    raw = card.taxonomy if isinstance(card, ModelCard) else card.get("taxonomy")
    version = card.version if isinstance(card, ModelCard) else card.get("version")
    digest = card.taxonomy_digest if isinstance(card, ModelCard) else card.get("taxonomy_digest")
    if raw:
        return Taxonomy(raw, source=f"card of model {version}")
    if digest and digest != fallback.digest:
        raise TaxonomyError(f"model {version} was trained on taxonomy {digest}, its card does not carry it, "
                            f"and the served one is {fallback.digest}")
    return fallback


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
