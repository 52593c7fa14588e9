"""The subscription contract seen by the sidecar: registration and invalid-event handling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from akson_common.db import Database
from akson_common.events import (
    PERSON_CHANGED,
    Delivery,
    Outcome,
    PersonChangedV1,
    Subscriptions,
    cloud_event,
)


def app_with_subscription(token: str = "") -> tuple[FastAPI, list[PersonChangedV1]]:
    app = FastAPI()
    # never connected: these tests stop before any database access
    database = Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100)
    received: list[PersonChangedV1] = []
    subscriptions = Subscriptions(app, database, "pubsub", app_api_token=token)

    @subscriptions.on(PERSON_CHANGED)
    async def on_person(event: PersonChangedV1, delivery: Delivery) -> Outcome:
        received.append(event)
        return Outcome.SUCCESS

    return app, received


def test_every_subscription_has_a_dead_letter_topic() -> None:
    app, _ = app_with_subscription()
    subscriptions = TestClient(app).get("/dapr/subscribe").json()
    assert subscriptions == [
        {
            "pubsubname": "pubsub",
            "topic": "masterdata.person.changed",
            "route": "/events/masterdata.person.changed",
            "metadata": {},
            "deadLetterTopic": "masterdata.person.changed.deadletter",
            "bulkSubscribe": {"enabled": True, "maxMessagesCount": 200, "maxAwaitDurationMs": 50},
        }
    ]


def test_an_invalid_event_is_dropped_not_retried() -> None:
    app, received = app_with_subscription()
    client = TestClient(app)
    bodies: list[object] = [{"id": "1", "data": {"national_id": "x"}}, {"data": {}}, "not json"]
    for body in bodies:
        answer = client.post("/events/masterdata.person.changed", json=body)
        assert answer.json() == {"status": "DROP"}
    assert received == []


def person_event(protection: str = "none") -> dict[str, object]:
    payload = PersonChangedV1.model_validate(
        {
            "national_id": "17858000076",
            "municipality": "4601",
            "address_protection": protection,
            "deceased": False,
        }
    )
    return cloud_event(PERSON_CHANGED, payload, source="masterdata", subject="17858000076")


def test_an_event_without_the_app_api_token_is_dropped() -> None:
    app, received = app_with_subscription(token="s3cret")
    answer = TestClient(app).post(
        "/events/masterdata.person.changed",
        json=person_event(),
        headers={"dapr-api-token": "wrong"},
    )
    assert answer.json() == {"status": "DROP"}
    assert received == []


def test_event_envelopes_carry_identifiers_only() -> None:
    event = person_event("fortrolig")
    assert event["specversion"] == "1.0" and event["type"] == "masterdata.person.changed.v1"
    data = event["data"]
    assert isinstance(data, dict)
    assert set(data) == {"national_id", "municipality", "address_protection", "deceased"}


def test_the_catalogue_renders_as_asyncapi() -> None:
    from akson_common.events import CATALOGUE, asyncapi_document

    document = asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(CATALOGUE)
    person = document["channels"]["masterdata_person_changed"]["messages"][
        "masterdata_person_changed"
    ]
    assert person["payload"]["required"] == [
        "national_id",
        "municipality",
        "address_protection",
        "deceased",
    ]


def test_master_data_payloads_carry_identifiers_only() -> None:
    """Patients' names and addresses never travel; practitioners' and organisations' public
    register names do (the citizen's access log shows who accessed), and nothing else of them."""
    from akson_common.events import CATALOGUE

    for name in ("masterdata.person.changed", "masterdata.care_relation.changed"):
        fields = set(CATALOGUE[name].payload.model_fields)
        assert not fields & {"name", "given_name", "family_name", "address"}, name
    for name in ("masterdata.practitioner.changed", "masterdata.organisation.changed"):
        fields = set(CATALOGUE[name].payload.model_fields)
        assert "name" in fields, name
        assert not fields & {"given_name", "family_name", "address", "birth_date", "phone"}, name
    assert CATALOGUE["masterdata.practitioner.changed"].event_type.endswith(".v1")


def test_export_events_carry_no_payload_and_the_alert_no_unit() -> None:
    from akson_common.events import CATALOGUE

    exported = set(CATALOGUE["integrations.export.exported"].payload.model_fields)
    refused = set(CATALOGUE["integrations.export.refused"].payload.model_fields)
    for fields in (exported, refused):
        assert not fields & {"patient", "payload", "records_data", "content", "note"}
    # the offending value of a refused export may be its unit: the alert does not repeat it
    assert "unit" not in refused and "reasons" in refused


class MemoryCollection:
    """Just what the subscription bookkeeping uses, in memory."""

    def __init__(self) -> None:
        self.documents: list[dict[str, object]] = []

    async def find_one(self, selector: dict[str, object]) -> dict[str, object] | None:
        return next((d for d in self.documents if d["_id"] == selector["_id"]), None)

    async def insert_one(self, document: dict[str, object]) -> None:
        self.documents.append(document)

    async def insert_many(self, documents: list[dict[str, object]], ordered: bool = True) -> None:
        from pymongo.errors import BulkWriteError

        held = {d["_id"] for d in self.documents}
        failures = [
            {"index": i, "code": 11000} for i, d in enumerate(documents) if d["_id"] in held
        ]
        self.documents.extend(d for d in documents if d["_id"] not in held)
        if failures:
            raise BulkWriteError({"writeErrors": failures})


def failing_subscription(error: Exception) -> tuple[FastAPI, MemoryCollection, list[str]]:
    app = FastAPI()
    database = Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100)
    subscriptions = Subscriptions(app, database, "pubsub", max_attempts=3)
    dead_letters = MemoryCollection()
    subscriptions.processed = MemoryCollection()  # type: ignore[assignment]
    subscriptions.dead_letters = dead_letters  # type: ignore[assignment]
    calls: list[str] = []

    @subscriptions.on(PERSON_CHANGED)
    async def on_person(event: PersonChangedV1, delivery: Delivery) -> Outcome:
        calls.append(delivery.event_id)
        raise error

    return app, dead_letters, calls


