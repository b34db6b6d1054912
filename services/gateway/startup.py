"""Start-up order, made explicit: wait for the database (logged retries), migrate, make sure a
model version is active, then connect to Redis and serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.gateway.database import Database
from services.gateway.config import GatewaySettings
from services.gateway.jobcache import JobCache
from services.gateway.keycache import KeyResolver
from services.gateway.notifier import Notifier
from services.gateway.queue import JobQueue
from services.gateway.ratelimit import RateLimiter
from services.gateway.rehedge import Rehedger
from services.gateway.sessions import SessionSigner, load_or_create_secret
from shared.bootstrap import prepare_database
from shared.celery_app import create_celery_app
from shared.metrics import start_metrics_server
from shared.model_hedgers import ModelHedgers
from shared.model_store import open_model_store
from shared.photos import AsyncDecodeBudget
from shared.storage import PhotoStore
from shared.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    s: GatewaySettings = app.state.settings
    url = s.resolved_database_url
    if s.migrate_on_startup:
        await run_in_threadpool(prepare_database, url, s.model_dir, s.db_wait_attempts, True, s.resolved_model_store)
    app.state.database = Database(url)
    app.state.keys = KeyResolver(s.auth_cache_s)
    app.state.sessions = SessionSigner(load_or_create_secret(s.session_secret, s.data_dir), s.session_max_age_s)
    app.state.jobs = JobCache(s.job_cache_size)
    app.state.store = PhotoStore(s.resolved_photo_dir)
    app.state.decode_budget = AsyncDecodeBudget(s.decode_budget_bytes)
    app.state.model_store = open_model_store(s.resolved_model_store)
    app.state.taxonomy = load_taxonomy(s.taxonomy_path)
    app.state.redis = aioredis.Redis.from_url(s.redis_url)
    app.state.notifier = Notifier(app.state.redis, s.redis_namespace)
    app.state.rate_limiter = RateLimiter(app.state.redis, s.redis_namespace)
    await app.state.notifier.start()
    celery = create_celery_app(s.redis_url, s.redis_namespace, main="gateway")
    app.state.queue = JobQueue(celery)
    app.state.rehedger = Rehedger(ModelHedgers(app.state.taxonomy), app.state.database)
    metrics_server = start_metrics_server(s.metrics_port, s.metrics_host, what="gateway")
    try:
        yield
    finally:
        if metrics_server is not None:
            metrics_server.close()
        await app.state.notifier.stop()
        try:
            await asyncio.wait_for(app.state.redis.aclose(), 2.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - best effort at shutdown
            pass
