"""The journal's logic: every operation asks the policy before data leaves the store.

Reads of a resource the caller may not see answer exactly like reads of one that does not
exist: **404** with the same OperationOutcome (the policy is still asked for unknown ids, so
a stopped OPA gives 503 either way and the attempt is in the decision log). Writes of new
resources that the policy refuses answer 403 with the reasons: the caller sent the content,
nothing about the record is revealed.

Searches are filtered before paging: the distinct combinations of access attributes among the
matching resources are decided once each, and only the allowed combinations are queried, so
``total``, page sizes and ``next`` links count only what the caller may see.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from akson_common.db import Database, Document, when_not_busy
from akson_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from akson_common.etags import expected_version
from akson_common.events import (
    DOCUMENT_RECORDED,
    RECORD_CHANGED,
    SUPPLIES_USED,
    VISIT_COMPLETED,
    DocumentRecordedV1,
    RecordChangedV1,
    SuppliesUsedV1,
    SupplyLine,
    VisitCompletedV1,
    cloud_event,
)
from akson_common.outbox import Outbox
from akson_common.policy import (
    Action,
    Decide,
    Decision,
    PolicyContext,
    PolicyUnavailable,
    ResourceRef,
    decide_visible,
    refuse_unless_allowed,
)
from journal.access import (
    MASK_ADDRESS,
    Access,
    Caller,
    mask_addresses,
    obligations,
    resource_ref,
)
from journal.kinds import ENTERED_IN_ERROR, KINDS, Kind, Parsed, parse
from journal.search import SearchParameters
from journal.store import ACCESS_FIELDS, AccessTuple, ResourceStore

CHANGED_BY = "https://akson.dev/fhir/StructureDefinition/changed-by"
SUPPLY_USAGES = "supply_usages"
SUMMARY_LATEST = 10
# the kinds whose changes are published as journal.record.changed: the subscription topics'
# (results, the medication list, critical information). Not Observation: a lab import writes
# them by the thousand and no topic is about one
RECORD_KINDS = frozenset({"DiagnosticReport", "MedicationStatement", "AllergyIntolerance"})


class SupplyUse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="article number or code")
    quantity: float = Field(gt=0, le=10_000)


# the namespace of the ids of idempotent creates (uuid5 of writer, type and Idempotency-Key)
IDEMPOTENT_IDS = uuid.UUID("5c1f0a52-3d7e-4f8e-9a61-0d2b7c4e9f13")


@dataclass(frozen=True)
class Stored:
    """A resource as returned: its JSON (obligations applied) and its version. After a write,
    ``readable`` says whether the caller may read it back: a response body is a read, so a
    write-only caller gets the version (ETag, Location) but not the content."""

    resource: dict[str, Any]
    version: int
    readable: bool = True
    # False when a create was a writer's retry of one already made (Idempotency-Key)
    created: bool = True


@dataclass(frozen=True)
class SearchPage:
    resources: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def now() -> datetime:
    return datetime.now(UTC)


def instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(resource_type: str, resource_id: str) -> NotFound:
    # The same words whether it does not exist or is not the caller's to see.
    return NotFound(f"{resource_type}/{resource_id} is not known")


def _reference_id(reference: Any, prefix: str) -> str | None:
    if isinstance(reference, str) and reference.startswith(prefix):
        return reference.removeprefix(prefix)
    return None


class Journal:
    def __init__(self, database: Database, outbox: Outbox, access: Access) -> None:
        self.store = ResourceStore(database, outbox)
        self.access = access
        self.outbox = outbox
        self.supply_usages = database.collection(SUPPLY_USAGES)
        outbox.track(SUPPLY_USAGES)

    # -- decisions ---------------------------------------------------------------------------

    async def _enforce(
        self, caller: Caller, action: Action, resource: ResourceRef, context: PolicyContext
    ) -> Decision:
        return refuse_unless_allowed(await self.access.decide(caller, action, resource, context))

    def _decider(self, caller: Caller, action: Action) -> Decide:
        async def decide(resource: ResourceRef, context: PolicyContext) -> Decision:
            return await self.access.decide(caller, action, resource, context)

        return decide

    async def _visible(
        self, caller: Caller, action: Action, kind: Kind, resource_id: str
    ) -> tuple[Document, Decision, PolicyContext]:
        """The stored resource if the caller may ``action`` it; else 404 as if unknown."""
        stored = await self.store.get(resource_id)
        if stored is not None and stored["type"] != kind.name:
            stored = None  # another type's id is unknown here
        if stored is not None:
            context = await self.access.context(caller, stored["patient"])
            resource = resource_ref(stored)
        else:
            context = await self.access.context(caller, None)
            resource = ResourceRef(type=kind.name, id=resource_id)
        decision = await decide_visible(
            self._decider(caller, action),
            resource,
            context,
            known=stored is not None,
            not_found=not_found(kind.name, resource_id),
        )
        assert stored is not None  # decide_visible raised for an unknown one
        return stored, decision, context

    @staticmethod
    def _output(resource: dict[str, Any], decision: Decision) -> dict[str, Any]:
        return mask_addresses(resource) if MASK_ADDRESS in obligations(decision) else resource

    # -- writes ------------------------------------------------------------------------------

    async def _read_back(
        self, caller: Caller, document: Mapping[str, Any], resource: dict[str, Any], version: int
    ) -> Stored:
        """What a write answers: the new version if the caller may read it (decided like any
        read), else the version without the content (also when no decision can be had: the
        write has happened)."""
        context = await self.access.context(caller, document["patient"])
        try:
            decision = await self.access.decide(caller, "read", resource_ref(document), context)
        except PolicyUnavailable:
            return Stored(resource, version, readable=False)
        if not decision.allow:
            return Stored(resource, version, readable=False)
        return Stored(self._output(resource, decision), version)

    def _origin(self, caller: Caller) -> dict[str, Any]:
        principal = caller.principal
        return {
            "author": caller.writer,
            "unit": principal.unit,
            "organisation": principal.organisation,
            "municipality": principal.municipality,
        }

    def _new_ref(
        self, parsed: Parsed, origin: dict[str, Any], resource_id: str, *, existing: bool = False
    ) -> ResourceRef:
        return resource_ref(
            {
                "_id": resource_id,
                "type": parsed.kind.name,
                "patient": parsed.patient,
                "category": parsed.category,
                "sensitivity": parsed.sensitivity,
                "withheld": parsed.withheld_from_patient,
                **origin,
            },
            existing=existing,
        )

    def _versioned(
        self, caller: Caller, parsed: Parsed, resource_id: str, version: int, moment: datetime
    ) -> dict[str, Any]:
        resource = dict(parsed.resource)
        resource["id"] = resource_id
        principal = caller.principal
        changed_by = (
            {"reference": f"Practitioner/{principal.hpr_number}"}
            if principal.hpr_number
            else {"identifier": {"system": "urn:akson:client", "value": principal.id}}
        )
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k != "extension"}
        extensions = [
            e
            for e in (resource.get("meta") or {}).get("extension", [])
            if e.get("url") != CHANGED_BY
        ]
        resource["meta"] = {
            **meta,
            "versionId": str(version),
            "lastUpdated": moment.isoformat().replace("+00:00", "Z"),
            "extension": [*extensions, {"url": CHANGED_BY, "valueReference": changed_by}],
        }
        return resource

    def _facts(self, parsed: Parsed, resource_id: str, moment: datetime) -> dict[str, Any]:
        when = parsed.date or instant(moment)
        return {
            "patient": parsed.patient,
            "category": parsed.category,
            "sensitivity": parsed.sensitivity,
            "withheld": parsed.withheld_from_patient,
            "status": parsed.status,
            "date": when,
            "type_code": parsed.type_code,
            "sort_key": f"{when}|{resource_id}",
            "updated_at": moment,
        }

    async def create(
        self,
        caller: Caller,
        kind: Kind,
        body: Any,
        *,
        read_back: bool = True,
        idempotency_key: str | None = None,
    ) -> Stored:
        """A new resource; with ``idempotency_key`` its id is the writer's, the type's and the
        key's (``IDEMPOTENT_IDS``), so the writer's retry of a create whose answer it lost
        finds the resource made the first time (``created`` False) instead of a second one."""
        parsed = parse(kind, body)
        resource_id = (
            str(uuid.uuid5(IDEMPOTENT_IDS, f"{caller.writer}\n{kind.name}\n{idempotency_key}"))
            if idempotency_key is not None
            else str(uuid.uuid4())
        )
        origin = self._origin(caller)
        context = await self.access.context(caller, parsed.patient)
        await self._enforce(caller, "write", self._new_ref(parsed, origin, resource_id), context)
        moment = now()
        resource = self._versioned(caller, parsed, resource_id, 1, moment)
        document: Document = {
            "_id": resource_id,
            "type": kind.name,
            **origin,
            **self._facts(parsed, resource_id, moment),
            "version": 1,
            "created_at": moment,
            "changed_by": self._origin(caller),
            "resource": resource,
        }
        events = self._events(kind, document, previous=None)
        document["finished"] = _finished(document)
        if await self.store.insert(document, events):
            return await self._made_before(caller, kind, resource_id, read_back=read_back)
        if read_back:
            return await self._read_back(caller, document, resource, 1)
        return Stored(resource, 1, readable=False)

    async def _made_before(
        self, caller: Caller, kind: Kind, resource_id: str, *, read_back: bool
    ) -> Stored:
        """The resource a writer's earlier create with the same key made (as it is now)."""
        existing = await self.store.get(resource_id)
        if (
            existing is None
            or existing.get("author") != caller.writer
            or existing["type"] != kind.name
        ):
            raise Conflict("Idempotency-Key names another resource")
        resource, version = existing["resource"], int(existing["version"])
        stored = (
            await self._read_back(caller, existing, resource, version)
            if read_back
            else Stored(resource, version, readable=False)
        )
        return replace(stored, created=False)

    async def validate(
        self, caller: Caller, kind: Kind, body: Any, *, resource_id: str | None = None
    ) -> None:
        """``$validate``: the resource is valid and the caller may write it (a create, or with
        ``resource_id`` an update of that resource), asked of the policy like the write itself;
        nothing is stored. The version (If-Match) is the write's own check, at the write."""
        parsed = parse(kind, body)
        if resource_id is None:
            origin = self._origin(caller)
            context = await self.access.context(caller, parsed.patient)
            new = self._new_ref(parsed, origin, str(uuid.uuid4()))
            await self._enforce(caller, "write", new, context)
            return
        stored, _, context = await self._visible(caller, "write", kind, resource_id)
        await self._may_rewrite(caller, kind, parsed, resource_id, stored, context)

    async def update(
        self,
        caller: Caller,
        kind: Kind,
        resource_id: str,
        body: Any,
        if_match: str | None,
        *,
        read_back: bool = True,
    ) -> Stored:
        expected = expected_version(if_match, required=True)
        if isinstance(body, dict) and body.get("id") not in (None, resource_id):
            raise BadRequest("the resource id differs from the URL")
        parsed = parse(kind, body)
        return await self._next_version(
            caller, kind, resource_id, parsed, expected, read_back=read_back
        )

    async def enter_in_error(
        self,
        caller: Caller,
        kind: Kind,
        resource_id: str,
        if_match: str | None,
        *,
        read_back: bool = True,
    ) -> Stored:
        """Nothing is deleted: the resource gets a new version with status entered-in-error."""
        expected = expected_version(if_match, required=False)
        stored, _, _ = await self._visible(caller, "write", kind, resource_id)
        resource = {k: v for k, v in stored["resource"].items() if k != "meta"}
        kind.mark_entered_in_error(resource)
        parsed = parse(kind, resource)
        return await self._next_version(
            caller, kind, resource_id, parsed, expected, stored, read_back=read_back
        )

    async def _may_rewrite(
        self,
        caller: Caller,
        kind: Kind,
        parsed: Parsed,
        resource_id: str,
        stored: Document,
        context: PolicyContext,
    ) -> None:
        """A new version of ``stored`` (its write already allowed) stays with its patient, and
        reclassifying it (category, sensitivity, withheld) must be allowed for the new
        attributes too: the check of an update and of its ``$validate``."""
        if parsed.patient != stored["patient"]:
            raise Unprocessable(
                "a resource cannot move to another patient",
                errors=[{"loc": [kind.patient_field], "msg": "patient changed"}],
            )
        origin = {k: stored.get(k) for k in ("author", "unit", "organisation", "municipality")}
        changed = self._new_ref(parsed, origin, resource_id, existing=True)
        if changed != resource_ref(stored):
            await self._enforce(caller, "write", changed, context)

    async def _next_version(
        self,
        caller: Caller,
        kind: Kind,
        resource_id: str,
        parsed: Parsed,
        expected: int | None,
        stored: Document | None = None,
        *,
        read_back: bool = True,
    ) -> Stored:
        if stored is None:
            stored, _, context = await self._visible(caller, "write", kind, resource_id)
        else:
            context = await self.access.context(caller, stored["patient"])
        if expected is not None and expected != stored["version"]:
            raise PreconditionFailed(f"the current version is {stored['version']}")
        await self._may_rewrite(caller, kind, parsed, resource_id, stored, context)
        moment = now()
        version = stored["version"] + 1
        resource = self._versioned(caller, parsed, resource_id, version, moment)
        changes = {
            **self._facts(parsed, resource_id, moment),
            "changed_by": self._origin(caller),
            "resource": resource,
        }
        after = {**stored, **changes, "version": version}
        events = self._events(kind, after, previous=stored)
        changes["finished"] = bool(stored.get("finished")) or _finished(after)
        if await self.store.replace(stored, changes, events) is None:
            raise PreconditionFailed("the resource changed meanwhile; read it again")
        if read_back:
            return await self._read_back(caller, {**after, **changes}, resource, version)
        return Stored(resource, version, readable=False)

    # -- events ------------------------------------------------------------------------------

    def _events(
        self, kind: Kind, document: Document, previous: Document | None
    ) -> list[dict[str, Any]]:
        if kind.name == "DocumentReference":
            payload = DocumentRecordedV1(
                document_id=document["_id"],
                version=document["version"],
                patient=document["patient"],
                category=document["category"],
                type_code=document.get("type_code"),
                author=document.get("author"),
                unit=document.get("unit"),
                organisation=document.get("organisation"),
                municipality=document.get("municipality"),
                recorded_at=document["updated_at"],
                sensitivity=document.get("sensitivity"),
                withheld_from_patient=document.get("withheld"),
            )
            return [
                cloud_event(
                    DOCUMENT_RECORDED, payload, source="journal", subject=document["patient"]
                )
            ]
        if kind.name in RECORD_KINDS:
            changed = RecordChangedV1(
                resource_type=kind.name,
                resource_id=document["_id"],
                version=document["version"],
                patient=document["patient"],
                category=document["category"],
                status=document.get("status"),
                type_code=document.get("type_code"),
                author=document.get("author"),
                unit=document.get("unit"),
                organisation=document.get("organisation"),
                municipality=document.get("municipality"),
                sensitivity=document.get("sensitivity"),
                withheld_from_patient=document.get("withheld"),
                recorded_at=document["updated_at"],
            )
            return [
                cloud_event(RECORD_CHANGED, changed, source="journal", subject=document["patient"])
            ]
        if kind.name == "Encounter":
            visit = visit_completed(document, previous)
            if visit is not None:
                # subject: the encounter, not the patient (the event carries no patient)
                return [
                    cloud_event(VISIT_COMPLETED, visit, source="journal", subject=document["_id"])
                ]
        return []

    # -- reads -------------------------------------------------------------------------------

    async def read(self, caller: Caller, kind: Kind, resource_id: str) -> Stored:
        stored, decision, _ = await self._visible(caller, "read", kind, resource_id)
        return Stored(self._output(stored["resource"], decision), stored["version"])

    async def read_version(
        self, caller: Caller, kind: Kind, resource_id: str, version: int
    ) -> Stored:
        stored, decision, context = await self._visible(caller, "read", kind, resource_id)
        if version == stored["version"]:
            return Stored(self._output(stored["resource"], decision), version)
        earlier = await self.store.version(resource_id, version)
        if earlier is None or version > stored["version"]:
            raise NotFound(f"{kind.name}/{resource_id} has no version {version}")
        older = await decide_visible(
            self._decider(caller, "read"),
            resource_ref({**earlier, "_id": resource_id}),
            context,
            known=True,
            not_found=NotFound(f"{kind.name}/{resource_id} has no version {version}"),
        )
        return Stored(self._output(earlier["resource"], older), version)

    async def history(self, caller: Caller, kind: Kind, resource_id: str) -> list[dict[str, Any]]:
        """Every version the caller may see (each decided on its own attributes), newest
        first, with who changed it (``meta.extension`` changed-by)."""
        stored, decision, context = await self._visible(caller, "read", kind, resource_id)
        earlier = await self.store.earlier_versions(resource_id, stored["version"])
        tuples = {_access(d) for d in earlier} - {_access(stored)}
        decisions = await self.access.decide_many(
            caller, "read", stored["patient"], tuples, context
        )
        decisions[_access(stored)] = decision
        versions = []
        for document in [stored, *earlier]:
            allowed = decisions[_access(document)]
            if not allowed.allow:
                continue
            versions.append(
                {
                    "resource": self._output(document["resource"], allowed),
                    "version": document["version"],
                    "updated_at": document["resource"]["meta"]["lastUpdated"],
                    "method": "POST" if document["version"] == 1 else "PUT",
                }
            )
        return versions

    async def search(self, caller: Caller, kind: Kind, parameters: SearchParameters) -> SearchPage:
        patient = parameters.patient
        if patient is None and caller.principal.kind == "citizen":
            patient = caller.principal.id
        if patient is None:
            raise BadRequest("a search names the patient (patient=Patient/<national id>)")
        context = await self.access.context(caller, patient)
        entries = [
            e
            for e in await self.store.of_patient(patient, kind.name)
            if parameters.matches(kind.name, e)
        ]
        if not entries:
            # Nothing matches; the search is still decided (and logged), so a stopped OPA
            # gives 503 whether or not there was anything to find.
            probe = ResourceRef(type=kind.name, patient=patient, category=parameters.category)
            await self.access.decide(caller, "search", probe, context)
            return SearchPage([], 0, None)
        decisions = await self._decide_entries(caller, "search", patient, entries, context)
        visible = _newest_first([e for e in entries if decisions[_access(e)].allow])
        total = len(visible)
        if parameters.cursor is not None:
            visible = [e for e in visible if e["sort_key"] < parameters.cursor]
        page = visible[: parameters.count]
        next_key = page[-1]["sort_key"] if len(visible) > parameters.count else None
        return SearchPage(self._allowed(page, decisions), total, next_key)

    async def match(
        self, caller: Caller, kind: Kind, parameters: SearchParameters
    ) -> Stored | None:
        """Conditional create (``If-None-Exist``): the one resource the caller may see that
        matches, None when there is none, 412 when there are several. (Two concurrent
        conditional creates may both create: the store has no unique key on a search.)"""
        page = await self.search(caller, kind, replace(parameters, count=2, cursor=None))
        if page.total == 0:
            return None
        if page.total > 1:
            raise PreconditionFailed("If-None-Exist matches more than one resource")
        resource = page.resources[0]
        return Stored(resource, int(resource["meta"]["versionId"]))

    async def _decide_entries(
        self,
        caller: Caller,
        action: Action,
        patient: str,
        entries: Sequence[dict[str, Any]],
        context: PolicyContext,
    ) -> dict[AccessTuple, Decision]:
        """One decision per distinct combination of access attributes among ``entries``."""
        distinct = list(dict.fromkeys(_access(e) for e in entries))
        return await self.access.decide_many(caller, action, patient, distinct, context)

    def _allowed(
        self, documents: Sequence[dict[str, Any]], decisions: dict[AccessTuple, Decision]
    ) -> list[dict[str, Any]]:
        """The resources of ``documents`` an allowing decision on their own attributes covers,
        each as that decision's obligations shape it."""
        resources = []
        for document in documents:
            decision = decisions.get(_access(document))
            if decision is not None and decision.allow:
                resources.append(self._output(document["resource"], decision))
        return resources

    async def summary(self, caller: Caller, patient: str) -> list[dict[str, Any]]:
        """Critical information, current medications, latest documents and results: each
        entry decided like any read."""
        sections: list[tuple[str, int | None]] = [
            ("AllergyIntolerance", None),
            ("Flag", None),
            ("MedicationStatement", None),
            ("DocumentReference", SUMMARY_LATEST),
            ("DiagnosticReport", SUMMARY_LATEST),
            # results and doses, welfare-technology devices' among them
            ("Observation", SUMMARY_LATEST),
            ("MedicationAdministration", SUMMARY_LATEST),
        ]
        context = await self.access.context(caller, patient)
        entries = [
            e
            for e in await self.store.of_patient(patient)
            if e.get("type") in KINDS
            and any(e["type"] == name for name, _ in sections)
            and e.get("status") in KINDS[e["type"]].current_statuses
        ]
        if not entries:
            probe = ResourceRef(type="Patient", patient=patient)
            await self.access.decide(caller, "read", probe, context)
            return []
        decisions = await self._decide_entries(caller, "read", patient, entries, context)
        chosen: list[dict[str, Any]] = []
        for name, latest in sections:
            allowed = _newest_first(
                [e for e in entries if e["type"] == name and decisions[_access(e)].allow]
            )
            chosen.extend(allowed[:latest] if latest else allowed)
        return self._allowed(chosen, decisions)

    # -- supplies ----------------------------------------------------------------------------

    async def record_supplies(
        self, caller: Caller, encounter_id: str, lines: Sequence[SupplyUse]
    ) -> str:
        """Supply use during a visit: a write on the Encounter; the event names no patient."""
        if not lines:
            raise Unprocessable(
                "at least one supply line", errors=[{"loc": ["body"], "msg": "empty"}]
            )
        stored, _, _ = await self._visible(caller, "write", KINDS["Encounter"], encounter_id)
        if stored.get("status") == ENTERED_IN_ERROR:
            raise Unprocessable(
                "the Encounter is entered-in-error",
                errors=[{"loc": ["encounter"], "msg": "entered-in-error"}],
            )
        encounter = stored["resource"]
        unit = _reference_id(
            (encounter.get("serviceProvider") or {}).get("reference"), "Organization/"
        ) or stored.get("unit")
        if not unit:
            raise Unprocessable(
                "the Encounter names no unit (serviceProvider)",
                errors=[{"loc": ["serviceProvider"], "msg": "required"}],
            )
        usage_id = str(uuid.uuid4())
        event = SuppliesUsedV1(
            usage_id=usage_id,
            unit=unit,
            organisation=stored.get("organisation"),
            municipality=stored.get("municipality"),
            used_at=now(),
            items=tuple(SupplyLine(item=line.item, quantity=line.quantity) for line in lines),
        )
        record = {
            "_id": usage_id,
            "encounter": encounter_id,
            "recorded_by": caller.writer,
            **event.model_dump(mode="json", exclude={"usage_id"}),
        }
        envelope = cloud_event(SUPPLIES_USED, event, source="journal", subject=unit)
        await when_not_busy(lambda: self.outbox.insert_many(SUPPLY_USAGES, [(record, [envelope])]))
        return usage_id


