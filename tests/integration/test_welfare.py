"""Welfare technology on the real stack (issue 19): a home-care nurse with a care relation
assigns a device the patient consented to; a registered hub delivers the device's FHIR
messages (client credentials, private_key_jwt); each is receipted, stored once, written into
the journal by welfare as a system, and its rules raise ``welfare.alert.raised`` for the
home-care unit; an unknown device and a withdrawn consent are receipted as rejections; the
hub's token reads nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from akson_common.identifiers import organisation_number_valid
from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import put_person
from tests.support import as_organisation_number, client_form, new_patient_id, token_response

pytestmark = pytest.mark.integration

ALERTS = "welfare.alert.raised"
FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
ENTRY_SYSTEM = "urn:akson:welfare-message-entry"
RECEIPT_SYSTEM = "urn:akson:welfare-receipt"
UNIT = "welfare-home-care"
OTHER_UNIT = "welfare-other-home-care"
HUB = "akson-dev-welfare-hub"
_hpr_serial = iter(range(85_000_000, 86_000_000))
_her_serial = iter(range(63_000_000, 64_000_000))
_org_serial = iter(range(40_000_000, 41_000_000))


@dataclass
class World:
    patient: str
    nurse: dict[str, str]  # home-care nurse with a care relation (journal audience)
    stranger: dict[str, str]  # a nurse without one
    nurse_welfare: dict[str, str]  # the nurse, for welfare
    citizen_consent: dict[str, str]  # the patient, for consent
    hub: dict[str, str]  # the hub, for welfare


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def nurse_token(platform: Platform, hpr: str, audience: str, unit: str = UNIT) -> str:
    return platform.token(
        audience,
        subject=f"hpr:{hpr}",
        kind="practitioner",
        hpr_number=hpr,
        profession="SP",
        organisation="974760673",
        unit=unit,
        municipality="4601",
    )


@pytest.fixture(scope="module")
def world(platform: Platform) -> Iterator[World]:
    patient = new_patient_id()
    with httpx.Client(timeout=10.0) as http:
        assert put_person(http, platform, patient).status_code in (200, 201, 204)
    nurse, stranger = str(next(_hpr_serial)), str(next(_hpr_serial))
    platform.relate(patient, hpr=nurse, unit=UNIT, kind="home_care", seen_by="welfare")
    eventually(
        lambda: any(
            r.get("practitioner") == nurse
            for r in (platform.db("journal").patients.find_one({"_id": patient}) or {})
            .get("relations", {})
            .values()
        )
    )
    hub = platform.token(
        "welfare", subject="hub", kind="system", client="welfare_hub", scope="DeviceMessage.write"
    )
    yield World(
        patient=patient,
        nurse=bearer(nurse_token(platform, nurse, "journal")),
        stranger=bearer(nurse_token(platform, stranger, "journal", OTHER_UNIT)),
        nurse_welfare=bearer(nurse_token(platform, nurse, "welfare")),
        citizen_consent=bearer(platform.token("consent", subject=patient, kind="citizen")),
        hub=bearer(hub),
    )


def consent_to(platform: Platform, world: World, device: str) -> str:
    """The patient's device consent, once welfare's projection holds it."""
    answer = httpx.post(
        f"{platform.url('consent')}/directives",
        json={
            "kind": "device",
            "patient": world.patient,
            "device": device,
            "period_start": "2026-01-01",
        },
        headers=world.citizen_consent,
        timeout=10.0,
    )
    assert answer.status_code == 201, answer.text
    directive_id = str(answer.json()["id"])
    eventually(lambda: device_consent_status(platform, world, directive_id) == "active")
    return directive_id


def device_consent_status(platform: Platform, world: World, directive_id: str) -> str | None:
    document = platform.db("welfare").patients.find_one({"_id": world.patient}) or {}
    for directive in (document.get("directives") or {}).values():
        if directive.get("directive_id") == directive_id:
            return str(directive.get("status"))
    return None


def new_device(
    platform: Platform,
    world: World,
    kind: str,
    thresholds: list[dict[str, Any]] | None = None,
    unit: str | None = None,
) -> str:
    device = f"{kind.replace('_', '-')}-{uuid.uuid4().hex[:10]}"
    consent_to(platform, world, device)
    answer = httpx.post(
        f"{platform.url('welfare')}/devices",
        json={
            "id": device,
            "kind": kind,
            "patient": world.patient,
            "hub": HUB,
            "thresholds": thresholds or [],
            **({"unit": unit} if unit else {}),
        },
        headers=world.nurse_welfare,
        timeout=10.0,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["assignment"]["unit"] == (unit or as_organisation_number(UNIT))
    return device


def header(message_id: str) -> dict[str, Any]:
    return {
        "resourceType": "MessageHeader",
        "id": message_id,
        "eventCoding": {"system": "urn:akson:welfare-event", "code": "device-report"},
        "source": {"endpoint": "https://hub.example/fhir"},
    }


def message(*resources: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    message_id = message_id or uuid.uuid4().hex
    return {
        "resourceType": "Bundle",
        "type": "message",
        "timestamp": "2026-12-01T08:00:05Z",
        "entry": [
            {"fullUrl": f"urn:uuid:{message_id}", "resource": header(message_id)},
            *({"resource": resource} for resource in resources),
        ],
    }


def missed_dose(device: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "not-done",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}]
        },
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "device": [{"reference": f"Device/{device}"}],
    }


def pulse(device: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
        "device": {"reference": f"Device/{device}"},
    }


def send(platform: Platform, world: World, body: Any) -> httpx.Response:
    return httpx.post(
        f"{platform.url('welfare')}/fhir/R4/$process-message",
        json=body,
        headers={**world.hub, "content-type": FHIR_JSON},
        timeout=15.0,
    )


def verdict(answer: httpx.Response) -> tuple[str, str]:
    """The receipt's response code and its coded verdict."""
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "message"
    header, outcome = (entry["resource"] for entry in bundle["entry"])
    codes = [
        coding["code"]
        for issue in outcome["issue"]
        for coding in issue["details"]["coding"]
        if coding["system"] == RECEIPT_SYSTEM
    ]
    return header["response"]["code"], codes[0]


