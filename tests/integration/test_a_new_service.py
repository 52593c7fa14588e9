"""Issue 22: a new service is a folder (plus a values entry: tests/charts, the chart's side).

A throwaway service is made in a temporary folder, as a newcomer would make one: a package
with ``main.py`` on the shared library and a ``pyproject.toml`` whose ``[tool.akson.local]``
declares one setting. The runner, which names no service, starts it with its own sidecar on
the real database, broker and OPA; it is ready (database, sidecar, OPA) and its declared
setting reached it. Nothing is installed: its folder is enough.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack import ROOT, Stack, discover_services

NAME = "throwaway"

MAIN = '''
"""A throwaway service: one route that answers its one setting."""

from fastapi import APIRouter

from akson_common.app import create_service
from akson_common.events import ACCOUNT_DISABLED, ServiceEvents
from akson_common.settings import ServiceSettings, settings_for


class ThrowawaySettings(ServiceSettings):
    greeting: str = "nobody told me"


settings = settings_for(ThrowawaySettings, "throwaway")
router = APIRouter()


@router.get("/greeting")
async def greeting() -> dict[str, str]:
    return {"greeting": settings.greeting}


# what it publishes and consumes: tokens are verified, so the denylist's disabled accounts
events = ServiceEvents(consumes=(ACCOUNT_DISABLED,))
app = create_service(settings, title="Throwaway", events=events, routers=[router])
'''

PYPROJECT = """
[project]
name = "akson-throwaway"
version = "0.0.1"
requires-python = ">=3.11,<3.12"
dependencies = ["akson-common"]

[tool.akson.local.env]
GREETING = "hello from ${app}"
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Under the repository's .run (PostgreSQL's user cannot enter pytest's tmp_path)."""
    path = ROOT / ".run" / f"test-new-service-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_service(root: Path) -> Path:
    folder = root / NAME
    (folder / NAME).mkdir(parents=True)
    (folder / NAME / "__init__.py").write_text("")
    (folder / NAME / "main.py").write_text(MAIN)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    return folder


def test_a_service_folder_is_all_the_runner_needs(tmp_path: Path, run_dir: Path) -> None:
    services = tmp_path / "services"
    make_service(services)
    assert discover_services(services) == [NAME]
    stack = Stack(run_dir=run_dir, services=[NAME], services_root=services)
    try:
        stack.up(supervise=False)
        urls = stack.endpoints["services"][NAME]
        tokens = json.loads((stack.run_dir / "secrets" / "tokens.json").read_text())
        ready = httpx.get(f"{urls['app']}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "sidecar": True, "opa": True}
        # its sidecar knows it by its name (the app id the runner gave it)
        metadata = httpx.get(
            f"{urls['dapr_http']}/v1.0/metadata",
            headers={"dapr-api-token": tokens["dapr_api_token"]},
            timeout=5,
        )
        assert metadata.status_code == 200, metadata.text
        assert metadata.json()["id"] == NAME
        answer = httpx.get(f"{urls['app']}/greeting", timeout=5)
        assert answer.json() == {"greeting": f"hello from {urls['app']}"}
        assert [p for p in stack.processes if p.startswith(NAME)] == [
            f"{NAME}-app",
            f"{NAME}-dapr",
        ]
    finally:
        stack.down()


def test_a_declaration_naming_what_the_runner_does_not_know_is_refused(
    tmp_path: Path, run_dir: Path
) -> None:
    services = tmp_path / "services"
    folder = make_service(services)
    (folder / "pyproject.toml").write_text(
        PYPROJECT.replace("${app}", "${app.nowhere}") + '\n[tool.akson.local]\nstorage = "yes?"'
    )
    stack = Stack(run_dir=run_dir, services=[NAME], services_root=services)
    try:
        stack.prepare()
    except SystemExit as refused:
        assert "[tool.akson.local] is not valid" in str(refused) and "storage" in str(refused)
    else:
        raise AssertionError("a declaration that is not valid was accepted")
    (folder / "pyproject.toml").write_text(PYPROJECT.replace("${app}", "${app.nowhere}"))
    stack = Stack(run_dir=run_dir, services=[NAME], services_root=services)
    try:
        stack.prepare()
    except SystemExit as refused:
        assert "knows no ${app.nowhere}" in str(refused), refused
    else:
        raise AssertionError("a declaration naming an unknown value was accepted")