def _access(document: Mapping[str, Any]) -> AccessTuple:
    return tuple(document.get(name) for name in ACCESS_FIELDS)


def _newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: str(e.get("sort_key") or ""), reverse=True)


def _finished(document: Document) -> bool:
    return document.get("type") == "Encounter" and document.get("status") == "finished"


def _first_type(encounter: dict[str, Any]) -> str | None:
    for concept in encounter.get("type") or []:
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return None


def visit_completed(document: Document, previous: Document | None) -> VisitCompletedV1 | None:
    """The payroll event for an Encounter version, if it is one: finished, or a finished one
    marked entered-in-error. Only who, where, what kind and when: never the patient."""
    was_finished = previous is not None and bool(previous.get("finished"))
    status = document.get("status")
    if status == "finished":
        reported = "finished"
    elif status == ENTERED_IN_ERROR and was_finished:
        reported = ENTERED_IN_ERROR
    else:
        return None
    encounter = document["resource"]
    period = encounter.get("period") or {}
    start, end = period.get("start"), period.get("end")
    if not (start and end) and reported == "finished":
        raise Unprocessable(
            "a finished Encounter needs period.start and period.end",
            errors=[{"loc": ["period"], "msg": "start and end required"}],
        )
    performer = None
    for participant in encounter.get("participant") or []:
        individual = (participant.get("individual") or {}).get("reference")
        performer = _reference_id(individual, "Practitioner/")
        if performer:
            break
    unit = _reference_id((encounter.get("serviceProvider") or {}).get("reference"), "Organization/")
    unit = unit or document.get("unit")
    if not unit:
        raise Unprocessable(
            "a finished Encounter needs serviceProvider (the unit)",
            errors=[{"loc": ["serviceProvider"], "msg": "required"}],
        )
    visit_type = _first_type(encounter) or (encounter.get("class") or {}).get("code") or "visit"
    return VisitCompletedV1(
        encounter_id=document["_id"],
        version=document["version"],
        performer=performer or document.get("author") or "unknown",
        unit=unit,
        organisation=document.get("organisation"),
        municipality=document.get("municipality"),
        visit_type=str(visit_type),
        start=datetime.fromisoformat(str(start or end).replace("Z", "+00:00")),
        end=datetime.fromisoformat(str(end or start).replace("Z", "+00:00")),
        status=reported,
    )
