"""Fault 5, part 2: schemathesis drives every operation of the OpenAPI document of a live
`gridsync serve`, with valid (positive) and invalid (negative) data. No answer may be a 5xx.

The document declares every request body, the raw-read push body included (a PushRequest), so
push and exchange are fuzzed with PushRequest-shaped bodies too. The document declares no links
between operations, so there is no stateful run to make."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.reliability.harness import ServerProcess, backend_of, record_figures

EXAMPLES_PER_OPERATION = 40


def _document(base_url: str) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        document: dict[str, Any] = http.get("/schema/openapi.json").json()
    return document


def _fuzz(strategy: Any, base_url: str, headers: dict[str, str]) -> int:
    """Run the generated cases of one operation; returns how many ran."""
    count = [0]

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        count[0] += 1
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    run()
    return count[0]


def test_every_operation_answers_without_server_errors(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    backend = backend_of(database_url)
    token = enroll("schemathesis")
    tally: dict[str, int] = {}
    # A live event stream ends only when its lifetime does: none here, so each case of
    # GET /v1/sync/events reads a whole (short) answer like any other.
    with ServerProcess(
        database_url, tmp_path / "server.log", env={"GRIDSYNC_EVENT_STREAM_SECONDS": "0"}
    ) as server:
        schema = schemathesis.openapi.from_dict(_document(server.base_url))
        headers = {"authorization": f"Bearer {token}"}
        for result in schema.get_all_operations():
            operation = result.ok()
            # Negative data needs something to break: an operation without inputs has none.
            raw = operation.definition.raw
            takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 2 if takes_input else 1]:
                label = f"{operation.label} {mode.value}"
                tally[label] = _fuzz(operation.as_strategy(generation_mode=mode), server.base_url, headers)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    record_figures(f"openapi-fuzz-{backend}", {"cases": sum(tally.values()), "per_operation": tally})
