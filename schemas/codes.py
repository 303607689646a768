"""Every stable ``code`` the server answers with: in a push result (``rejected``, or ``applied``
with a warning) and in a problem-details error body.

An app reacts to these codes, never to messages (messages are for people and may change). The
list is published by ``GET /v1/protocol/schema`` and in the OpenAPI document's ``Problem`` schema;
tests/unit/test_codes.py fails when a code written in ``server/`` or ``sync/`` is missing here.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.collections import REQUEST_STATUSES
from schemas.practices import DELIBERATION_STEPS, WISH_STATUSES

__all__ = ["CODE_MEANINGS", "Code"]


class Code(StrEnum):
    # Push results: a change the server refused (status ``rejected``) or stored with a warning.
    MALFORMED_CHANGE = "malformed_change"
    BAD_ID = "bad_id"
    BAD_RECORD_ID = "bad_record_id"
    BAD_HLC = "bad_hlc"
    BAD_PRED = "bad_pred"
    EMPTY_PRED = "empty_pred"
    FOREIGN_PRED = "foreign_pred"
    UNKNOWN_COLLECTION = "unknown_collection"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_OP = "wrong_op"
    INVALID_VALUE = "invalid_value"
    ID_REUSED = "id_reused"
    UNKNOWN_REFERENCE = "unknown_reference"
    ONE_PLACE_ONLY = "one_place_only"
    APPEND_ONLY = "append_only"
    OUT_OF_SCOPE = "out_of_scope"
    FORBIDDEN_FIELD = "forbidden_field"
    CLOCK_AHEAD = "clock_ahead"
    CLOCK_TOO_FAR_AHEAD = "clock_too_far_ahead"
    ENCRYPTION_KEY_MISSING = "encryption_key_missing"
    ILLEGAL_TRANSITION_FROM_NEW = "illegal_transition_from_new"
    ILLEGAL_TRANSITION_FROM_SUBMITTED = "illegal_transition_from_submitted"
    ILLEGAL_TRANSITION_FROM_DISPATCHED = "illegal_transition_from_dispatched"
    ILLEGAL_TRANSITION_FROM_ACCEPTED = "illegal_transition_from_accepted"
    ILLEGAL_TRANSITION_FROM_DONE = "illegal_transition_from_done"
    ILLEGAL_TRANSITION_FROM_RATED = "illegal_transition_from_rated"
    ILLEGAL_TRANSITION_FROM_CANCELLED = "illegal_transition_from_cancelled"
    ILLEGAL_TRANSITION_FROM_REOPENED = "illegal_transition_from_reopened"
    # A deliberation's step and a small wish's status (schemas/practices.py).
    ILLEGAL_TRANSITION_FROM_COLLECT = "illegal_transition_from_collect"
    ILLEGAL_TRANSITION_FROM_TOPIC = "illegal_transition_from_topic"
    ILLEGAL_TRANSITION_FROM_REVIEW = "illegal_transition_from_review"
    ILLEGAL_TRANSITION_FROM_PRE_MEETING = "illegal_transition_from_pre-meeting"
    ILLEGAL_TRANSITION_FROM_MEETING = "illegal_transition_from_meeting"
    ILLEGAL_TRANSITION_FROM_PUBLISH = "illegal_transition_from_publish"
    ILLEGAL_TRANSITION_FROM_IMPLEMENT = "illegal_transition_from_implement"
    ILLEGAL_TRANSITION_FROM_SUPERVISE = "illegal_transition_from_supervise"
    ILLEGAL_TRANSITION_FROM_SETTLED = "illegal_transition_from_settled"
    ILLEGAL_TRANSITION_FROM_DROPPED = "illegal_transition_from_dropped"
    ILLEGAL_TRANSITION_FROM_POSTED = "illegal_transition_from_posted"
    ILLEGAL_TRANSITION_FROM_CLAIMED = "illegal_transition_from_claimed"
    ILLEGAL_TRANSITION_FROM_FULFILLED = "illegal_transition_from_fulfilled"
    ILLEGAL_TRANSITION_FROM_WITHDRAWN = "illegal_transition_from_withdrawn"
    RATING_IS_THE_RESIDENTS = "rating_is_the_residents"
    SUPERVISOR_NOT_PARTY_MEMBER = "supervisor_not_party_member"
    CENTRAL_HOUSEHOLD_FULL = "central_household_full"
    # Problem details: a request refused as a whole.
    INVALID_REQUEST = "invalid_request"
    INVALID_INPUT = "invalid_input"
    MALFORMED_BODY = "malformed_body"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    BAD_REPLICA_ID = "bad_replica_id"
    BAD_CURSOR = "bad_cursor"
    BAD_LIMIT = "bad_limit"
    BAD_FILTER = "bad_filter"
    BAD_TIME = "bad_time"
    BAD_HASH = "bad_hash"
    HASH_MISMATCH = "hash_mismatch"
    MISSING_TOKEN = "missing_token"  # noqa: S105 - a code, not a secret
    INVALID_TOKEN = "invalid_token"  # noqa: S105 - a code, not a secret
    BAD_CREDENTIALS = "bad_credentials"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RESYNC_REQUIRED = "resync_required"
    SCOPE_CHANGED = "scope_changed"
    BODY_TOO_LARGE = "body_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    ATTACHMENT_TOO_LARGE = "attachment_too_large"
    DAMAGED_IMAGE = "damaged_image"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding"
    JSON_REQUIRED = "json_required"
    RATE_LIMITED = "rate_limited"
    SIGN_IN_SLOWED = "sign_in_slowed"
    DATABASE_UNAVAILABLE = "database_unavailable"
    STORAGE_FULL = "storage_full"
    INTERNAL_ERROR = "internal_error"
    HTTP_ERROR = "http_error"
    # Operations (docs/deploy.md): readiness and the metrics endpoint.
    NOT_READY = "not_ready"
    METRICS_TOKEN_REQUIRED = "metrics_token_required"  # noqa: S105 - a code, not a secret
    METRICS_NOT_PUBLIC = "metrics_not_public"
    # Accounts (the admin API, enrolment).
    UNKNOWN_ROLE = "unknown_role"
    ROLE_REQUIRED = "role_required"
    INVALID_ENROLMENT_CODE = "invalid_enrolment_code"
    USER_EXISTS = "user_exists"
    # The conflict inbox (the admin API).
    UNKNOWN_KIND = "unknown_kind"
    BAD_RULE = "bad_rule"
    # The office desk's spreadsheets.
    NOT_IMPORTABLE = "not_importable"
    NOT_EXPORTABLE = "not_exportable"
    BAD_MAPPING = "bad_mapping"
    BAD_CHOICE = "bad_choice"
    UNKNOWN_HEAD = "unknown_head"
    NOT_IN_CONFLICT = "not_in_conflict"
    DELETE_WITH_FIELDS = "delete_with_fields"
    INCOMPLETE_RESOLUTION = "incomplete_resolution"
    NOTHING_TO_KEEP = "nothing_to_keep"
    CONFLICT_CHANGED = "conflict_changed"
    ALREADY_RESOLVED = "already_resolved"
    # The resident's rating link.
    NOT_DONE = "not_done"
    LINK_NOT_VALID = "link_not_valid"
    REJECTED = "rejected"


def _transition_meaning(status: str) -> str:
    return (
        f"a state-machine field (a request's status, a deliberation's step, a wish's status) moves "
        f"where {status!r} (the value the device saw) does not allow; the message lists where it may go"
    )


_MEANINGS: dict[str, str] = {
    "malformed_change": "not a change at all (a missing key, a wrong type, an unknown op); the message says where",
    "bad_id": "the change id is not a lowercase UUID",
    "bad_record_id": "the record id is not 1-64 of A-Z a-z 0-9 _ . : -",
    "bad_hlc": "the hlc is not <wall ms, 15 digits>-<counter, 6 digits>-<replica id>",
    "bad_pred": "a pred entry is malformed, names the change itself, or there are too many",
    "empty_pred": "a remove names no add in pred",
    "foreign_pred": "pred names a change of another record or field (or another element's add), which it may not supersede",
    "unknown_collection": "no such collection; the message lists those that exist",
    "unknown_field": "no such field in the collection; the message lists those that exist",
    "wrong_op": "set on a set field, or add/remove on a scalar field",
    "invalid_value": "the value has the wrong type or is out of range for its field",
    "id_reused": "the change id was stored before with different content: make a new id",
    "unknown_reference": "a link field names a record the server does not have and the batch does not write",
    "one_place_only": "the record already has another of its exclusive fields set (a hazard's place)",
    "append_only": "an edit, delete or second write of an append-only record (a points ledger entry)",
    "out_of_scope": "the record, before or after the change, is outside the caller's scope",
    "forbidden_field": "the caller's role may not write this field or value",
    "clock_ahead": "applied, but the device's clock is ahead of the server's: fix the phone's time",
    "clock_too_far_ahead": "the hlc is further ahead of the server's clock than the bound: fix the phone's date",
    "encryption_key_missing": "an ID number, while the server has no key to store it encrypted: an operator's problem, retry later",
    **{
        f"illegal_transition_from_{status}": _transition_meaning(status)
        for status in ("new", *REQUEST_STATUSES, *DELIBERATION_STEPS, *WISH_STATUSES)
    },
    "rating_is_the_residents": "a phone typed a request's rating without marking it rated by phone on the resident's behalf (rated_on_behalf)",
    "supervisor_not_party_member": "a request's supervisor_id names a resident who is not a party member (no party_member_kind)",
    "central_household_full": "an add would link an 11th household to a central household (it serves 5-10): remove one first",
    "invalid_request": "a parameter or body failed validation; `errors` says which",
    "invalid_input": "a value cannot be stored (a NUL character, a number out of range); nothing was applied",
    "malformed_body": "the body is not the message the endpoint takes; nothing of it was applied",
    "unsupported_protocol": "the push names a protocol version this server does not speak",
    "bad_replica_id": "replica_id is not 1-64 of A-Z a-z 0-9 _ . : -",
    "bad_cursor": "the cursor was not issued by this server (or by this list)",
    "bad_limit": "limit (or days) is outside the allowed range",
    "bad_filter": "a filter does not apply to this collection or list",
    "bad_time": "`at` is not an RFC 3339 time with an offset",
    "bad_hash": "the attachment name is not a lowercase hex SHA-256",
    "hash_mismatch": "the uploaded bytes do not hash to the name they were sent under",
    "missing_token": "no bearer token (or session cookie) was sent",
    "invalid_token": "the token is unknown, expired or revoked",
    "bad_credentials": "unknown user name or wrong password",
    "forbidden": "the caller's role may not do this",
    "not_found": "no such record, conflict, user, device, attachment or path",
    "method_not_allowed": "the path exists, but not with this HTTP method",
    "resync_required": "history below the cursor was compacted: start again from a snapshot",
    "scope_changed": "the caller's scope changed since the cursor: start again from a snapshot",
    "body_too_large": "the body is over the server's limit",
    "batch_too_large": "too many changes in one push: split the batch",
    "attachment_too_large": "the attachment is over the server's limit",
    "damaged_image": "the JPEG or PNG does not parse, so its metadata cannot be stripped: send the photo again",
    "unsupported_media_type": "the Content-Type is neither JSON nor MessagePack",
    "unsupported_content_encoding": "the Content-Encoding is neither gzip nor identity",
    "json_required": "a write signed in by the session cookie must send application/json",
    "rate_limited": "too many requests: wait for Retry-After seconds",
    "sign_in_slowed": "too many wrong passwords: wait for Retry-After seconds",
    "database_unavailable": "the database is not reachable: retry after Retry-After seconds",
    "storage_full": "the server's disk is full; nothing was stored: push again later",
    "internal_error": "a server bug; it was logged",
    "http_error": "another HTTP error; the status and detail say which",
    "not_ready": "the database does not answer or its schema is not this server's: send traffic elsewhere",
    "metrics_token_required": "GET /metrics needs the bearer GRIDSYNC_METRICS_TOKEN",
    "metrics_not_public": "GET /metrics answers loopback callers only when no metrics token is set",
    "unknown_role": "the role is not one of the server's roles; the message lists them",
    "role_required": "a device without a user must be enrolled with role district_admin",
    "invalid_enrolment_code": "the enrolment code is unknown, expired or already used: ask an admin for a new one",
    "user_exists": "a user of that name already exists",
    "unknown_kind": "the conflict kind is not one the inbox knows; the message lists them",
    "bad_rule": "the bulk resolution rule does not apply to this field",
    "not_importable": "that collection cannot be imported from a spreadsheet; the message lists those that can",
    "not_exportable": "that collection cannot be exported; the message lists those that can",
    "bad_mapping": "the column mapping is not a JSON object of column names to field names",
    "bad_choice": "a field's resolution gives neither or both of keep and value",
    "unknown_head": "the resolution keeps a head the conflict does not have",
    "not_in_conflict": "the record has no conflict of the kind resolved",
    "delete_with_fields": "a confirmed delete takes no field values",
    "incomplete_resolution": "the resolution leaves a conflicting field unresolved",
    "nothing_to_keep": "the record has no field value to keep",
    "conflict_changed": "the conflict's heads moved since it was loaded; `current` holds its state now",
    "already_resolved": "the conflict was resolved meanwhile; `current` holds its state now",
    "not_done": "a rating link is for a done request; the request is not done (or already rated)",
    "link_not_valid": "the rating link is unknown, used, or expired: the office issues a new one",
    "rejected": "a resolution's change was refused without a more specific code",
}

CODE_MEANINGS: dict[Code, str] = {code: _MEANINGS[code.value] for code in Code}