def recorded(platform: Platform, world: World, resource_type: str, message_id: str) -> Any:
    """What the journal holds from the message (the nurse's search by the entry identifier)."""
    answer = httpx.get(
        f"{platform.url('journal')}/fhir/R4/{resource_type}",
        params={"patient": world.patient, "identifier": f"{ENTRY_SYSTEM}|{message_id}.1"},
        headers=world.nurse,
        timeout=10.0,
    )
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def alerts_of(platform: Platform, message_id: str) -> list[dict[str, Any]]:
    return [
        event["data"]
        for event in platform.events(ALERTS)
        if event["data"].get("message_id") == message_id
    ]


def test_a_missed_dose_reaches_the_home_care_unit_as_an_event_within_5_s(
    platform: Platform, world: World
) -> None:
    device = new_device(platform, world, "medicine_dispenser")
    body = message(missed_dose(device))
    message_id = body["entry"][0]["resource"]["id"]
    started = time.monotonic()
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    (alert,) = eventually(lambda: alerts_of(platform, message_id), timeout=5.0, interval=0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, elapsed
    assert alert["rule"] == "missed_dose"
    assert alert["unit"] == as_organisation_number(UNIT)
    assert (alert["patient"], alert["device"]) == (world.patient, device)
    assert (alert["code"], alert["code_system"]) == ("N02BE01", "http://www.whocc.no/atc")
    # the dose is in the journal too, as the system welfare is
    (dose,) = recorded(platform, world, "MedicationAdministration", message_id)
    assert dose["status"] == "not-done"
    assert dose["subject"] == {"reference": f"Patient/{world.patient}"}


def test_measurements_show_in_the_journal_and_summary_for_the_related_nurse_only(
    platform: Platform, world: World
) -> None:
    device = new_device(
        platform, world, "pulse_oximeter", [{"code": "8867-4", "low": 40, "high": 120}]
    )
    body = message(pulse(device, 134))
    message_id = body["entry"][0]["resource"]["id"]
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    (observation,) = recorded(platform, world, "Observation", message_id)
    assert observation["valueQuantity"]["value"] == 134
    welfare = httpx.get(
        f"{platform.url('journal')}/fhir/R4/Observation",
        params={"patient": world.patient, "category": "welfare"},
        headers=world.nurse,
        timeout=10.0,
    )
    assert observation["id"] in {e["resource"]["id"] for e in welfare.json()["entry"]}
    summary = httpx.get(
        f"{platform.url('journal')}/fhir/R4/Patient/{world.patient}/$summary",
        headers=world.nurse,
        timeout=10.0,
    )
    assert summary.status_code == 200, summary.text
    assert observation["id"] in {e["resource"]["id"] for e in summary.json().get("entry", [])}
    # the rule's numbers are in the alert
    (alert,) = eventually(lambda: alerts_of(platform, message_id), timeout=5.0)
    assert alert["rule"] == "out_of_range"
    assert (alert["value"], alert["low"], alert["high"]) == (134, 40, 120)
    # a nurse without a care relation sees none of it
    for path, params in (
        ("Observation", {"patient": world.patient, "category": "welfare"}),
        (f"Observation/{observation['id']}", {}),
        (f"Patient/{world.patient}/$summary", {}),
    ):
        refused = httpx.get(
            f"{platform.url('journal')}/fhir/R4/{path}",
            params=params,
            headers=world.stranger,
            timeout=10.0,
        )
        # a refusal (403/404: a 404 may repeat the id asked for, never the data), or a search
        # or summary without what may not be seen
        assert refused.status_code in (200, 403, 404), (path, refused.status_code)
        assert "valueQuantity" not in refused.text and ENTRY_SYSTEM not in refused.text
        if refused.status_code == 200:
            assert refused.json()["resourceType"] == "Bundle", path
            assert not [
                e
                for e in refused.json().get("entry", [])
                if e["resource"]["resourceType"] != "Patient"
            ], path
    # the citizen sees their own device data: the measurement and the device
    own_journal = bearer(platform.token("journal", subject=world.patient, kind="citizen"))
    own = httpx.get(
        f"{platform.url('journal')}/fhir/R4/Observation",
        params={"patient": world.patient, "category": "welfare"},
        headers=own_journal,
        timeout=10.0,
    )
    assert observation["id"] in {e["resource"]["id"] for e in own.json()["entry"]}
    own_welfare = bearer(platform.token("welfare", subject=world.patient, kind="citizen"))
    devices = httpx.get(
        f"{platform.url('welfare')}/devices",
        params={"patient": world.patient},
        headers=own_welfare,
        timeout=10.0,
    )
    assert devices.status_code == 200, devices.text
    assert device in {d["id"] for d in devices.json()["items"]}


def test_an_unregistered_device_is_rejected_with_a_receipt_that_says_why(
    platform: Platform, world: World
) -> None:
    unknown = f"pulse-oximeter-{uuid.uuid4().hex[:10]}"
    body = message(pulse(unknown, 60))
    message_id = body["entry"][0]["resource"]["id"]
    assert verdict(send(platform, world, body)) == ("fatal-error", "unknown-device")
    assert recorded(platform, world, "Observation", message_id) == []
    # a device of another hub is as unknown to this one
    registered = new_device(platform, world, "scale")
    platform.db("welfare").devices.update_one({"_id": registered}, {"$set": {"hub": "other-hub"}})
    assert verdict(send(platform, world, message(pulse(registered, 60)))) == (
        "fatal-error",
        "unknown-device",
    )


def test_a_duplicate_is_receipted_again_and_stored_once(platform: Platform, world: World) -> None:
    device = new_device(platform, world, "blood_pressure_monitor")
    body = message(pulse(device, 70))
    message_id = body["entry"][0]["resource"]["id"]
    first, second = send(platform, world, body), send(platform, world, body)
    assert verdict(first) == verdict(second) == ("ok", "accepted")
    assert first.json() == second.json()  # the same receipt
    assert second.headers.get("akson-duplicate") == "true"
    assert "akson-duplicate" not in first.headers
    assert len(recorded(platform, world, "Observation", message_id)) == 1
    (stored,) = list(platform.db("welfare").messages.find({"message_id": message_id}))
    assert stored["deliveries"] == 2 and len(stored["recorded"]) == 1


def test_a_withdrawn_consent_rejects_the_next_message(platform: Platform, world: World) -> None:
    device = new_device(platform, world, "safety_alarm")
    directive = next(
        d["directive_id"]
        for d in (platform.db("welfare").patients.find_one({"_id": world.patient}) or {})[
            "directives"
        ].values()
        if d.get("device") == device
    )

    def alarm() -> dict[str, Any]:
        return {
            "resourceType": "Flag",
            "status": "active",
            "code": {"coding": [{"system": "urn:akson:welfare-alarm", "code": "fall"}]},
            "period": {"start": "2026-12-01T08:00:00Z"},
            "author": {"reference": f"Device/{device}"},
        }

    assert verdict(send(platform, world, message(alarm()))) == ("ok", "accepted")
    withdrawn = httpx.post(
        f"{platform.url('consent')}/directives/{directive}/withdraw",
        json={},
        headers=world.citizen_consent,
        timeout=10.0,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    eventually(lambda: device_consent_status(platform, world, directive) == "withdrawn")
    body = message(alarm())
    message_id = body["entry"][0]["resource"]["id"]
    assert verdict(send(platform, world, body)) == ("fatal-error", "consent-withdrawn")
    assert recorded(platform, world, "Flag", message_id) == []
    time.sleep(1.0)  # the outbox relays within a second: a rejected alarm raises nothing
    assert alerts_of(platform, message_id) == []
    # the device can be unassigned without consent, not assigned again without a new one
    again = httpx.post(
        f"{platform.url('welfare')}/devices/{device}/unassign",
        headers=world.nurse_welfare,
        timeout=10.0,
    )
    assert again.status_code == 200, again.text
    assign = httpx.post(
        f"{platform.url('welfare')}/devices/{device}/assign",
        json={"patient": world.patient},
        headers=world.nurse_welfare,
        timeout=10.0,
    )
    assert assign.status_code == 403, assign.text
    assert "no_device_consent" in assign.text
    assert verdict(send(platform, world, message(alarm()))) == (
        "fatal-error",
        "device-not-assigned",
    )


def test_a_hubs_token_reads_nothing(platform: Platform, world: World) -> None:
    device = new_device(platform, world, "door_sensor")
    welfare, journal = platform.url("welfare"), platform.url("journal")
    for path, params in (
        (f"/devices/{device}", {}),
        ("/devices", {"patient": world.patient}),
    ):
        answer = httpx.get(f"{welfare}{path}", params=params, headers=world.hub, timeout=10.0)
        assert answer.status_code in (403, 404), (path, answer.status_code)
        assert "assignment" not in answer.text
    hub_journal = bearer(
        platform.token(
            "journal",
            subject="hub",
            kind="system",
            client="welfare_hub",
            scope="DeviceMessage.write",
        )
    )
    # what the hub delivered is in the record (the nurse sees it) ...
    body = message(
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"coding": [{"system": "urn:akson:welfare-alarm", "code": "door-open"}]},
            "period": {"start": "2026-12-01T03:00:00Z"},
            "author": {"reference": f"Device/{device}"},
        }
    )
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    (flag,) = recorded(platform, world, "Flag", body["entry"][0]["resource"]["id"])
    # ... and the hub's token reads none of it
    for path, params in (
        ("Flag", {"patient": world.patient}),
        (f"Flag/{flag['id']}", {}),
        ("Observation", {"patient": world.patient}),
        ("MedicationAdministration", {"patient": world.patient}),
    ):
        answer = httpx.get(
            f"{journal}/fhir/R4/{path}", params=params, headers=hub_journal, timeout=10.0
        )
        assert answer.status_code in (200, 403, 404), (path, answer.status_code)
        assert "door-open" not in answer.text and ENTRY_SYSTEM not in answer.text
        if answer.status_code == 200:
            assert answer.json().get("entry", []) == [], path
    summary = httpx.get(
        f"{journal}/fhir/R4/Patient/{world.patient}/$summary", headers=hub_journal, timeout=10.0
    )
    assert summary.status_code in (200, 403), summary.text
    if summary.status_code == 200:
        entries = summary.json().get("entry", [])
        assert [e for e in entries if e["resource"]["resourceType"] != "Patient"] == []
    # nor can it be given a read scope: identity grants what it is registered for only
    as_hub = token_response(
        platform.endpoints,
        client_form(platform.endpoints, "journal", "Observation.read", client_id=HUB),
    )
    assert as_hub.status_code == 400 and as_hub.json()["error"] == "invalid_scope"


