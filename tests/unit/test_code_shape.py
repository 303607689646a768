"""The code's shape: every module under 500 lines, every function under 60.

A function may run longer only if the first line of its body is a comment starting ``# long:``
that says why; so the rule is never broken silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "sync", "server")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"
ALLOWED_LONG_MODULES: set[str] = set()
ALLOWED_LONG_FUNCTIONS: set[str] = set()


def _modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.relative_to(ROOT).parts
    )


def _explained(function: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """Whether the body opens with a ``# long: <why>`` comment (the first comment line between the
    def and its first statement)."""
    for line in lines[function.lineno : function.body[0].lineno - 1]:
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.startswith(LONG_MARK) and len(stripped) > len(LONG_MARK) + 1
    return False


def _too_long_functions(path: Path) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if f"{path.relative_to(ROOT)}:{node.name}" in ALLOWED_LONG_FUNCTIONS:
            continue
        if length >= MAX_FUNCTION_LINES and not _explained(node, lines):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_every_module_is_under_500_lines() -> None:
    too_long = [
        f"{path.relative_to(ROOT)} ({count} lines)"
        for path in _modules()
        if str(path.relative_to(ROOT)) not in ALLOWED_LONG_MODULES
        and (count := len(path.read_text().splitlines())) >= MAX_MODULE_LINES
    ]
    assert not too_long, "split these modules by idea: " + ", ".join(too_long)


def test_every_function_is_under_60_lines_or_says_why() -> None:
    too_long = [entry for path in _modules() for entry in _too_long_functions(path)]
    assert not too_long, f"split these functions, or open their body with '{LONG_MARK} <why>': " + ", ".join(
        too_long
    )


def test_a_long_function_passes_only_with_its_reason(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    silent = tmp_path / "silent.py"
    silent.write_text(f"def f() -> None:\n{body}")
    explained = tmp_path / "explained.py"
    explained.write_text(f"def f() -> None:\n    # long: one table of cases, read top to bottom\n{body}")
    bare = tmp_path / "bare.py"
    bare.write_text(f"def f() -> None:\n    # long:\n{body}")

    def check(path: Path) -> list[str]:
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        return [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and not _explained(node, lines)
        ]

    assert check(silent) == ["f"]
    assert check(explained) == []
    assert check(bare) == ["f"]
