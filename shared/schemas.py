"""Pydantic schemas: the API's answers and the tasks' JSON payloads (kept apart from the tables).

Tasks carry ids and storage keys, never photo bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

HedgeMethod = Literal["crc", "darts"]


class NodeRef(BaseModel):
    """A taxonomy node as a client shows it: dotted name, text and icon."""

    name: str = Field(description="Dotted name, e.g. 'body.top.t-shirt'; '' is the root.")
    display: str
    icon: str


class ScoredNode(NodeRef):
    probability: float = Field(ge=0.0, le=1.0)


class HedgedAnswer(BaseModel):
    """The hedger's choice for one photo, explained."""

    node: ScoredNode = Field(description="The most specific node that keeps the accuracy target.")
    path: list[NodeRef] = Field(description="From the chosen node up to the root.")
    alternatives: list[ScoredNode] = Field(
        description="More specific nodes below the chosen one, most probable first."
    )
    accuracy_target: float = Field(ge=0.0, le=1.0)
    method: HedgeMethod = Field(description="'crc': conformal risk control guarantee; 'darts': plain DARTS.")
    lam: float = Field(ge=0.0, description="The λ used: argmax over nodes of (reward + λ) · probability.")
    info_gain: float = Field(ge=0.0, description="Reward of the chosen node, in bits.")


# --- Classification jobs: the API's schema ladder -----------------------------------------
JobStatusName = Literal["pending", "running", "done", "failed"]


class StageTimings(BaseModel):
    """Milliseconds spent per stage of the pipeline (None: the stage has not run yet)."""

    queue_wait_ms: float | None = Field(None, description="Created → picked up by the inference worker.")
    decode_preprocess_ms: float | None = Field(None, description="Photo decode + EXIF + preprocessing.")
    inference_ms: float | None = Field(None, description="ONNX Runtime run of the micro-batch.")
    batch_size: int | None = Field(None, description="Photos in the micro-batch this one ran in.")
    hedging_ms: float | None = None
    total_ms: float | None = Field(None, description="Created → result stored.")


class ClassificationResult(BaseModel):
    """What the hedger stores for a finished job (and what a re-hedge returns)."""

    answer: HedgedAnswer
    top_predictions: list[ScoredNode] = Field(description="Most probable leaves, most probable first.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. 'corrupt_image'.")
    message: str


class ClassificationPublic(BaseModel):
    """A classification job as the API shows it."""

    id: str
    status: JobStatusName
    accuracy_target: float = Field(description="The accuracy target the stored answer was hedged for.")
    model_version: str | None = None
    answer: HedgedAnswer | None = Field(None, description="Set once status is 'done'.")
    top_predictions: list[ScoredNode] = Field(default_factory=list)
    rehedged: bool = Field(False, description="True when the answer was re-hedged for ?accuracy=.")
    timings: StageTimings = Field(default_factory=StageTimings)
    error: ErrorInfo | None = Field(None, description="Set once status is 'failed'.")
    created_at: str
    updated_at: str


class ErrorResponse(BaseModel):
    error: ErrorInfo


class TaxonomyNodePublic(BaseModel):
    name: str
    display: str
    icon: str
    parent: str | None
    depth: int
    is_leaf: bool
    children: list[str]


class TaxonomyPublic(BaseModel):
    version: str
    digest: str
    leaves: list[str]
    nodes: list[TaxonomyNodePublic]


class ModelVersionPublic(BaseModel):
    version: str
    active: bool
    architecture: str
    classes: int
    created_at: str


# --- Task payloads: JSON on the wire, ids only --------------------------------------------
class InferenceTaskIn(BaseModel):
    job_id: str


class HedgeTaskIn(BaseModel):
    job_id: str


class RehedgeTaskIn(BaseModel):
    job_id: str
    accuracy: float = Field(ge=0.0, le=1.0)


class TrainTaskIn(BaseModel):
    """A training job for the trainer worker: a dataset directory, never photo bytes."""

    dataset_dir: str
    version: str | None = Field(None, description="Version name; a UTC timestamp if unset.")
    recipe_preset: str = Field("default", description="Recipe preset: 'default' (CPU) or 'gpu' (whole network).")
    recipe: dict[str, str] = Field(default_factory=dict, description="Recipe field overrides (FIELD=VALUE).")
    split_file: str | None = Field(None, description="Split JSON to reuse; a new one in the version dir if unset.")
    activate: bool = Field(False, description="Make the new version active at once (promotion gates come later).")


class TrainTaskOut(BaseModel):
    version: str
    model_dir: str
    seconds: float
    activated: bool