def test_bad_input_gets_an_operation_outcome_and_other_clients_no_receipt(
    platform: Platform, world: World
) -> None:
    device = new_device(platform, world, "medicine_dispenser")
    bodies: list[Any] = [
        [],
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        message({"resourceType": "Patient"}),
        # the device is known and consented to: its entry is checked, and refused
        message({**missed_dose(device), "status": 17}),
        message({**missed_dose(device), "subject": {"reference": "Patient/01017012345"}}),
    ]
    for body in bodies:
        answer = send(platform, world, body)
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["resourceType"] == "OperationOutcome"
    broken = httpx.post(
        f"{platform.url('welfare')}/fhir/R4/$process-message",
        content=b"{not json",
        headers={**world.hub, "content-type": FHIR_JSON},
        timeout=10.0,
    )
    assert broken.status_code == 400 and broken.json()["resourceType"] == "OperationOutcome"
    lab = bearer(
        platform.token(
            "welfare", subject="lab", kind="system", client="lab", scope="Observation.write"
        )
    )
    refused = httpx.post(
        f"{platform.url('welfare')}/fhir/R4/$process-message",
        json=message(pulse("pulse-oximeter-x", 60)),
        headers={**lab, "content-type": FHIR_JSON},
        timeout=10.0,
    )
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"


