"""Issue 22: a new service is a folder (plus a values entry: tests/charts, the chart's side).

A throwaway service is made in a temporary folder, as a newcomer would make one: a package
laid out as every service is (``settings.py``, ``events.py``, ``api.py``, ``main.py``) on the
shared library, and a ``pyproject.toml`` whose ``[tool.akson.local]`` declares one setting.
The runner, which names no service, starts it with its own sidecar on the real database,
broker and OPA; it is ready (database, sidecar, OPA), its declared setting reached it, and its
sidecar is told the topics its ``events.py`` declares. Nothing is installed: its folder is enough.
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

# the layout every service has, in its smallest form: settings, events, routes, wiring
FILES = {
    "settings.py": """
from akson_common.settings import ServiceSettings


class ThrowawaySettings(ServiceSettings):
    greeting: str = "nobody told me"
""",
    "events.py": """
from akson_common.events import ACCOUNT_DISABLED, ServiceEvents

# it publishes nothing; tokens are verified, so its denylist takes disabled accounts
EVENTS = ServiceEvents(consumes=(ACCOUNT_DISABLED,))
""",
    "api.py": """
from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/greeting")
async def greeting(request: Request) -> dict[str, str]:
    return {"greeting": request.app.state.platform.settings.greeting}
""",
    "main.py": """
\"\"\"A throwaway service: one route that answers its one setting.\"\"\"

from fastapi import FastAPI

from akson_common.app import ServedApp, create_service
from akson_common.settings import settings_for
from throwaway.api import router
from throwaway.events import EVENTS
from throwaway.settings import ThrowawaySettings


def create_app(settings: ThrowawaySettings) -> FastAPI:
    return create_service(settings, title="Throwaway", events=EVENTS, routers=[router])


__getattr__ = ServedApp(lambda: create_app(settings_for(ThrowawaySettings, "throwaway")))
""",
}

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
    for name, text in FILES.items():
        (folder / NAME / name).write_text(text)
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
        # its sidecar is told the topics its events.py declares
        told = httpx.get(f"{urls['app']}/dapr/subscribe", timeout=5).json()
        assert [t["topic"] for t in told] == ["identity.account.disabled"]
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
    with pytest.raises(SystemExit) as refused:
        stack.prepare()
    assert "[tool.akson.local] is not valid" in str(refused.value)
    assert "storage" in str(refused.value)
    (folder / "pyproject.toml").write_text(PYPROJECT.replace("${app}", "${app.nowhere}"))
    stack = Stack(run_dir=run_dir, services=[NAME], services_root=services)
    with pytest.raises(SystemExit, match=r"knows no \$\{app\.nowhere\}"):
        stack.prepare()
