"""The shape every service keeps (issue 22), checked on the tree so that it stays:

- no function over 80 lines outside tests;
- route files (``api.py``, ``fhir_api.py``) never ask the policy themselves: that is the
  service's (``service.py``/``access.py``), through the one enforcement point;
- storage goes through ``Repository``: no service calls a collection's write methods on a
  repository's ``collection``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    p
    for folder in ("services", "infra", "loadtests", "examples")
    for p in sorted((ROOT / folder).rglob("*.py"))
    if "tests" not in p.relative_to(ROOT).parts and ".venv" not in p.parts
]
ROUTE_FILES = sorted(
    p for p in (ROOT / "services").glob("*/*/*.py") if p.name in ("api.py", "fhir_api.py")
)
POLICY_CALL = re.compile(r"\b(policy|pep)\.(enforce|visible|read_back|decide)\(")
# what a route may take from the policy module: the shape of a write's answer it may not read
ROUTE_POLICY_NAMES = {"written_unread"}
RAW_WRITE = re.compile(
    r"\.collection\.(insert_one|insert_many|update_one|update_many|find_one_and_update|"
    r"delete_one|replace_one)\("
)


def test_the_tree_is_read() -> None:
    assert len(SOURCES) > 100
    assert len(ROUTE_FILES) >= 10


def long_functions(path: Path, limit: int = 80) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_outside_tests_is_over_80_lines() -> None:
    found = [entry for path in SOURCES for entry in long_functions(path)]
    assert found == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    long = ROOT / ".run" / f"shape-{tmp_path.name}.py"
    long.parent.mkdir(exist_ok=True)
    long.write_text(
        "from akson_common.policy import Policy, written_unread\n"
        "def f() -> None:\n" + "    x = 1\n" * 90
    )
    try:
        assert [e.split()[1] for e in long_functions(long)] == ["f"]
        assert policy_imports(long) == {"Policy", "written_unread"}
    finally:
        long.unlink()


def policy_imports(path: Path) -> set[str]:
    return {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "akson_common.policy"
        for alias in node.names
    }


@pytest.mark.parametrize("path", ROUTE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_routes_do_not_ask_the_policy(path: Path) -> None:
    assert policy_imports(path) <= ROUTE_POLICY_NAMES
    calls = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if POLICY_CALL.search(line)
    ]
    assert calls == []


def test_storage_goes_through_repository_methods() -> None:
    writes = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in SOURCES
        if p.name != "db.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if RAW_WRITE.search(line)
    ]
    assert writes == []


def test_the_patterns_match_what_they_are_for() -> None:
    assert POLICY_CALL.search("await self.pep.enforce(principal, action)")
    assert POLICY_CALL.search("await policy.read_back(principal, resource, context)")
    assert not POLICY_CALL.search("await access.read_back(device, principal)")
    assert RAW_WRITE.search("await store.clients.collection.insert_one(document)")
    assert not RAW_WRITE.search("await store.clients.insert(registration)")