def off_platform_unit(platform: Platform, her_id: str) -> str:
    """A home-care provider off the platform (its own EHR), reached by HER-id."""
    while not organisation_number_valid(org := f"{next(_org_serial)}0"):
        pass
    token = platform.token(
        "masterdata", subject="registry-sync", kind="system", scope="Organization.write"
    )
    saved = httpx.put(
        f"{platform.url('masterdata')}/organisations/{org}",
        json={
            "org_number": org,
            "name": "Privat hjemmetjeneste",
            "municipality": "4601",
            "service_type": "home_care",
            "her_id": her_id,
            "on_platform": False,
        },
        headers=bearer(token),
        timeout=10.0,
    )
    assert saved.status_code in (200, 204), saved.text
    eventually(lambda: platform.db("messaging").organisations.find_one({"_id": org}))
    return org


def test_an_alert_for_a_unit_off_the_platform_goes_out_via_messaging(
    platform: Platform, world: World
) -> None:
    her_id = str(next(_her_serial))
    unit = off_platform_unit(platform, her_id)
    device = new_device(
        platform, world, "pulse_oximeter", [{"code": "8867-4", "high": 100}], unit=unit
    )
    body = message(pulse(device, 150))
    message_id = body["entry"][0]["resource"]["id"]
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    (alert,) = eventually(lambda: alerts_of(platform, message_id), timeout=5.0)
    assert alert["unit"] == unit
    outbound = eventually(
        lambda: platform.db("messaging").outbound_messages.find_one(
            {"recipient_her_id": her_id, "status": {"$in": ["delivered", "receipted_ok"]}}
        ),
        timeout=20.0,
    )
    assert (outbound["patient"], outbound["category"]) == (world.patient, "welfare")
    assert outbound["kind"] == "care_message" and outbound["trigger"] == "rule"
    received = httpx.get(
        f"{platform.endpoints['message_peer']['url']}/admin/received",
        params={"her_id": her_id},
        timeout=10.0,
    ).json()["messages"]
    assert [m["message_id"] for m in received] == [outbound["_id"]]
    # a unit on the platform gets the event, no message
    on_platform = new_device(platform, world, "scale", [{"code": "8867-4", "high": 100}])
    body = message(pulse(on_platform, 150))
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    eventually(lambda: alerts_of(platform, body["entry"][0]["resource"]["id"]), timeout=5.0)
    time.sleep(1.0)
    assert (
        platform.db("messaging").outbound_messages.count_documents(
            {"patient": world.patient, "category": "welfare"}
        )
        == 1
    )


