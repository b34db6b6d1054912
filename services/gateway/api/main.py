"""Mounts the routers."""

from fastapi import APIRouter

from services.gateway.api.routes import (classifications, feedback, health, keys, metrics, models, session,
                                        taxonomy, training_jobs, wardrobe)

api_router = APIRouter()
api_router.include_router(classifications.router)
api_router.include_router(feedback.router)
api_router.include_router(training_jobs.router)
api_router.include_router(taxonomy.router)
api_router.include_router(models.router)
api_router.include_router(keys.router)
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(session.router)
api_router.include_router(wardrobe.router)
