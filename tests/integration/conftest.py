"""The real stack for integration tests: redis, FerretDB, OPA, every app and its daprd sidecar.

Started once per test session by the same runner as `make up`, in its own run folder and on
its own free ports, and stopped afterwards (leaving no process behind).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from stack import ROOT, Stack

from tests.support import mint_token


@dataclass
class Platform:
    stack: Stack
    endpoints: dict[str, Any]
    tokens: dict[str, str]
    mongo: MongoClient[dict[str, Any]]

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def token(self, audience: str, *, subject: str, kind: str, **claims: Any) -> str:
        issuer = self.endpoints["dev_issuer"]
        return mint_token(
            issuer["private_key_file"],
            issuer["issuer"],
            audience,
            subject=subject,
            kind=kind,
            **claims,
        )

    def db(self, service: str) -> Any:
        return self.mongo[f"akson_{service}"]

    def restart(self, *names: str) -> None:
        for name in names:
            self.stack.stop(name)
        for name in names:
            self.stack.start(name)


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    run_dir = ROOT / ".run" / f"test-{uuid.uuid4().hex[:8]}"
    stack = Stack(run_dir=run_dir)
    stack.up()
    tokens = json.loads((run_dir / "secrets" / "tokens.json").read_text())
    mongo: MongoClient[dict[str, Any]] = MongoClient(stack.endpoints["mongo"]["url"])
    try:
        yield Platform(stack, stack.endpoints, tokens, mongo)
    finally:
        mongo.close()
        stack.down()
        leftovers = [
            name
            for name, process in stack.processes.items()
            if process.popen is not None and process.popen.poll() is None
        ]
        assert not leftovers, f"still running after down: {leftovers}"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll until ``check`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout} s"
    return value
