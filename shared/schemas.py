"""Pydantic schemas: the API's answers and the tasks' JSON payloads (kept apart from the tables).

Tasks carry ids and storage keys, never photo bytes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.recipe import PRESETS, Recipe

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
    key: str = Field(description="Where the version lives, relative to the model store's root.")
    active: bool
    architecture: str
    classes: int
    taxonomy_version: str = ""
    created_at: str


class ModelActivationPublic(BaseModel):
    """One change of the active version (newest first in the history)."""

    version: str
    previous_version: str | None
    kind: Literal["bootstrap", "activate", "promotion", "rollback"]
    caller_id: str | None = None
    reason: str | None = None
    created_at: str


class KeepUpdate(BaseModel):
    """A person's wish about one of their classifications and its photo (retention, SECURITY.md)."""

    model_config = ConfigDict(extra="forbid")
    keep: bool = Field(description="true: never expire it (its photo and feedback too); false: the usual retention.")


class KeepPublic(BaseModel):
    id: str
    keep: bool


# --- Feedback -------------------------------------------------------------------------------
class FeedbackCreate(BaseModel):
    """``{"correct": true}`` (the answer was right) or ``{"node": "<dotted name>"}`` (the truth is
    at least this node: a leaf, or an inner node when the caller knows no more)."""

    model_config = ConfigDict(extra="forbid")

    correct: Literal[True] | None = Field(None, description="The answer was right.")
    node: str | None = Field(None, max_length=255, description="The right taxonomy node (dotted name).")

    @model_validator(mode="after")
    def _one_of(self) -> "FeedbackCreate":
        if (self.correct is None) == (self.node is None):
            raise ValueError('send exactly one of {"correct": true} or {"node": "<dotted name>"}')
        return self


class FeedbackPublic(BaseModel):
    id: str
    classification_id: str
    caller_id: str
    photo_key: str
    model_version: str | None
    answer: str = Field(description="The node the classification answered (dotted name).")
    node: str = Field(description="The right node per this feedback: the answer itself when confirmed.")
    correct: bool = Field(description="Whether the answer was right (the node is the answer or below it).")
    current: bool = Field(description="The caller's current verdict; older ones are kept as history.")
    created_at: str


class FeedbackListPublic(BaseModel):
    current: list[FeedbackPublic] = Field(description="One current verdict per caller.")
    history: list[FeedbackPublic] = Field(description="Every verdict ever given, oldest first.")


# --- Training jobs --------------------------------------------------------------------------
TrainingMode = Literal["quick", "full", "recalibrate"]
TrainingJobStatusName = Literal["queued", "running", "done", "failed", "cancelled"]
_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class TrainingJobCreate(BaseModel):
    """A retrain (``quick``: last block + head on cached features; ``full``: the model recipe) or a
    recalibration of the hedger from feedback. Unknown options are refused by name."""

    model_config = ConfigDict(extra="forbid")

    mode: TrainingMode
    version: str | None = Field(None, pattern=_VERSION_PATTERN,
                                description="Name of the candidate version; derived from the time if unset.")
    promote: Literal["gate", "always", "never"] = Field(
        "gate", description="'gate': promoted only if the gate passes it; 'never': kept as a candidate; "
        "'always': promoted without the gate (still scored).")
    tolerance: float | None = Field(None, ge=0.0, le=0.5,
                                    description="Gate tolerance (top-1 points it may lose); the trainer's if unset.")
    recipe_preset: str = Field("default", description="'full' only: recipe preset ('default' or 'gpu').")
    recipe: dict[str, str] = Field(default_factory=dict,
                                   description="'full' and 'quick' (on the 'quick' preset): recipe field overrides.")

    @field_validator("recipe_preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown recipe preset '{value}' (known: {', '.join(PRESETS)})")
        return value

    @model_validator(mode="after")
    def _recipe_fits_mode(self) -> "TrainingJobCreate":
        if self.mode != "full" and self.recipe_preset != "default":
            raise ValueError(f"recipe_preset applies to mode 'full' only, not '{self.mode}'")
        if self.mode == "recalibrate" and self.recipe:
            raise ValueError("recipe applies to modes 'full' and 'quick', not 'recalibrate' (no weights are trained)")
        # names an unknown field; the quick mode's overrides apply to the quick preset
        Recipe.from_overrides(self.recipe, preset="quick" if self.mode == "quick" else self.recipe_preset)
        return self