def test_what_the_journal_cannot_take_for_now_is_written_once_it_is_back(
    platform: Platform, world: World
) -> None:
    """The journal down when a message comes: accepted (the message and its alert are one
    write), its entry queued and tried again until the journal takes it; nothing lost, nothing
    twice, no dead letter."""
    device = new_device(platform, world, "medicine_dispenser")
    body = message(missed_dose(device))
    message_id = body["entry"][0]["resource"]["id"]
    messages = platform.db("welfare").messages
    platform.stack.stop("journal-app")
    try:
        assert verdict(send(platform, world, body)) == ("ok", "accepted")
        (alert,) = eventually(lambda: alerts_of(platform, message_id), timeout=5.0)
        assert alert["rule"] == "missed_dose"
        (waiting,) = list(messages.find({"message_id": message_id}))
        assert waiting["status"] == "queued" and len(waiting["pending"]) == 1, waiting
        assert waiting["recorded"] == [] and waiting["dead_letters"] == 0
        # tried again while the journal is away: still queued, further apart each time
        eventually(lambda: messages.find_one({"_id": waiting["_id"]})["attempts"] >= 2, timeout=10)
    finally:
        platform.stack.start("journal-app")
    (entry,) = eventually(
        lambda: recorded(platform, world, "MedicationAdministration", message_id), timeout=60.0
    )
    assert entry["subject"] == {"reference": f"Patient/{world.patient}"}
    done = messages.find_one({"_id": waiting["_id"]})
    assert done["status"] == "recorded" and done["pending"] == [] and done["dead_letters"] == 0
    assert done["recorded"] == [f"MedicationAdministration/{entry['id']}"]
    assert list(platform.db("welfare").dead_letters.find({"message_key": waiting["_id"]})) == []
    # the hub's resend is receipted again and writes nothing more
    assert verdict(send(platform, world, body)) == ("ok", "accepted")
    time.sleep(1.0)
    assert len(recorded(platform, world, "MedicationAdministration", message_id)) == 1


