"""Prometheus metrics, for operators only: counts by outcome say who is being refused and why."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.api.deps import OperatorDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics (operator key)", response_class=Response)
def read_metrics(_: OperatorDep) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
