"""The event pipeline on the real stack: a master-data import larger than the stream cap reaches
every consumer's projection complete (bulk publish, bulk subscriptions, batched writes), while
the streams are trimmed, but only of what every consumer group has acknowledged; a consumer away
for longer than the sidecar's retries still gets every event; the enforced-decision batches
behind every authorised read do not pile up in the outbox."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
from streams import StreamTrimmer, trim_stream

from akson_common.events import CARE_RELATION_CHANGED, PERSON_CHANGED
from tests.integration.conftest import Platform, eventually
from tests.integration.test_audit_completeness import read_once, recorded_document, where
from tests.integration.test_foundation import gp_headers
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

CAP = 150
IMPORTED = 600
SCOPES = "Patient.write CareRelation.write"
# every consumer of the two topics, and the collection its projection keeps them in
PERSON_PROJECTIONS = [("journal", "patients"), ("consent", "patients"), ("messaging", "patients")]
PERSON_PROJECTIONS.append(("identity", "persons"))
RELATION_PROJECTIONS = [("journal", "care_relations"), ("consent", "care_relations")]
RELATION_PROJECTIONS.append(("messaging", "care_relations"))


def redis_client(platform: Platform) -> redis.Redis:
    host, port = platform.endpoints["redis"]["address"].rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), password=platform.tokens["redis_password"])


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def held(platform: Platform, service: str, collection: str, ids: list[str], **match: Any) -> int:
    found = platform.db(service)[collection].find({"_id": {"$in": ids}, **match}, {"_id": 1})
    return len(list(found))


def test_an_import_larger_than_the_stream_cap_reaches_every_projection(
    platform: Platform,
) -> None:
    patients = [new_patient_id() for _ in range(IMPORTED)]
    relations = [f"bulk-{uuid.uuid4().hex[:12]}" for _ in patients]
    trimmer = StreamTrimmer(
        platform.endpoints["redis"]["address"],
        platform.tokens["redis_password"],
        cap=CAP,
        interval=0.5,
        only=[PERSON_CHANGED.name, CARE_RELATION_CHANGED.name],
    )
    client = redis_client(platform)
    token = platform.token("masterdata", subject="registry-sync", kind="system", scope=SCOPES)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    base = platform.url("masterdata")
    trimmer.start()
    longest = 0
    try:
        persons = [
            {
                "national_id": p,
                "given_name": "Bulk",
                "family_name": "Import",
                "municipality": "4601",
            }
            for p in patients
        ]
        gp_list = [
            {"relation_id": r, "patient": p, "kind": "gp_list", "practitioner": "9100001",
             "period_start": "2020-01-01"}
            for p, r in zip(patients, relations, strict=True)
        ]  # fmt: skip
        for kind, records in (("persons", persons), ("care-relations", gp_list)):
            answer = httpx.post(
                f"{base}/import/{kind}", content=ndjson(records), headers=headers, timeout=120.0
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["created"] == IMPORTED

        def complete() -> bool:
            nonlocal longest
            longest = max(longest, int(client.xlen(PERSON_CHANGED.name)))
            return all(
                held(platform, s, c, patients) == IMPORTED for s, c in PERSON_PROJECTIONS
            ) and all(held(platform, s, c, relations) == IMPORTED for s, c in RELATION_PROJECTIONS)

        eventually(complete, timeout=50.0, interval=1.0)
        # each person's change applied once (a duplicate delivery would count twice)
        for service in ("journal", "consent", "messaging"):
            assert held(platform, service, "patients", patients, applied_changes=1) == IMPORTED
        # and the streams were trimmed below the cap once every group had acknowledged
        eventually(lambda: int(client.xlen(PERSON_CHANGED.name)) <= CAP, timeout=10.0)
        assert trimmer.removed >= 2 * (IMPORTED - CAP)
    finally:
        trimmer.stop()
        client.close()
    sys.stderr.write(f"longest person stream seen: {longest} entries (cap {CAP})\n")


def test_the_trimmer_never_drops_an_entry_a_group_has_not_acknowledged(
    platform: Platform,
) -> None:
    client = redis_client(platform)
    stream = f"akson-trim-test-{uuid.uuid4().hex[:8]}"
    try:
        ids = [client.xadd(stream, {"n": str(n)}) for n in range(100)]
        client.xgroup_create(stream, "reader", id="0")
        client.xgroup_create(stream, "late", id="0")
        assert trim_stream(client, stream, cap=10) == 0, "a group that read nothing: nothing goes"
        client.xgroup_setid(stream, "late", id="$")  # the late group has read everything
        delivered: Any = client.xreadgroup("reader", "c1", {stream: ">"}, count=60)
        read: list[Any] = [entry_id for entry_id, _ in delivered[0][1]]
        client.xack(stream, "reader", *read[:40])  # 40 acknowledged, 20 pending, 40 unread
        assert trim_stream(client, stream, cap=10) == 40
        entries: Any = client.xrange(stream)
        remaining = [entry_id for entry_id, _ in entries]
        assert remaining == ids[40:]
        client.xack(stream, "reader", *read[40:])
        assert trim_stream(client, stream, cap=10) == 20  # the unread 40 stay, beyond the cap
        assert int(client.xlen(stream)) == 40
    finally:
        client.delete(stream)
        client.close()


# The consumer away for longer than the sidecar's old delivery window (10 exponential retries,
# at most 10 s apart: about 45-60 s, after which Dapr 1.18 forwarded a bulk subscription's
# failed entries to the dead-letter topic and acknowledged them).
OUTAGE_SECONDS = 75.0
AWAY = 40


def test_a_consumer_away_longer_than_the_retry_window_still_gets_every_event(
    platform: Platform,
) -> None:
    """consent's app is stopped (its sidecar stays: every delivery fails) while persons are
    imported, for longer than the old window; once it is back, every event is applied once
    and none went to the dead letters."""
    patients = [new_patient_id() for _ in range(AWAY)]
    token = platform.token("masterdata", subject="registry-sync", kind="system", scope=SCOPES)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    persons = [
        {"national_id": p, "given_name": "Away", "family_name": "Consumer", "municipality": "4601"}
        for p in patients
    ]
    platform.stack.stop("consent-app")
    stopped = time.monotonic()
    try:
        answer = httpx.post(
            f"{platform.url('masterdata')}/import/persons",
            content=ndjson(persons),
            headers=headers,
            timeout=60.0,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["created"] == AWAY
        # the others get them meanwhile: the events are on the stream, consent's are failing
        eventually(lambda: held(platform, "journal", "patients", patients) == AWAY, timeout=30.0)
        time.sleep(max(0.0, stopped + OUTAGE_SECONDS - time.monotonic()))
    finally:
        platform.stack.start("consent-app")
    eventually(
        lambda: held(platform, "consent", "patients", patients, applied_changes=1) == AWAY,
        timeout=60.0,
        interval=1.0,
    )
    dead = {
        event["data"].get("national_id") for event in platform.events(PERSON_CHANGED.dead_letter)
    }
    assert not dead & set(patients), "an event of the outage went to the dead letters"


def test_enforced_decision_batches_leave_the_outbox_once_published(
    platform: Platform, http: httpx.Client
) -> None:
    """Every authorised read is reported as enforced through journal's outbox (one
    ``enforced_decisions`` document a second): once audit has the decisions, journal keeps
    none of those documents (they were kept for ever, and every relay round scanned them)."""
    hpr = "9144971"
    url = recorded_document(http, platform, new_patient_id(), hpr)
    headers = gp_headers(platform, hpr)
    decisions: list[str] = []
    for _ in range(12):
        decisions += read_once(http, url, headers)
        time.sleep(0.25)  # the reads span several one-second batches
    eventually(lambda: where(platform, decisions)["stored"] == set(decisions), timeout=30.0)
    enforced = platform.db("journal")["enforced_decisions"]
    eventually(lambda: enforced.count_documents({}) == 0, timeout=15.0)
