"""Every `code` the server can answer with is in schemas/codes.py, which the protocol schema and
the OpenAPI document publish: a code written anywhere in schemas/, server/ or sync/ and missing from the
enum fails here.

Codes are string literals spread over the modules that refuse things. They are found where a
code is written: an argument of a function or class with a `code` parameter or field (positional or
keyword), an assignment to `.code`, `["code"]` or a name that says it holds codes, a comparison
with a code, a `{"code": ...}` entry, and a (code, message) pair (a code-shaped literal followed
by a message with a space)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from schemas.codes import CODE_MEANINGS, Code
from schemas.collections import REQUEST_TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("schemas/**/*.py"), *ROOT.glob("server/**/*.py"), *ROOT.glob("sync/**/*.py")])
CODE_SHAPE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
# An f-string code stands for a family of codes: those the enum lists under its literal head.
FAMILY_HEAD = re.compile(r"^[a-z][a-z0-9_]*_$")


def _code_literals(node: ast.expr) -> Iterator[str]:
    """The codes an expression in a code's place can be: a literal, an f-string's family
    (``head*``), either side of ``or``, both arms of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if CODE_SHAPE.match(node.value):
            yield node.value
    elif isinstance(node, ast.JoinedStr):
        head = node.values[0]
        if isinstance(head, ast.Constant) and FAMILY_HEAD.match(str(head.value)):
            yield f"{head.value}*"
        else:
            yield f"<an f-string code without a literal head, line {node.lineno}>"
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from _code_literals(value)
    elif isinstance(node, ast.IfExp):
        yield from _code_literals(node.body)
        yield from _code_literals(node.orelse)


def _is_message(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.Constant) and " " in str(part.value) for part in node.values)
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value


def _names_code(node: ast.expr) -> bool:
    """``x.code``, ``x["code"]`` or ``x.get("code")``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "code"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "code"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "code"
    )


def _holds_codes(node: ast.Assign | ast.AnnAssign) -> bool:
    """An assignment to a name that says it holds codes (``code``, ``_CODE_BY_STATUS``)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return node.value is not None and any(
        isinstance(target, ast.Name) and {"code", "codes"} & set(target.id.lower().split("_"))
        for target in targets
    )


def _held_codes(value: ast.expr) -> list[ast.expr]:
    """The code places of a value assigned to a name that holds codes: a mapping's values, a
    lookup's default (``.get(key, "code")``), or the value itself; not a call's other arguments
    (``enrolment_codes = Table("enrolment_codes", Column(...))``)."""
    if isinstance(value, ast.Dict):
        return [v for v in value.values if v is not None]
    if isinstance(value, ast.Call):
        return list(value.args[1:]) if _callee(value) == "get" else []
    return [value]


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _code_positions(trees: list[ast.Module]) -> dict[str, set[int]]:
    """Functions and classes (by name) that take a code, and the argument position it has."""
    positions: dict[str, set[int]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [arg.arg for arg in node.args.args if arg.arg not in ("self", "cls")]
                if "code" in names:
                    owner = node.name
                    positions.setdefault(owner, set()).add(names.index("code"))
            elif isinstance(node, ast.ClassDef):
                fields = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                init = next(
                    (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
                )
                if init is not None:
                    fields = [arg.arg for arg in init.args.args[1:]]
                if "code" in fields:
                    positions.setdefault(node.name, set()).add(fields.index("code"))
    return positions


def codes_written(sources: list[Path]) -> dict[str, set[str]]:
    """Every code written in ``sources``, with the files that write it."""
    trees = [ast.parse(path.read_text()) for path in sources]
    positions = _code_positions(trees)
    found: dict[str, set[str]] = {}
    for path, tree in zip(sources, trees, strict=True):
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        places: list[ast.expr] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _callee(node)
                for position in positions.get(name or "", ()):
                    if position < len(node.args):
                        places.append(node.args[position])
                if name in positions:
                    places += [keyword.value for keyword in node.keywords if keyword.arg == "code"]
                pairs = list(zip(node.args, node.args[1:], strict=False))
            elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
                pairs = [(node.elts[0], node.elts[1])]
            else:
                pairs = []
                if isinstance(node, ast.Dict):
                    places += [
                        value
                        for key, value in zip(node.keys, node.values, strict=True)
                        if isinstance(key, ast.Constant) and key.value == "code"
                    ]
                elif isinstance(node, ast.Assign) and any(_names_code(target) for target in node.targets):
                    places.append(node.value)
                elif isinstance(node, ast.Assign | ast.AnnAssign) and _holds_codes(node):
                    assert node.value is not None
                    # A mapping to codes: its values (its keys say what each code is for).
                    places += _held_codes(node.value)
                elif isinstance(node, ast.Compare) and len(node.comparators) == 1:
                    left, right = node.left, node.comparators[0]
                    places += [right] if _names_code(left) else [left] if _names_code(right) else []
            places += [first for first, second in pairs if _is_message(second)]
        for place in places:
            for code in _code_literals(place):
                found.setdefault(code, set()).add(where)
    return found


def _covered(code: str) -> bool:
    if code.endswith("*"):
        return any(member.value.startswith(code[:-1]) for member in Code)
    return code in {member.value for member in Code}


def test_every_code_the_server_writes_is_in_the_enum() -> None:
    written = codes_written(SOURCES)
    missing = {code: sorted(files) for code, files in written.items() if not _covered(code)}
    assert missing == {}, "add these codes to schemas/codes.py (Code and its meaning)"


def test_a_new_code_in_any_kind_of_place_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "refusals.py"
    source.write_text(
        "def refuse(status, code, message): ...\n"
        "class Refusal:\n"
        "    def __init__(self, code, message): ...\n"
        "refuse(400, 'first_new', 'a message')\n"
        "Refusal(code=some_code, message=m)\n"
        "Refusal(f'second_new_{value}', m)\n"
        "pair = ('third_new', f'about {value}')\n"
        "result.code = 'fourth_new'\n"
        "if answer.get('code') == 'fifth_new': ...\n"
        "_CODE_BY_KIND = {'x': 'sixth_new'}\n"
        "body = {'code': 'seventh_new'}\n"
        "record(code=f'C{n}', name='not a code')\n"
    )
    written = codes_written([source])
    assert set(written) == {
        "first_new",
        "second_new_*",
        "third_new",
        "fourth_new",
        "fifth_new",
        "sixth_new",
        "seventh_new",
    }
    assert not any(_covered(code) for code in written)


def test_the_scan_finds_codes_of_every_kind_of_place() -> None:
    written = codes_written(SOURCES)
    # One of each: a refusal class, problem(), a (code, message) tuple, `.code =`, a comparison.
    assert {"bad_pred", "batch_too_large", "out_of_scope", "clock_ahead", "scope_changed"} <= set(written)
    assert {"malformed_change", "rate_limited", "already_resolved", "not_found"} <= set(written)


def test_every_code_in_the_enum_is_written_somewhere_and_explained() -> None:
    written = codes_written(SOURCES)
    families = [code[:-1] for code in written if code.endswith("*")]
    unused = [
        member.value
        for member in Code
        if member.value not in written and not any(member.value.startswith(head) for head in families)
    ]
    assert unused == [], "codes the server never answers with: drop them from schemas/codes.py"
    assert all(CODE_MEANINGS[member] for member in Code)


def test_every_status_a_request_can_be_seen_in_has_its_transition_code() -> None:
    seen = {"new" if status is None else status for status in REQUEST_TRANSITIONS}
    assert {f"illegal_transition_from_{status}" for status in seen} <= {member.value for member in Code}
