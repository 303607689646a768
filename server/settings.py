"""Settings, read once from the environment (``GRIDSYNC_*``) and passed into ``create_app``."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "get_settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./gridsync.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Protocol limits; docs/protocol.md states them to app developers.
    max_changes_per_push: int = 2_000
    max_body_bytes: int = 8 * 1024 * 1024
    default_pull_limit: int = 1_000
    max_pull_limit: int = 5_000
    default_snapshot_limit: int = 500
    max_snapshot_limit: int = 5_000
    # A change stamped further ahead of the server's clock than this flags its device.
    max_clock_ahead_ms: int = 5 * 60 * 1000
    # A change stamped further ahead than this is refused (clock_too_far_ahead): an absurd hlc
    # would otherwise win every conflict it meets for as long as it stays ahead.
    max_hlc_ahead_ms: int = 7 * 24 * 3600 * 1000
    # PostgreSQL connections each app process keeps open at most (SQLite: always 2).
    database_pool_size: int = 20
    # Seconds a PostgreSQL connection attempt may take before the request is answered 503.
    database_connect_timeout: int = 5
    # The longest a phone may stay offline and still pull on from its cursor (60 days). History
    # is compacted only below changes older than this; see docs/reliability.md.
    max_offline_ms: int = 60 * 24 * 3600 * 1000
    # How often a device's acknowledged pull cursor is written (one write per device per minute
    # at most, so pulls stay read-only on SQLite almost always).
    ack_interval_ms: int = 60 * 1000
    # Rate limits per minute; see docs/security.md.
    device_requests_per_minute: int = 1_200
    address_requests_per_minute: int = 12_000
    sign_ins_per_minute: int = 30
    enrolments_per_minute: int = 10
    # One-time enrolment codes (POST /v1/enrol) work once, until this many seconds after issue.
    enrolment_code_ttl_s: int = 24 * 3600
    # Comma-separated addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and
    # X-Forwarded-Proto are believed; empty: the peer's own address is the client's.
    trusted_proxies: str = ""
    # The session cookie's Secure flag: "auto" (when the request came over HTTPS, directly or
    # through a trusted proxy), "always" or "never".
    secure_cookies: str = "auto"
    # Registry (docs/domain.md): an elderly-alone household with no checkin signal by this
    # local hour needs a visit today; the district's time zone; the largest attachment.
    checkin_cutoff_hour: int = 10
    timezone: str = "Asia/Shanghai"
    max_attachment_bytes: int = 5 * 1024 * 1024
    # Live events (GET /v1/sync/events): streams one device may hold open in each app process,
    # seconds between heartbeats, and the longest a stream lasts before the phone reconnects.
    max_event_streams_per_device: int = 2
    event_heartbeat_seconds: int = 15
    event_stream_seconds: int = 30 * 60
    # The key that seals ID numbers at rest (URL-safe base64 of 64 bytes), or a file holding it;
    # see docs/security.md. Neither: a SQLite database's ``<file>.key`` if it exists.
    encryption_key: str = ""
    encryption_key_file: str = ""
    # Seconds between two runs of the task rules (server/desk/tasks.py); 0 runs them only when
    # the desk's task page is opened.
    task_rules_interval: int = 60
    # Operations (docs/deploy.md): ``json`` logs one JSON line per request; a token that
    # ``GET /metrics`` requires (unset: only loopback callers may scrape); PostgreSQL hot
    # standbys, comma-separated, that serve pulls, snapshots and reads (docs/scaling.md).
    log_format: str = "text"
    metrics_token: str = ""
    database_read_urls: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = env.get(f"GRIDSYNC_{spec.name.upper()}")
            if raw is not None:
                values[spec.name] = int(raw) if spec.type == "int" else raw
        return replace(cls(**values), **overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
