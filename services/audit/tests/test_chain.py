"""The hash chain and its verification, on plain records (the store's boundary replaced by a list
of stored links); the same checks against the real database are in tests/integration."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from typing import Any

import pytest

from audit.chain import (
    GENESIS,
    Head,
    Link,
    StoredLink,
    canonical,
    chain_hash,
    extend,
    in_position_order,
    verify,
)
from audit.records import query_fields, sanitise


def entry(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "decision_id": f"d-{n}",
        "timestamp": f"2026-11-22T01:{n % 60:02d}:00.123456789Z",
        "path": "akson/authz/decision",
        "labels": {"app": "akson-authz", "id": "opa-1"},
        "input": {
            "subject": {
                "id": "hpr:9144900",
                "kind": "practitioner",
                "hpr_number": "9144900",
                "profession": "LE",
                "organisation": "974760673",
                "unit": "unit-gp-1",
                "municipality": "4601",
                "roles": [],
                "scopes": ["x"],
            },
            "action": "read",
            "resource": {
                "type": "DocumentReference",
                "id": f"doc-{n}",
                "patient": f"patient-{n % 3}",
                "category": "general",
                "content": "Pasienten har depresjon.",
            },
            "context": {
                "care_relations": [
                    {
                        "relation_id": "r1",
                        "kind": "gp_list",
                        "practitioner": "9144900",
                        "active": True,
                        "period_start": "2020-01-01",
                    }
                ],
                "purpose": "treatment",
                "emergency_reason": None,
                "note": "klinisk merknad",
            },
        },
        "result": {
            "allow": True,
            "reasons": ["care_relation"],
            "obligations": [],
            "policy_version": "0.3.0",
        },
        "metrics": {"timer_rego_query_eval_ns": 12345},
        "requested_by": "127.0.0.1:5555",
        **overrides,
    }


def stored(links: Iterable[Link]) -> list[StoredLink]:
    return [
        StoredLink(
            k.position, k.previous_hash, k.hash, copy.deepcopy(k.record), query_fields(k.record)
        )
        for k in links
    ]


async def each(links: list[StoredLink]) -> AsyncIterator[StoredLink]:
    for link in sorted(links, key=lambda k: k.position):
        yield link


def chain(n: int) -> list[StoredLink]:
    return stored(extend(Head(), [sanitise(entry(i)) for i in range(1, n + 1)]))


async def check(links: list[StoredLink], **kwargs: Any) -> Any:
    return await verify(each(links), derive=query_fields, **kwargs)


def test_canonical_json_is_independent_of_key_order() -> None:
    assert canonical({"b": 1, "a": [1, "ø"]}) == canonical({"a": [1, "ø"], "b": 1})
    assert canonical({"a": "ø"}) == '{"a":"ø"}'.encode()


def test_each_hash_covers_position_predecessor_and_record() -> None:
    record = sanitise(entry(1))
    digest = chain_hash(1, GENESIS, record)
    assert len(digest) == 64
    assert chain_hash(2, GENESIS, record) != digest
    assert chain_hash(1, "1" * 64, record) != digest
    assert chain_hash(1, GENESIS, {**record, "path": "other"}) != digest


def test_extend_chains_after_the_head() -> None:
    first = extend(Head(), [{"n": 1}, {"n": 2}])
    assert [k.position for k in first] == [1, 2]
    assert first[0].previous_hash == GENESIS and first[1].previous_hash == first[0].hash
    more = extend(Head(2, first[1].hash), [{"n": 3}])
    assert more[0].position == 3 and more[0].previous_hash == first[1].hash


async def test_an_intact_chain_verifies() -> None:
    links = chain(25)
    report = await check(links, head=Head(25, links[-1].hash), checkpoints={10: links[9].hash})
    assert report.intact, report.summary()
    assert report.checked == 25 and report.checkpoints_checked == 1


@pytest.mark.parametrize("position", [1, 7, 20])
async def test_an_altered_record_is_named_by_its_position(position: int) -> None:
    links = chain(20)
    victim = links[position - 1]
    record = copy.deepcopy(victim.record)
    record["result"]["allow"] = False
    links[position - 1] = replace(victim, record=record)
    report = await check(links)
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (position, "altered")


async def test_an_altered_query_field_is_detected_even_with_the_record_intact() -> None:
    links = chain(10)
    links[4] = replace(links[4], fields={**links[4].fields, "patient": "someone-else"})
    report = await check(links)
    assert report.finding is not None and report.finding.position == 5
    assert "patient" in report.finding.message


async def test_a_rehashed_record_breaks_the_link_to_its_successor() -> None:
    """Altering a record and recomputing its own hash still breaks the next record's link."""
    links = chain(10)
    victim = links[3]
    record = {**victim.record, "path": "forged"}
    links[3] = replace(
        victim,
        record=record,
        hash=chain_hash(4, victim.previous_hash, record),
        fields=query_fields(record),
    )
    report = await check(links)
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (5, "reordered")


