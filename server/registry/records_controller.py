"""Reading merged records back."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from schemas.protocol import RecordView
from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.openapi import problems
from server.sync.store import SyncStore

__all__ = ["RecordsController"]


class RecordsController(Controller):
    path = "/v1/records"
    tags = ["records"]
    security = SECURITY_REQUIREMENT

    @get(
        "/{collection:str}/{record_id:str}",
        operation_id="getRecord",
        summary="One record: merged fields, deletion and open conflicts",
        responses=problems(401, 404, 429, 503),
    )
    async def get_record(
        self,
        request: Request[Principal, str, Any],
        collection: FromPath[str],
        record_id: FromPath[str],
        store: NamedDependency[SyncStore],
    ) -> RecordView:
        return await store.records.view(collection, record_id, request.user)
