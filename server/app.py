"""The app factory: every piece of wiring in one place, nothing configured at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, ControllerRouterHandler, Empty
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from server.access.accounts import AccountStore
from server.access.controller import AdminController, EnrolmentController, SignInController
from server.access.personal import EncryptionKeyError, check_stored_later, prepare_stored
from server.access.rate_limits import RateLimits, SignInThrottle
from server.access.tokens import SECURITY_COMPONENTS, TokenMiddleware
from server.db.engine import classify_database_error, create_engine, create_read_engines
from server.desk.controller import TasksController
from server.desk.pages import desk_pages
from server.desk.tasks import TaskRules
from server.errors import problem_details_plugin
from server.inbox.controller import ConflictsController
from server.inbox.service import ConflictInbox
from server.negotiation import BoundedRequest
from server.observability.metrics import forget_dead_workers, sse_streams_open
from server.observability.requests import RequestObserver
from server.openapi import OpenAPIDocument
from server.pages.admin import admin_pages
from server.pages.enrolment import enrolment_pages
from server.pages.field_app import field_app, me
from server.pages.rendering import STATIC, template_config
from server.registry.attachments_controller import AttachmentsController
from server.registry.controller import RecordListController, ReportsController
from server.registry.ratings_controller import RatingLinkController, rating_page, rating_submit
from server.registry.records_controller import RecordsController
from server.settings import Settings, get_settings
from server.sync.controller import SyncController
from server.sync.events import LogEvents
from server.sync.events_controller import EventsController
from server.sync.store import SyncStore
from server.system import health, health_live, health_ready, metrics, protocol_schema

__all__ = ["SECURITY_HEADERS", "create_app"]

# Sent with every answer. The admin pages load their script and styles from /static only (the
# dashboard's bars set a width in a style attribute, hence style-src-attr); no page may be framed.
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value="default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'",
    ),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]
_COOKIE_MODES = ("auto", "always", "never")


def _trusted_proxies(settings: Settings) -> list[str]:
    """The proxies whose X-Forwarded-For and X-Forwarded-Proto count (none unless configured)."""
    if settings.secure_cookies not in _COOKIE_MODES:
        raise ValueError(f"GRIDSYNC_SECURE_COOKIES must be one of {', '.join(_COOKIE_MODES)}")
    return [host.strip() for host in settings.trusted_proxies.split(",") if host.strip()]


def _behind(proxies: list[str]) -> Callable[[ASGIApp], ASGIApp]:
    """Uvicorn's proxy-headers middleware, believing only ``proxies``: the client's address and
    scheme then come from the nearest untrusted hop of X-Forwarded-For and X-Forwarded-Proto."""

    def wrap(app: ASGIApp) -> ASGIApp:
        return ProxyHeadersMiddleware(app, trusted_hosts=proxies)  # type: ignore[arg-type,return-value]

    return wrap


def _store(state: State) -> SyncStore:
    store: SyncStore = state.store
    return store


def _accounts(state: State) -> AccountStore:
    accounts: AccountStore = state.accounts
    return accounts


def _inbox(state: State) -> ConflictInbox:
    inbox: ConflictInbox = state.inbox
    return inbox


def _settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def _lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Opens the database and the services on start-up, closes them on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout,
        )
        app.state.store = SyncStore(engine, settings)
        # Stored ID numbers need their key: without it (or with another) the app does not start.
        # A database away at start-up is checked once it answers (the app answers 503 meanwhile).
        key_check: asyncio.Task[None] | None = None
        try:
            await prepare_stored(engine, app.state.store.sealer, app.state.store.collections)
        except Exception as error:
            if isinstance(error, EncryptionKeyError) or classify_database_error(error) != "unavailable":
                raise
            key_check = asyncio.create_task(
                check_stored_later(engine, app.state.store.sealer, app.state.store.collections)
            )
        forget_dead_workers()
        replicas = create_read_engines(settings)
        app.state.engines = {"primary": engine, **{f"replica{n}": e for n, e in enumerate(replicas, 1)}}
        app.state.store = SyncStore(engine, settings, read_engines=replicas)
        app.state.accounts = AccountStore(engine)
        app.state.inbox = ConflictInbox(engine, app.state.store)
        app.state.events = LogEvents(engine, settings)
        await app.state.events.start()
        app.state.store.writer.commit_watchers.append(app.state.events.committed)
        app.state.task_rules = TaskRules(app.state.store, settings)
        rules_loop = (
            asyncio.create_task(app.state.task_rules.loop(settings.task_rules_interval))
            if settings.task_rules_interval > 0
            else None
        )
        app.state.events.stream_watchers.append(sse_streams_open)
        # What start-up made lives as long as the process: frozen, it is no longer walked by
        # every full garbage collection (which the many objects of each push set off).
        gc.freeze()
        try:
            yield
        finally:
            if key_check is not None:
                key_check.cancel()
            await app.state.events.stop()
            if rules_loop is not None:
                rules_loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rules_loop
            await engine.dispose()
            for each in app.state.engines.values():
                await each.dispose()

    return lifespan


def _route_handlers(limits: RateLimits) -> list[ControllerRouterHandler]:
    """Every route, each group behind the rate limit that fits its callers."""
    sync_routes = Router(
        path="/",
        route_handlers=[
            SyncController,
            EventsController,
            me,
            RecordsController,
            # The registry: docs/domain.md
            RecordListController,
            ReportsController,
            AttachmentsController,
            TasksController,
        ],
        middleware=[limits.per_device.middleware, limits.per_address.middleware],
    )
    sign_in_routes = Router(
        path="/", route_handlers=[SignInController], middleware=[limits.sign_in.middleware]
    )
    enrolment_routes = Router(
        path="/", route_handlers=[EnrolmentController], middleware=[limits.enrolment.middleware]
    )
    return [
        sync_routes,
        sign_in_routes,
        enrolment_routes,
        AdminController,
        ConflictsController,
        RatingLinkController,
        rating_page,
        rating_submit,
        admin_pages(),
        field_app(),
        desk_pages(),
        enrolment_pages(),
        create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False),
        health,
        health_live,
        health_ready,
        metrics,
        protocol_schema,
    ]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    proxies = _trusted_proxies(settings)
    app = Litestar(
        route_handlers=_route_handlers(RateLimits(settings)),
        lifespan=[_lifespan(settings)],
        state=State({"settings": settings, "sign_in_throttle": SignInThrottle()}),
        dependencies={
            "store": Provide(_store, sync_to_thread=False),
            "accounts": Provide(_accounts, sync_to_thread=False),
            "settings": Provide(_settings, sync_to_thread=False),
            "inbox": Provide(_inbox, sync_to_thread=False),
        },
        middleware=[
            *([_behind(proxies)] if proxies else []),
            DefineMiddleware(TokenMiddleware, exclude=["^/schema", "^/admin", "^/static", "^/app", "^/r/"]),
        ],
        request_class=BoundedRequest,
        response_headers=SECURITY_HEADERS,
        plugins=[problem_details_plugin(), OpenAPIDocument()],
        openapi_config=OpenAPIConfig(
            title="gridsync",
            version="1",
            description="Offline-first sync for community grid workers. See docs/protocol.md.",
            components=SECURITY_COMPONENTS,
            # The document only: the browsable UIs would load their scripts from a CDN.
            render_plugins=[JsonRenderPlugin()],
        ),
        request_max_body_size=settings.max_body_bytes,
        template_config=template_config(),
        # JSON logs: the serve command configures every logger (server/observability/requests.py).
        logging_config=None if settings.log_format == "json" else Empty,
    )
    # Outside routing and the exception handlers: every response is observed, errors included.
    app.asgi_handler = RequestObserver(app.asgi_handler, json_log=settings.log_format == "json")
    return app