@pytest.mark.parametrize("position", [1, 6, 12])
async def test_a_deleted_record_is_named_by_its_position(position: int) -> None:
    links = chain(12)
    del links[position - 1]
    report = await check(links, head=Head(12, "x"))
    assert report.finding is not None
    assert report.finding.position == position
    assert report.finding.problem in {"deleted", "truncated"}


async def test_deleted_newest_records_are_detected_through_the_head() -> None:
    links = chain(12)
    head = Head(12, links[-1].hash)
    report = await check(links[:9], head=head)
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (10, "truncated")


async def test_reordered_records_are_named_by_the_first_moved_position() -> None:
    links = chain(10)
    third, seventh = links[2], links[6]
    links[2] = replace(seventh, position=3)
    links[6] = replace(third, position=7)
    report = await check(links)
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (3, "reordered")


async def test_a_rewritten_chain_is_caught_by_its_checkpoint() -> None:
    links = chain(10)
    checkpoint = links[4].hash
    forged = [sanitise(entry(i, path="forged")) for i in range(1, 11)]
    rewritten = stored(extend(Head(), forged))
    report = await check(rewritten, checkpoints={5: checkpoint})
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (5, "checkpoint")


async def test_a_pruned_chain_verifies_from_its_anchor() -> None:
    links = chain(20)
    anchor = Head(10, links[9].hash)
    report = await check(links[10:], anchor=anchor, head=Head(20, links[-1].hash))
    assert report.intact, report.summary()
    assert report.start == 11 and report.checked == 10


def test_sanitise_keeps_identifiers_and_outcome_and_drops_content() -> None:
    record = sanitise(entry(1))
    text = str(record)
    assert "depresjon" not in text and "klinisk" not in text
    assert "metrics" not in record and "requested_by" not in record
    assert "scopes" not in record["input"]["subject"]
    assert record["input"]["context"]["care_relations"] == [
        {"relation_id": "r1", "kind": "gp_list", "practitioner": "9144900", "active": True}
    ]
    assert record["result"]["reasons"] == ["care_relation"]


def test_sanitise_drops_fields_nobody_listed() -> None:
    raw = entry(1)
    raw["input"]["resource"]["diagnosis"] = "F32"
    raw["input"]["subject"]["token"] = "eyJ..."
    raw["input"]["context"]["free_text"] = "whatever"
    record = sanitise(raw)
    assert "F32" not in str(record) and "eyJ" not in str(record) and "whatever" not in str(record)


def test_query_fields_come_from_the_record() -> None:
    fields = query_fields(sanitise(entry(4)))
    assert fields["patient"] == "patient-1"
    assert fields["hpr"] == "9144900" and fields["organisation"] == "974760673"
    assert fields["allow"] is True and fields["reasons"] == ["care_relation"]
    assert fields["emergency"] is False
    assert fields["at"] is not None and fields["at"].microsecond == 123000
    emergency = entry(5)
    emergency["input"]["context"]["emergency_reason"] = "life_threatening"
    assert query_fields(sanitise(emergency))["emergency"] is True


async def test_storage_order_is_put_back_in_position_order_without_hiding_gaps() -> None:
    links = chain(8)
    shuffled = [links[i] for i in (0, 2, 1, 3, 6, 5, 7)]  # position 5 deleted, some swapped

    async def storage() -> AsyncIterator[StoredLink]:
        for link in shuffled:
            yield link

    ordered = [link.position async for link in in_position_order(storage(), 1)]
    assert ordered == [1, 2, 3, 4, 6, 7, 8]
    report = await verify(in_position_order(storage(), 1), derive=query_fields)
    assert report.finding is not None
    assert (report.finding.position, report.finding.problem) == (5, "deleted")