def test_a_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries() -> None:
    app, dead_letters, calls = failing_subscription(ValueError("cannot store this"))
    client = TestClient(app)
    event = person_event()
    answers = [
        client.post("/events/masterdata.person.changed", json=event).json()["status"]
        for _ in range(3)
    ]
    assert answers == ["RETRY", "RETRY", "DROP"]
    assert len(calls) == 3
    dead = dead_letters.documents
    assert [(d["event_id"], d["topic"]) for d in dead] == [(event["id"], PERSON_CHANGED.name)]
    assert "17858000076" not in str(dead)


def test_a_transient_failure_is_retried_without_limit() -> None:
    from pymongo.errors import AutoReconnect

    app, dead_letters, calls = failing_subscription(AutoReconnect("database away"))
    client = TestClient(app)
    event = person_event()
    for _ in range(5):
        answer = client.post("/events/masterdata.person.changed", json=event)
        assert answer.json() == {"status": "RETRY"}
    assert dead_letters.documents == []


def test_an_event_with_hostile_text_is_dropped_at_once() -> None:
    app, dead_letters, calls = failing_subscription(ValueError("never reached"))
    event = person_event()
    event["data"]["municipality"] = "46\x0001"  # type: ignore[index]
    answer = TestClient(app).post("/events/masterdata.person.changed", json=event)
    assert answer.json() == {"status": "DROP"}
    assert calls == []
    assert [d["event_id"] for d in dead_letters.documents] == [event["id"]]


async def test_the_same_event_delivered_twice_at_once_is_applied_once() -> None:
    import asyncio

    import httpx

    app = FastAPI()
    database = Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100)
    subscriptions = Subscriptions(app, database, "pubsub")
    subscriptions.processed = MemoryCollection()  # type: ignore[assignment]
    release = asyncio.Event()
    applied: list[str] = []

    @subscriptions.on(PERSON_CHANGED)
    async def on_person(event: PersonChangedV1, delivery: Delivery) -> Outcome:
        await release.wait()
        applied.append(delivery.event_id)
        return Outcome.SUCCESS

    event = person_event()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        url = "/events/masterdata.person.changed"
        first = asyncio.create_task(client.post(url, json=event))
        await asyncio.sleep(0.05)
        # without the guard the copy would wait in the handler too (and be applied twice)
        second = await asyncio.wait_for(client.post(url, json=event), timeout=2)
        assert second.json() == {"status": "RETRY"}  # comes back once the first is done
        release.set()
        assert (await first).json() == {"status": "SUCCESS"}
        again = await client.post(url, json=event)
        assert again.json() == {"status": "SUCCESS"}
    assert applied == [event["id"]]


def bulk(*events: object) -> dict[str, object]:
    """A bulk delivery as the sidecar posts it (Dapr's default bulk subscriber)."""
    return {
        "id": "bulk-1",
        "type": "com.dapr.event.sent.bulk",
        "pubsubname": "pubsub",
        "topic": PERSON_CHANGED.name,
        "metadata": {},
        "entries": [
            {
                "entryId": f"entry-{n}",
                "event": event,
                "contentType": "application/cloudevents+json",
                "metadata": {},
            }
            for n, event in enumerate(events)
        ],
    }


def batch_subscription(
    fail: Exception | None = None,
) -> tuple[FastAPI, list[list[str]], list[str], MemoryCollection]:
    """A subscription with a batch handler (and its one-by-one handler), in-memory markers."""
    app = FastAPI()
    database = Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100)
    subscriptions = Subscriptions(app, database, "pubsub", max_attempts=3)
    processed = MemoryCollection()
    subscriptions.processed = processed  # type: ignore[assignment]
    subscriptions.claims = MemoryCollection()  # type: ignore[assignment]
    subscriptions.dead_letters = MemoryCollection()  # type: ignore[assignment]
    batches: list[list[str]] = []
    singles: list[str] = []

    async def on_persons(events: Sequence[tuple[PersonChangedV1, Delivery]]) -> list[Outcome]:
        batches.append([delivery.event_id for _, delivery in events])
        if fail is not None:
            raise fail
        return [Outcome.SUCCESS] * len(events)

    @subscriptions.on(PERSON_CHANGED, batch=on_persons)
    async def on_person(event: PersonChangedV1, delivery: Delivery) -> Outcome:
        singles.append(delivery.event_id)
        if event.municipality == "0000":
            raise ValueError("poison")
        return Outcome.SUCCESS

    return app, batches, singles, processed


