"""The app factory: every piece of wiring in one place, nothing configured at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from server.access.accounts import AccountStore
from server.access.controller import AdminController, SignInController
from server.access.personal import prepare_stored
from server.access.rate_limits import RateLimits
from server.access.tokens import SECURITY_COMPONENTS, TokenMiddleware
from server.db.engine import create_engine
from server.errors import problem_details_plugin
from server.inbox.controller import ConflictsController
from server.inbox.service import ConflictInbox
from server.pages.admin import STATIC, admin_pages, template_config
from server.registry.attachments_controller import AttachmentsController
from server.registry.controller import RecordListController, ReportsController
from server.registry.records_controller import RecordsController
from server.settings import Settings, get_settings
from server.sync.controller import SyncController
from server.sync.store import SyncStore
from server.system import health, protocol_schema

__all__ = ["create_app"]


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


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    limits = RateLimits(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout,
        )
        app.state.store = SyncStore(engine, settings)
        # Stored ID numbers need their key: without it (or with another) the app does not start.
        await prepare_stored(engine, app.state.store.sealer, app.state.store.collections)
        app.state.accounts = AccountStore(engine)
        app.state.inbox = ConflictInbox(engine, app.state.store)
        # What start-up made lives as long as the process: frozen, it is no longer walked by
        # every full garbage collection (which the many objects of each push set off).
        gc.freeze()
        try:
            yield
        finally:
            await engine.dispose()

    sync_routes = Router(
        path="/",
        route_handlers=[
            SyncController,
            RecordsController,
            # The registry: docs/domain.md
            RecordListController,
            ReportsController,
            AttachmentsController,
        ],
        middleware=[limits.per_device.middleware, limits.per_address.middleware],
    )
    sign_in_routes = Router(
        path="/", route_handlers=[SignInController], middleware=[limits.sign_in.middleware]
    )
    return Litestar(
        route_handlers=[
            sync_routes,
            sign_in_routes,
            AdminController,
            ConflictsController,
            admin_pages(),
            create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False),
            health,
            protocol_schema,
        ],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={
            "store": Provide(_store, sync_to_thread=False),
            "accounts": Provide(_accounts, sync_to_thread=False),
            "settings": Provide(_settings, sync_to_thread=False),
            "inbox": Provide(_inbox, sync_to_thread=False),
        },
        middleware=[DefineMiddleware(TokenMiddleware, exclude=["^/schema", "^/admin", "^/static"])],
        plugins=[problem_details_plugin()],
        openapi_config=OpenAPIConfig(
            title="gridsync",
            version="1",
            description="Offline-first sync for community grid workers. See docs/protocol.md.",
            components=SECURITY_COMPONENTS,
        ),
        request_max_body_size=settings.max_body_bytes,
        template_config=template_config(),
    )
