"""Each service's ``events.py`` is what its app does: the topics its sidecar is told to deliver
(``GET /dapr/subscribe``) are exactly those it declares consumed, each with its dead-letter
topic; wiring that differs from the declaration is not built; the outbox refuses an event of a
topic the service does not declare it publishes, before anything is written."""

from __future__ import annotations

import importlib
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from akson_common.app import create_service
from akson_common.events import (
    ACCOUNT_DISABLED,
    DECISIONS_ENFORCED,
    PERSON_CHANGED,
    AccountDisabledV1,
    ServiceEvents,
    UndeclaredTopic,
    cloud_event,
)
from akson_common.projections import PatientProjections
from akson_common.settings import ServiceSettings

SERVICES_DIR = Path(__file__).resolve().parents[2]
# every service built on create_service: a folder with <name>/events.py
SERVICES = sorted(
    p.parent.name for p in SERVICES_DIR.glob("*/*/events.py") if p.parent.name != "akson_common"
)


def test_every_service_but_the_console_declares_its_events() -> None:
    # the console is a web app on the services' APIs: no database, no events
    with_main = {p.parent.name for p in SERVICES_DIR.glob("*/*/main.py")}
    assert set(SERVICES) == with_main - {"console"}
    assert len(SERVICES) >= 9


def _settings(service: str, tmp_path: Path) -> ServiceSettings:
    """Development settings of the class the service's ``create_app`` takes, with tokens
    verified (as everywhere but in a test), so the denylist subscribes too."""
    create_app = importlib.import_module(f"{service}.main").create_app
    kind = typing.get_type_hints(create_app)["settings"]
    settings: ServiceSettings = kind(
        service_name=service,
        environment="development",
        mongo_url="mongodb://127.0.0.1:1/",
        jwks_file=str(tmp_path / "jwks.json"),
    )
    return settings


def _subscriptions(app: FastAPI) -> list[dict[str, Any]]:
    # no lifespan: nothing here reaches the database, the sidecar or OPA
    answer = TestClient(app).get("/dapr/subscribe")
    assert answer.status_code == 200
    subscriptions: list[dict[str, Any]] = answer.json()
    return subscriptions


@pytest.mark.parametrize("service", SERVICES)
def test_the_sidecar_is_told_the_declared_topics(service: str, tmp_path: Path) -> None:
    main = importlib.import_module(f"{service}.main")
    declared: ServiceEvents = importlib.import_module(f"{service}.events").EVENTS
    subscriptions = _subscriptions(main.create_app(_settings(service, tmp_path)))
    topics = [s["topic"] for s in subscriptions]
    assert sorted(topics) == sorted(t.name for t in declared.consumes)
    assert len(topics) == len(set(topics)), "a topic subscribed twice"
    for subscription in subscriptions:
        assert subscription["deadLetterTopic"] == f"{subscription['topic']}.deadletter"
        assert subscription["bulkSubscribe"]["enabled"] is True


def _service(tmp_path: Path, events: ServiceEvents, *, projections: bool) -> FastAPI:
    settings = ServiceSettings(
        service_name="any", environment="development", jwks_file=str(tmp_path / "jwks.json")
    )

    def configure(app: FastAPI, platform: Any) -> None:
        if projections:
            PatientProjections(platform.database, platform.subscriptions)

    return create_service(settings, title="any", events=events, configure=configure)


def test_a_subscription_not_declared_is_not_built(tmp_path: Path) -> None:
    # the read model subscribes to persons and care relations, which are not declared
    with pytest.raises(UndeclaredTopic, match="masterdata.person.changed"):
        _service(tmp_path, ServiceEvents(consumes=(ACCOUNT_DISABLED,)), projections=True)


def test_a_declared_topic_nothing_subscribes_to_is_not_built(tmp_path: Path) -> None:
    declared = ServiceEvents(consumes=(ACCOUNT_DISABLED, PERSON_CHANGED))
    with pytest.raises(UndeclaredTopic, match="subscribes to none"):
        _service(tmp_path, declared, projections=False)


def test_the_declaration_it_matches_is_built(tmp_path: Path) -> None:
    app = _service(tmp_path, ServiceEvents(consumes=(ACCOUNT_DISABLED,)), projections=False)
    assert [s["topic"] for s in _subscriptions(app)] == [ACCOUNT_DISABLED.name]


def test_publishing_an_undeclared_topic_is_refused() -> None:
    events = ServiceEvents(publishes=(DECISIONS_ENFORCED,))
    disabled = AccountDisabledV1(subject="hpr:1", disabled_at=datetime.now(UTC), reason="revoked")
    undeclared = cloud_event(ACCOUNT_DISABLED, disabled, source="any", subject="hpr:1")
    with pytest.raises(UndeclaredTopic, match="identity.account.disabled"):
        events.published([undeclared])
    events.published([{**undeclared, "topic": DECISIONS_ENFORCED.name}])  # declared: no error
