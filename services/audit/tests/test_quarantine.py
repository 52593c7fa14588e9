"""Screening decision-log entries: what the store cannot keep is chained escaped and flagged."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from audit.chain import canonical
from audit.models import view
from audit.quarantine import _raw, chain_id, escaped, screen
from audit.records import query_fields
from audit.store import prepare


def entry(decision_id: str = "d-1", category: Any = "general", **extra: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "timestamp": "2026-12-01T10:00:00.123Z",
        "path": "akson/authz/decision",
        "labels": {"id": "opa-1"},
        "input": {
            "subject": {"id": "hpr:9144900", "kind": "practitioner", "hpr_number": "9144900"},
            "action": "search",
            "resource": {"type": "DocumentReference", "patient": "p-1", "category": category},
            "context": {},
        },
        "result": {"allow": True, "reasons": ["care_relation"], "obligations": []},
        **extra,
    }


@pytest.mark.parametrize("category", ["\x00", "a\x01", "\ud800", "\ufffe", 2**70, -(2**64)])
def test_an_unstorable_value_is_chained_escaped_and_flagged(category: Any) -> None:
    pending, quarantined = prepare([entry(category=category), entry("d-2")])
    assert [key for key, _ in pending] == ["d-1", "d-2"]
    assert [q.chain_id for q in quarantined] == ["d-1"]
    assert quarantined[0].reason == "entry.input.resource.category"
    record = pending[0][1]
    assert record["quarantined"] is True
    assert screen(record) is None  # storable now
    canonical(record)  # and hashable (no NaN, valid UTF-8)
    fields = query_fields(record)
    assert (fields["patient"], fields["actor"]) == ("p-1", "hpr:9144900")
    assert view({"_id": "d-1", "position": 1, "hash": "h", "record": record}).quarantined
    assert "quarantined" not in pending[1][1]


def test_the_original_is_kept_exactly_in_a_storable_form() -> None:
    pending, quarantined = prepare([entry(category="a\x00b")])
    text = base64.b64decode(_raw(quarantined[0].entry)).decode("ascii")
    assert json.loads(text)["input"]["resource"]["category"] == "a\x00b"


def test_a_hostile_decision_id_gets_a_digest_as_chain_id() -> None:
    pending, quarantined = prepare([entry("bad\x00id")])
    key = pending[0][0]
    assert key.startswith("quarantined-") and key == chain_id("bad\x00id")
    assert quarantined[0].reason == "entry.decision_id"
    assert screen(pending[0][1]) is None


def test_unstorable_keys_are_escaped() -> None:
    value = {"$where": 1, "a.b": 2, "ok": {"c\x00": 3}}
    assert screen(value) == "a key in entry"
    assert screen(escaped(value)) is None


def test_a_batch_entry_once_even_if_repeated() -> None:
    pending, _ = prepare([entry(), entry(), entry("d-2")])
    assert [key for key, _ in pending] == ["d-1", "d-2"]


async def test_listings_and_exports_never_break_on_an_odd_stored_record() -> None:
    from collections.abc import AsyncIterator

    from audit.api import _csv, _ndjson

    odd = {
        "_id": "d-odd",
        "position": 7,
        "hash": "h",
        "record": {
            "timestamp": 17,
            "input": {
                "subject": {"id": 123, "kind": True},
                "action": ["read"],
                "resource": {"patient": {"nested": 1}},
                "context": {"care_relations": "none"},
            },
            "result": {"allow": "yes", "reasons": "care_relation", "obligations": 5},
        },
    }
    shown = view(odd)
    assert (shown.actor, shown.reasons, shown.allow) == ("123", [], False)

    async def documents() -> AsyncIterator[dict[str, Any]]:
        yield odd

    csv_text = b"".join([chunk async for chunk in _csv(documents())]).decode()
    assert "d-odd" in csv_text
    lines = [chunk async for chunk in _ndjson(documents())]
    assert json.loads(lines[0])["decision_id"] == "d-odd"
