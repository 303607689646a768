"""gzip on the wire: a phone may gzip its push body, and gets big responses gzipped when it
accepts gzip; the messages are the same either way."""

from __future__ import annotations

import gzip

import msgspec
from litestar.testing import TestClient

from tests.factories import set_

Client = TestClient  # type: ignore[type-arg]


def _push_body(count: int) -> bytes:
    changes = [set_("notes", f"visit {n}", record=f"h-{n}") for n in range(count)]
    return msgspec.json.encode({"replica_id": "phone-a", "changes": changes})


def test_a_gzipped_push_is_applied_and_big_replies_come_back_gzipped(client: Client) -> None:
    body = _push_body(40)
    headers = {"content-type": "application/json", "content-encoding": "gzip", "accept-encoding": "gzip"}
    reply = client.post("/v1/sync/push", content=gzip.compress(body), headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-encoding"] == "gzip"
    assert [r["status"] for r in reply.json()["results"]] == ["applied"] * 40

    zipped = client.get("/v1/sync/pull", headers={"accept-encoding": "gzip"})
    plain = client.get("/v1/sync/pull", headers={"accept-encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.content == plain.content
    assert len(plain.json()["changes"]) == 40


def test_a_gzipped_push_is_bounded_by_its_decompressed_size(client: Client) -> None:
    bomb = gzip.compress(b" " * (9 * 1024 * 1024) + _push_body(1))
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    reply = client.post("/v1/sync/push", content=bomb, headers=headers)
    assert reply.status_code == 413
    assert reply.json()["code"] == "body_too_large"
    reply = client.post("/v1/sync/push", content=b"not gzip", headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (400, "malformed_body")
    reply = client.post("/v1/sync/push", content=_push_body(1), headers=headers | {"content-encoding": "br"})
    assert (reply.status_code, reply.json()["code"]) == (415, "unsupported_content_encoding")


def test_snapshot_pages_come_back_gzipped_to_a_phone_that_accepts_gzip(client: Client) -> None:
    reply = client.post("/v1/sync/push", content=_push_body(40), headers={"content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    zipped = client.get("/v1/sync/snapshot", headers={"accept-encoding": "gzip"})
    plain = client.get("/v1/sync/snapshot", headers={"accept-encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()
    assert len(plain.json()["records"]) == 40


def test_a_big_pull_page_is_streamed_and_a_small_one_sent_whole(client: Client) -> None:
    """Pages of up to 500 changes go out whole, with their length; bigger pages are written
    out as they are made, never held whole; gzipped or not, the page is the same."""
    for offset in range(0, 600, 200):
        body = msgspec.json.encode(
            {
                "replica_id": "phone-a",
                "changes": [set_("notes", "v", record=f"h-{offset + n}") for n in range(200)],
            }
        )
        assert client.post(
            "/v1/sync/push", content=body, headers={"content-type": "application/json"}
        ).is_success
    for encoding in ("gzip", "identity"):
        small = client.get("/v1/sync/pull?limit=500", headers={"accept-encoding": encoding})
        big = client.get("/v1/sync/pull?limit=600", headers={"accept-encoding": encoding})
        # Streamed: no length up front (the HTTP server frames it chunked).
        assert "content-length" in small.headers
        assert "content-length" not in big.headers
        assert (len(small.json()["changes"]), small.json()["more"]) == (500, True)
        assert (len(big.json()["changes"]), big.json()["more"]) == (600, False)
        assert big.json()["changes"][:500] == small.json()["changes"]
