"""A JSON pull is made by the database from the stored rows and streamed out; it must be byte for
byte what msgspec encodes from the same changes, on every backend."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.testing import TestClient

from schemas.protocol import PullResponse
from tests.factories import add, delete, set_

Client = TestClient  # type: ignore[type-arg]


def test_json_pull_is_byte_for_byte_the_encoded_pull_response(client: Client) -> None:
    first = set_("notes", 'Zhāng "Wěi" \\ 张伟 \u2028 tab\there 🏠', record="h-1")
    changes = [
        first,
        set_("members_count", 3, record="h-1"),
        set_("phone", None, record="h-1"),
        add("tags", "elderly-alone", record="h-1"),
        set_("notes", "", record="h-2", pred=()),
        set_("notes", 'visit at 10:30, "seq":7}', record="h-3"),  # the cursor's seq is read from the text
        delete(pred=(first.id,), record="h-1"),
    ]
    body = {"replica_id": "phone-a", "changes": msgspec.json.decode(msgspec.json.encode(changes))}
    assert client.post("/v1/sync/push", json=body).status_code == 200

    for limit in (2, 1000):
        since: str | None = None
        more = True
        while more:
            params: dict[str, Any] = {"limit": limit} | ({"since": since} if since else {})
            as_json = client.get("/v1/sync/pull", params=params)
            as_msgpack = client.get("/v1/sync/pull", params=params, headers={"accept": "application/msgpack"})
            assert as_json.headers["content-type"].startswith("application/json")
            page = msgspec.msgpack.decode(as_msgpack.content, type=PullResponse)
            assert as_json.content == msgspec.json.encode(page)
            since, more = page.cursor, page.more
