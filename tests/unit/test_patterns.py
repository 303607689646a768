"""No pattern ends in ``$``: in Python ``$`` also matches before a final newline, so
``"11010119900101123X\\n"`` would pass as an ID number."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.collections import COLLECTIONS, END

ROOT = Path(__file__).resolve().parents[2]
# A string literal that starts a regex with ^ and ends it with $ (what a new pattern looks like).
_DOLLAR_PATTERN = re.compile(r"""r?(["'])\^[^"'\n]*\$\1""")


def _schema_patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _schema_patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _schema_patterns(value)]
    return []


def test_no_source_file_anchors_a_pattern_with_dollar() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("schemas", "sync", "server")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _DOLLAR_PATTERN.search(line)
    ]
    assert offenders == [], "anchor with \\Z (Python only) or schemas.collections.END, not $"


def test_every_collection_field_pattern_ends_with_end() -> None:
    patterns = [
        pattern
        for spec in COLLECTIONS.values()
        for field in spec.fields.values()
        for pattern in _schema_patterns(msgspec.json.schema(field.type))
    ]
    assert patterns, "the collections declare patterns"
    assert all(p.endswith(END) for p in patterns), patterns


@pytest.mark.parametrize(
    ("collection", "field", "value"),
    [
        ("residents", "id_number", "11010119900101123X"),
        ("households", "phone", "13800000000"),
        ("households", "building_id", "b-1"),
        ("households", "tags", "elderly-alone"),
    ],
)
def test_a_trailing_newline_fails_a_value_that_passes_without_it(
    collection: str, field: str, value: str
) -> None:
    # A field's type is its value's, or its set elements'.
    field_type = COLLECTIONS[collection].fields[field].type
    assert msgspec.convert(value, field_type) == value
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(value + "\n", field_type)