class GateDecision(BaseModel):
    """The promotion gate's verdict on a candidate, with both scores and the reason."""

    promote: bool
    reason: str
    candidate: dict[str, Any] = Field(default_factory=dict, description="Candidate's scores (e.g. top1 per set).")
    active: dict[str, Any] = Field(default_factory=dict, description="The active version's scores on the same sets.")
    active_version: str | None = None
    tolerance: float | None = None


class TrainingJobPublic(BaseModel):
    id: str
    mode: TrainingMode
    options: dict[str, Any]
    status: TrainingJobStatusName
    stage: str | None
    progress: float = Field(ge=0.0, le=1.0)
    eta_s: float | None = Field(None, description="Seconds left, extrapolated from progress (running jobs).")
    log_tail: list[str]
    metrics: dict[str, Any]
    candidate_version: str | None
    gate: GateDecision | None
    promoted: bool = Field(False, description="The candidate became the active version.")
    requested_by: str | None
    worker: str | None
    cancel_requested: bool
    error: ErrorInfo | None = None
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None


# --- API keys (operators) -------------------------------------------------------------------
KeyRole = Literal["client", "trainer", "operator"]


class ApiKeyBase(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="Who or what the key is for.")
    role: KeyRole = Field("client", description="client < trainer < operator (SECURITY.md).")
    rate_limit_per_minute: int | None = Field(
        None, ge=0, le=1_000_000, description="Requests per minute; unset: the gateway's RATE_LIMIT_PER_MINUTE; 0: not limited.")
    max_photo_bytes: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Upload cap of this key (bytes); unset: the gateway's MAX_PHOTO_BYTES.")


class ApiKeyCreate(ApiKeyBase):
    model_config = ConfigDict(extra="forbid")

    # a name is printed in lists and logs, and PostgreSQL's text refuses NUL: no control characters
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$",
                      description="Who or what the key is for (printable: no control characters).")


class ApiKeyPublic(ApiKeyBase):
    """A key as lists show it: never its secret (only a hash of it is stored)."""

    id: str = Field(description="Public id: names the key in lists, logs and as the owner of what it creates.")
    created_at: str
    revoked_at: str | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret, shown this once: send it as 'Authorization: Bearer <key>'.")


# --- Task payloads: JSON on the wire, ids only --------------------------------------------
class InferenceTaskIn(BaseModel):
    job_id: str


class HedgeTaskIn(BaseModel):
    job_id: str


class TrainingJobTaskIn(BaseModel):
    """``trainer.run_job``: the job's id; the worker reads the rest from the row."""

    job_id: str


# --- the web page: browser sessions and "My wardrobe" -----------------------------------------------
class SessionPublic(BaseModel):
    """A browser session (the cookie itself is http-only: a page never sees it)."""

    client_id: str = Field(description="The client key this browser acts as: the owner of its classifications.")
    csrf_token: str = Field(description="Send as X-CSRF-Token with every state-changing request of this session.")
    expires_at: int = Field(description="When the session cookie expires (Unix seconds).")
    created: bool = Field(description="A new session was started by this request (false: the existing one).")


class WardrobeItem(BaseModel):
    """One garment of a person's wardrobe: a classification of theirs and their verdict on it."""

    id: str = Field(description="The classification's id.")
    status: JobStatusName
    answer: ScoredNode | None = Field(None, description="What Wardrobe answered (at the stored accuracy target).")
    verdict: Literal["confirmed", "corrected"] | None = Field(
        None, description="The caller's current feedback: the answer confirmed, or corrected to another node.")
    label: NodeRef | None = Field(None, description="The garment's class: the verdict's node, else the answer.")
    thumbnail_url: str
    created_at: str


class WardrobePublic(BaseModel):
    items: list[WardrobeItem] = Field(description="Newest first.")