def test_a_message_stored_queued_is_claimed_by_the_retry_worker(platform: Platform) -> None:
    """A message is stored ``queued`` in the same write as its receipt, before its first
    attempt: should welfare die right then, a worker must find it. It did not: the store wrote
    ``next_attempt_at`` as an ISO string, which the worker's ``next_attempt_at <= now`` (a
    date) never matches in MongoDB or FerretDB. Here against the stack's FerretDB, in a
    database of its own (no worker of welfare's takes it)."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from akson_common.db import Database
    from akson_common.queue import claim_due
    from welfare.store import StoredMessage, WelfareStore

    async def claimed() -> str | None:
        database = Database(platform.endpoints["mongo"]["url"], f"test_claims_{uuid.uuid4().hex}")
        try:
            store = WelfareStore(database)
            at = datetime.now(UTC)
            message = StoredMessage(
                key=f"hub:{uuid.uuid4()}",
                message_id=str(uuid.uuid4()),
                sender="akson-dev-welfare-hub",
                device="device-1",
                verdict="ok",
                receipt={},
                received_at=at,
                status="queued",
                next_attempt_at=at - timedelta(seconds=1),
            )
            await store.messages.collection.insert_one(store.messages.to_document(message))
            document = await claim_due(store.messages.collection, at, "test", timedelta(seconds=5))
            return None if document is None else str(document["_id"])
        finally:
            await database.client.drop_database(database.db.name)
            await database.close()

    assert asyncio.run(claimed()) is not None
