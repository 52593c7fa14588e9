"""Read models of other services' facts, kept from their events by every service that decides
access: decisions are made from these, never from a call to another service at decision time.

Everything a decision needs about one patient is in ONE document of ``patients`` (``_id`` =
national id), so a decision costs one ``_id`` lookup:

- person facts from master data (``municipality``, ``address_protection``, ``deceased``);
- ``relations``: care relations from master data, keyed by a digest of the relation id
  (ids may contain dots, which field paths cannot);
- ``directives`` (when asked for): consent directives from the consent service, keyed the same
  way; only a higher ``version`` of a directive replaces the one held, so a stale or reordered
  delivery changes nothing.

``care_relations`` (one document per relation) is kept as well, written after the patient
document: whoever sees a relation there can rely on the patient document having it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

from cachetools import TTLCache
from pymongo import IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from akson_common.db import (
    Database,
    Document,
    DuplicateKeyError,
    WriteOperation,
    bulk_write_in_rounds,
    insert_or_write,
    when_not_busy,
)
from akson_common.events import (
    CARE_RELATION_CHANGED,
    CONSENT_DIRECTIVE_CHANGED,
    ORGANISATION_CHANGED,
    PERSON_CHANGED,
    PRACTITIONER_CHANGED,
    CareRelationChangedV1,
    ConsentDirectiveChangedV1,
    Delivery,
    EventPayload,
    OrganisationChangedV1,
    Outcome,
    PersonChangedV1,
    PractitionerChangedV1,
    Subscriptions,
)
from akson_common.policy import PatientFacts, PolicyContext

PATIENTS = "patients"
CACHED_PATIENTS = 10_000
_NOT_CACHED = object()  # what the cache gives for a patient it does not hold (None is a value)
ORGANISATIONS = "organisations"
PRACTITIONERS = "practitioners"
CARE_RELATIONS = "care_relations"

if TYPE_CHECKING:
    from akson_common.app import Platform


def field_key(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


def _covers(start: str | None, end: str | None, day: str) -> bool:
    return start is not None and start <= day and (end is None or day <= end)


def today_iso(today: date | None = None) -> str:
    return (today or datetime.now(UTC).date()).isoformat()


def access_facts(
    patient: str, document: Document | None, today: date | None = None
) -> PolicyContext:
    """The policy context for ``patient`` from their projection document (purpose and
    emergency reason are the caller's to add)."""
    day = today_iso(today)
    document = document or {}
    relations = [
        {
            "relation_id": relation["relation_id"],
            "patient": patient,
            "kind": relation["kind"],
            "practitioner": relation.get("practitioner"),
            "unit": relation.get("unit"),
            "active": True,
        }
        for relation in (document.get("relations") or {}).values()
        if _covers(relation.get("period_start"), relation.get("period_end"), day)
    ]
    directives = [
        {
            **directive,
            "active": directive.get("status") == "active"
            and _covers(directive.get("period_start"), directive.get("period_end"), day),
        }
        for directive in (document.get("directives") or {}).values()
    ]
    facts = PatientFacts(
        protected_address=document.get("address_protection", "none") != "none",
        municipality=document.get("municipality"),
        deceased=bool(document.get("deceased", False)),
    )
    return PolicyContext(care_relations=relations, directives=directives, patient=facts)


class PatientProjections:
    """The ``patients`` projection, with a short-lived cache of the documents decisions read.

    A decision reads the patient's document (one find: ~1 ms of FerretDB v1's CPU, a sixth of an
    authorised read in issue 15's profile); a clinician's reads come in bursts on one patient.
    So each document read is kept for ``cache_seconds`` (default 1 s, 0 turns it off) and
    dropped at once when this process applies an event about that patient. A document read
    while an event was being applied is not kept (it may be the older one). Another replica's
    cache keeps the older facts for at most ``cache_seconds`` after the event: the staleness
    bound (a care relation or consent change reaches every replica's decisions within that
    time of its event being applied; ``projection_cache_seconds`` in the settings).
    """

    @classmethod
    def of(cls, platform: Platform, *, directives: bool = False) -> PatientProjections:
        """The service's read model, cached for its ``projection_cache_seconds``."""
        return cls(
            platform.database,
            platform.subscriptions,
            directives=directives,
            cache_seconds=platform.settings.projection_cache_seconds,
        )

    def __init__(
        self,
        database: Database,
        subscriptions: Subscriptions,
        *,
        directives: bool = False,
        cache_seconds: float = 1.0,
    ) -> None:
        if cache_seconds < 0:
            raise ValueError("cache_seconds must not be negative")
        self.cache_seconds = cache_seconds
        self._cached: TTLCache[str, Document | None] = TTLCache(
            maxsize=CACHED_PATIENTS, ttl=cache_seconds or 1.0
        )
        # bumped by every applied change: a read that overlapped one is not cached
        self._changes = 0
        self.patients = database.collection(PATIENTS)
        self.care_relations = database.collection(CARE_RELATIONS)
        database.declare_indexes(CARE_RELATIONS, [IndexModel([("patient", 1)])])
        subscriptions.on(PERSON_CHANGED, batch=self.on_persons_changed)(self.on_person_changed)
        subscriptions.on(CARE_RELATION_CHANGED, batch=self.on_care_relations_changed)(
            self.on_care_relation_changed
        )
        if directives:
            subscriptions.on(CONSENT_DIRECTIVE_CHANGED)(self.on_directive_changed)

    async def on_person_changed(self, event: PersonChangedV1, delivery: Delivery) -> Outcome:
        return (await self.on_persons_changed([(event, delivery)]))[0]

    async def on_persons_changed(
        self, events: Sequence[tuple[PersonChangedV1, Delivery]]
    ) -> list[Outcome]:
        """A batch of person changes: new patients inserted in one batch, the others updated
        (each person's changes in order)."""
        now = datetime.now(UTC)
        changes: list[tuple[Any, Document, WriteOperation]] = []
        for event, delivery in events:
            facts = {
                **event.model_dump(mode="json", exclude={"national_id"}),
                "last_event": delivery.event_id,
                "updated_at": now,
            }
            # distinct changes applied: a duplicate delivery must not count
            update = {"$set": facts, "$inc": {"applied_changes": 1}}
            new = {"_id": event.national_id, **facts, "applied_changes": 1}
            changes.append(
                (event.national_id, new, UpdateOne({"_id": event.national_id}, update, upsert=True))
            )
        with self._changing([event.national_id for event, _ in events]):
            await insert_or_write(self.patients, changes)
        return [Outcome.SUCCESS] * len(events)

    async def on_care_relation_changed(
        self, event: CareRelationChangedV1, delivery: Delivery
    ) -> Outcome:
        return (await self.on_care_relations_changed([(event, delivery)]))[0]

    async def on_care_relations_changed(
        self, events: Sequence[tuple[CareRelationChangedV1, Delivery]]
    ) -> list[Outcome]:
        """A batch of care relation changes: the patient documents first, then
        ``care_relations``, so whoever sees a relation there can rely on the patient document
        having it."""
        # the patient's document exists nearly always (master data sends the person first):
        # straight to the update; an insert attempt would fail for each of them
        on_patients: list[tuple[Any, WriteOperation]] = []
        on_relations: list[tuple[Any, Document, WriteOperation]] = []
        for event, delivery in events:
            relation = event.model_dump(mode="json")
            key = field_key(event.relation_id)
            on_patients.append(
                (
                    event.patient,
                    UpdateOne(
                        {"_id": event.patient},
                        {"$set": {f"relations.{key}": relation}},
                        upsert=True,
                    ),
                )
            )
            kept = {
                **event.model_dump(mode="json", exclude={"relation_id"}),
                "last_event": delivery.event_id,
            }
            on_relations.append(
                (
                    event.relation_id,
                    {"_id": event.relation_id, **kept},
                    ReplaceOne({"_id": event.relation_id}, kept, upsert=True),
                )
            )
        with self._changing([event.patient for event, _ in events]):
            await bulk_write_in_rounds(self.patients, on_patients)
        await insert_or_write(self.care_relations, on_relations)
        return [Outcome.SUCCESS] * len(events)

    async def on_directive_changed(
        self, event: ConsentDirectiveChangedV1, delivery: Delivery
    ) -> Outcome:
        path = f"directives.{field_key(event.directive_id)}"
        try:
            # Matches unless the held version is as new or newer; when it is, the upsert's
            # insert collides with the existing patient document: a stale delivery.
            with self._changing([event.patient]):
                await when_not_busy(
                    lambda: self.patients.update_one(
                        {
                            "_id": event.patient,
                            f"{path}.version": {"$not": {"$gte": event.version}},
                        },
                        {"$set": {path: event.model_dump(mode="json")}},
                        upsert=True,
                    )
                )
        except DuplicateKeyError:
            pass
        return Outcome.SUCCESS

    async def patient_document(self, patient: str) -> Document | None:
        if self.cache_seconds:
            # one lookup: between `in` and `[]` the entry can expire (a KeyError, a 500 under
            # load: make chaos, opa scenario)
            cached = self._cached.get(patient, _NOT_CACHED)
            if cached is not _NOT_CACHED:
                return cast("Document | None", cached)
        changes = self._changes
        document = await self.patients.find_one({"_id": patient})
        if self.cache_seconds and changes == self._changes:
            self._cached[patient] = document
        return document

    @contextmanager
    def _changing(self, patients: Sequence[str]) -> Iterator[None]:
        """Around a write of ``patients``' documents: what is cached about them is forgotten
        before and after it, and no read overlapping it is cached."""
        self._forget(patients)
        try:
            yield
        finally:
            self._forget(patients)

    def _forget(self, patients: Sequence[str]) -> None:
        self._changes += 1
        for patient in patients:
            self._cached.pop(patient, None)

    async def context(self, patient: str) -> PolicyContext:
        return access_facts(patient, await self.patient_document(patient))

    async def active_care_relations(self, patient: str) -> list[dict[str, Any]]:
        return (await self.context(patient)).care_relations

    async def patient_facts(self, patient: str) -> PatientFacts | None:
        """What master data's events said about the patient; None while no event has arrived."""
        document = await self.patient_document(patient)
        if document is None or "municipality" not in document:
            return None
        return access_facts(patient, document).patient


class DirectoryProjections:
    """Organisations/units and practitioners as master data's events describe them (public
    register facts: names, HER-ids, on or off the platform, parents, units, professions,
    status): ``organisations`` keyed by organisation number, ``practitioners`` by HPR number."""

    def __init__(self, database: Database, subscriptions: Subscriptions) -> None:
        self.organisations = database.collection(ORGANISATIONS)
        self.practitioners = database.collection(PRACTITIONERS)
        subscriptions.on(ORGANISATION_CHANGED)(self.on_organisation_changed)
        subscriptions.on(PRACTITIONER_CHANGED)(self.on_practitioner_changed)

    async def on_organisation_changed(
        self, event: OrganisationChangedV1, delivery: Delivery
    ) -> Outcome:
        await self._keep(self.organisations, event.org_number, event, "org_number", delivery)
        return Outcome.SUCCESS

    async def on_practitioner_changed(
        self, event: PractitionerChangedV1, delivery: Delivery
    ) -> Outcome:
        await self._keep(self.practitioners, event.hpr_number, event, "hpr_number", delivery)
        return Outcome.SUCCESS

    @staticmethod
    async def _keep(
        collection: AsyncCollection[Document],
        key: str,
        event: EventPayload,
        key_field: str,
        delivery: Delivery,
    ) -> None:
        await collection.replace_one(
            {"_id": key},
            {**event.model_dump(mode="json", exclude={key_field}), "last_event": delivery.event_id},
            upsert=True,
        )