def test_a_bulk_delivery_is_answered_entry_by_entry() -> None:
    app, batches, singles, processed = batch_subscription()
    client = TestClient(app)
    good, other = person_event(), person_event()
    hostile_event = person_event()
    hostile_event["data"]["municipality"] = "46\x0001"  # type: ignore[index]
    invalid = {"id": "x", "data": {"national_id": "x"}}
    answer = client.post(
        "/events/masterdata.person.changed", json=bulk(good, hostile_event, invalid, other)
    ).json()
    assert answer == {
        "statuses": [
            {"entryId": "entry-0", "status": "SUCCESS"},
            {"entryId": "entry-1", "status": "DROP"},
            {"entryId": "entry-2", "status": "DROP"},
            {"entryId": "entry-3", "status": "SUCCESS"},
        ]
    }
    assert batches == [[good["id"], other["id"]]] and singles == []
    assert {d["_id"] for d in processed.documents} == {
        f"{PERSON_CHANGED.name}:{good['id']}",
        f"{PERSON_CHANGED.name}:{other['id']}",
    }
    # delivered again (a redelivery): acknowledged, not applied again
    again = client.post("/events/masterdata.person.changed", json=bulk(other)).json()
    assert again == {"statuses": [{"entryId": "entry-0", "status": "SUCCESS"}]}
    assert batches == [[good["id"], other["id"]]]


def test_a_poison_event_in_a_batch_is_dead_lettered_alone() -> None:
    app, batches, singles, processed = batch_subscription(fail=ValueError("one is poison"))
    client = TestClient(app)
    good, poison = person_event(), person_event()
    poison["data"]["municipality"] = "0000"  # type: ignore[index]
    statuses = []
    for _ in range(3):
        answer = client.post("/events/masterdata.person.changed", json=bulk(good, poison))
        statuses.append([s["status"] for s in answer.json()["statuses"]])
        good = person_event()  # the good one was applied: a new one rides along each time
    # the batch failed, so its events were applied one by one: the good one each time, the
    # poison one retried, then dropped (to the dead-letter topic) after its attempts
    assert statuses == [["SUCCESS", "RETRY"], ["SUCCESS", "RETRY"], ["SUCCESS", "DROP"]]
    assert singles.count(str(poison["id"])) == 3
    assert f"{PERSON_CHANGED.name}:{poison['id']}" not in {d["_id"] for d in processed.documents}


def test_a_bulk_delivery_without_the_app_api_token_is_dropped() -> None:
    app, received = app_with_subscription(token="s3cret")
    answer = TestClient(app).post(
        "/events/masterdata.person.changed", json=bulk(person_event(), person_event())
    )
    assert [s["status"] for s in answer.json()["statuses"]] == ["DROP", "DROP"]
    assert received == []


def test_a_bulk_delivery_with_the_database_away_is_retried() -> None:
    app, received = app_with_subscription()  # its database never answers
    answer = TestClient(app).post("/events/masterdata.person.changed", json=bulk(person_event()))
    assert answer.json() == {"statuses": [{"entryId": "entry-0", "status": "RETRY"}]}
    assert received == []


def test_rounds_keep_each_keys_order_and_never_repeat_a_key() -> None:
    from akson_common.db import rounds

    items = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 2)]
    split = rounds(items, key=lambda item: item[0])
    assert split == [[("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]


async def test_dedupe_markers_older_than_the_retention_are_pruned() -> None:
    from datetime import UTC, datetime, timedelta

    class Markers:
        def __init__(self, ages_days: list[int]) -> None:
            now = datetime.now(UTC)
            self.documents: list[dict[str, Any]] = [
                {"_id": n, "at": now - timedelta(days=d)} for n, d in enumerate(ages_days)
            ]

        async def delete_many(self, selector: dict[str, dict[str, datetime]]) -> object:
            cutoff = selector["at"]["$lt"]
            kept = [d for d in self.documents if not d["at"] < cutoff]
            removed, self.documents = len(self.documents) - len(kept), kept

            class Result:
                deleted_count = removed

            return Result()

    subscriptions = Subscriptions(
        FastAPI(), Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100), "pubsub"
    )
    processed, claims = Markers([0, 1, 6, 8, 30]), Markers([8])
    subscriptions.processed, subscriptions.claims = processed, claims  # type: ignore[assignment]
    assert await subscriptions.prune(timedelta(days=7)) == 3
    assert [d["_id"] for d in processed.documents] == [0, 1, 2] and claims.documents == []
