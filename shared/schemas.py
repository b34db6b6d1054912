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
