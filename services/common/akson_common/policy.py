"""The policy enforcement point: every access to health data asks OPA first, and fails closed.

One query per decision to ``akson/authz/decision``. OPA unreachable, slow, erroring or returning
no result all mean **deny**. The decision ids are returned to the caller in the
``Akson-Decision-Id`` response header (set by the app factory's middleware).

Other policies with the same decision shape (e.g. ``akson/export/decision``, which minimises
outbound payloads) are asked through :meth:`PolicyEnforcementPoint.decide_at`, with the same
fail-closed semantics and the same double recording of decision ids.

No decision (OPA unreachable, slow, erroring, an answer that is not a decision) raises
:class:`PolicyUnavailable`, a 503 problem: no caller re-checks a reason string, and a caller
that forgets to catch it still denies. Reading one record goes through :func:`decide_visible`
(or :meth:`PolicyEnforcementPoint.visible`): the policy is asked even when the record is
unknown, and a refusal answers exactly like an unknown record (404).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from opa_client.opa_async import AsyncOpaClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from akson_common.auth import Principal
from akson_common.errors import Forbidden, Problem, ServiceUnavailable

log = logging.getLogger("akson.policy")

DECISION_HEADER = "Akson-Decision-Id"
OBLIGATIONS_HEADER = "Akson-Obligations"
POLICY_PACKAGE = "akson.authz"
POLICY_RULE = "decision"
# the reason a PolicyUnavailable carries (in the problem's ``reasons``)
UNAVAILABLE = "policy_unavailable"

Action = Literal["read", "search", "write"]

# The decision ids taken while serving the current request; the middleware owns the list.
decision_ids: ContextVar[list[str] | None] = ContextVar("decision_ids", default=None)
# The obligations of the allowing decisions taken for the current request (told to the caller).
decision_obligations: ContextVar[set[str] | None] = ContextVar("decision_obligations", default=None)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allow: bool = False
    reasons: tuple[str, ...] = ()
    obligations: tuple[Any, ...] = ()
    # where a content policy (akson.export) found problems: ``{path, code}``, never values
    violations: tuple[Any, ...] = ()
    policy_version: str | None = None
    decision_id: str | None = None

    def obligation_codes(self) -> set[str]:
        """Obligation codes, whether the policy gives them as strings or as objects."""
        codes = set()
        for obligation in self.obligations:
            if isinstance(obligation, str):
                codes.add(obligation)
            elif isinstance(obligation, Mapping):
                for key in ("code", "id", "type", "name"):
                    if isinstance(obligation.get(key), str):
                        codes.add(obligation[key])
                        break
        return codes


class PolicyUnavailable(ServiceUnavailable):
    """No access decision could be had: access is denied (503, fail closed)."""

    def __init__(self, detail: str = "No access decision could be made; access is denied.") -> None:
        super().__init__(detail, reasons=[UNAVAILABLE])


class ResourceRef(BaseModel):
    """What is being accessed; never its clinical content (see policies/README.md).

    ``unit``, ``organisation`` and ``municipality`` are where the resource was recorded, and
    ``author`` who recorded it; ``withheld_from_patient`` marks a document the patient may not
    (yet) read; ``existing``: the resource is already on record (a write changes or
    invalidates it, rather than delivering a new one).
    """

    type: str
    patient: str | None = None
    category: str | None = None
    sensitivity: Literal["normal", "sensitive"] = "normal"
    unit: str | None = None
    organisation: str | None = None
    municipality: str | None = None
    author: str | None = None
    withheld_from_patient: bool = False
    existing: bool = False
    id: str | None = None


class PatientFacts(BaseModel):
    """What the service's projection knows about the patient (never name or address)."""

    protected_address: bool = False
    municipality: str | None = None
    deceased: bool = False


class PolicyContext(BaseModel):
    """The facts the service holds in its projections, as the policy input's ``context``.

    ``care_relations``: ``{relation_id, patient, kind, practitioner, unit, active}``;
    ``directives``: the patient's consent directives (the fields of
    ``ConsentDirectiveChangedV1`` plus ``active``, computed from status and period at
    decision time); ``purpose``: treatment (default), registry, nav, child_welfare, audit...;
    ``emergency_reason``: a coded break-glass reason, or None.
    """

    care_relations: list[dict[str, Any]] = Field(default_factory=list)
    directives: list[dict[str, Any]] = Field(default_factory=list)
    patient: PatientFacts | None = None
    purpose: str = "treatment"
    emergency_reason: str | None = None


class PolicyEnforcementPoint:
    def __init__(
        self,
        opa_url: str,
        timeout_seconds: float,
        on_decision: Callable[[str, bool], None] | None = None,
        token: str = "",
        *,
        max_in_flight: int = 32,
        queue_seconds: float = 5.0,
    ) -> None:
        """``on_decision(decision_id, allow)`` is told of every decision OPA made for us (the
        double recording audit reconciles with OPA's decision log); ``token`` is the
        enforcement points' bearer token OPA requires (policies/system/authz).

        ``timeout_seconds`` bounds each question to OPA from when it goes out; at most
        ``max_in_flight`` go out at once (below the HTTP client's 100 connections), and a
        question waits at most ``queue_seconds`` for its turn. Without the queue a burst (200
        concurrent updates) spent its 0.5 s waiting for one of the client's connections and
        failed closed with OPA healthy: a 503 for a request nothing was wrong with."""
        self.on_decision = on_decision
        self._turns = asyncio.Semaphore(max_in_flight)
        self._queue_seconds = queue_seconds
        parts = urlsplit(opa_url)
        self.client = AsyncOpaClient(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            timeout=timeout_seconds,
            retries=0,
            token=token or None,
        )

    async def start(self) -> None:
        await self.client.__aenter__()

    async def close(self) -> None:
        await self.client.close_connection()

    async def healthy(self) -> bool:
        try:
            await self.client.check_health()
        except Exception:
            return False
        return True

    async def decide(
        self, subject: Principal, action: Action, resource: ResourceRef, context: PolicyContext
    ) -> Decision:
        policy_input = {
            "subject": subject.model_dump(mode="json"),
            "action": action,
            "resource": resource.model_dump(mode="json"),
            "context": context.model_dump(mode="json"),
        }
        return await self.decide_at(POLICY_PACKAGE, POLICY_RULE, policy_input)

    async def decide_at(self, package: str, rule: str, policy_input: dict[str, Any]) -> Decision:
        """Ask ``package``'s ``rule`` (a decision document: ``allow``, ``reasons``...).

        Fails closed: no answer raises :class:`PolicyUnavailable`; an undefined rule is a deny
        with ``policy_undefined``.
        """
        try:
            async with asyncio.timeout(self._queue_seconds):
                await self._turns.acquire()
        except TimeoutError:
            log.warning("policy decision unavailable: deny", extra={"error": "QueueTimeout"})
            raise PolicyUnavailable() from None
        try:
            response = await self.client.query_rule(policy_input, package, rule)
            result = response.get("result")
            decision = Decision.model_validate(
                {
                    **(result if isinstance(result, dict) else {}),
                    "decision_id": response.get("decision_id"),
                }
            )
            if not isinstance(result, dict):
                decision = decision.model_copy(
                    update={"allow": False, "reasons": ("policy_undefined",)}
                )
        except (Exception, ValidationError) as error:  # fail closed on anything
            log.warning(
                "policy decision unavailable: deny",
                extra={"error": type(error).__name__, "package": package},
            )
            raise PolicyUnavailable() from None
        finally:
            self._turns.release()
        if decision.decision_id:
            taken = decision_ids.get()
            if taken is not None:
                taken.append(decision.decision_id)
            if self.on_decision is not None:
                self.on_decision(decision.decision_id, decision.allow)
        owed = decision_obligations.get()
        if owed is not None and decision.allow:
            owed.update(decision.obligation_codes())
        return decision

    async def enforce(
        self, subject: Principal, action: Action, resource: ResourceRef, context: PolicyContext
    ) -> Decision:
        """Return an allowing decision, or raise: 503 when no decision could be had, 403 on deny."""
        return refuse_unless_allowed(await self.decide(subject, action, resource, context))

    async def read_back(
        self, subject: Principal, resource: ResourceRef, context: PolicyContext
    ) -> Decision | None:
        """A response body is a read: what a write would answer is decided as a read of it.
        The allowing decision (its obligations apply to the body), or None: answer without
        the content (the identifier, version and location only). The write has happened:
        no decision to be had means no content, not an error."""
        try:
            decision = await self.decide(subject, "read", resource, context)
        except PolicyUnavailable:
            return None
        return decision if decision.allow else None

    async def visible(
        self,
        subject: Principal,
        action: Action,
        resource: ResourceRef,
        context: PolicyContext,
        *,
        known: bool,
        not_found: Problem,
    ) -> Decision:
        """:func:`decide_visible` with this enforcement point's decisions for ``subject``."""

        async def decide(resource: ResourceRef, context: PolicyContext) -> Decision:
            return await self.decide(subject, action, resource, context)

        return await decide_visible(decide, resource, context, known=known, not_found=not_found)


def written_unread(
    status_code: int, identifiers: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The answer to a write the writer may not read back (:meth:`read_back` gave None): the
    status it would have had, and only the identifiers the writer already knows."""
    return JSONResponse(dict(identifiers), status_code=status_code, headers=dict(headers or {}))


def refuse_unless_allowed(decision: Decision) -> Decision:
    """The decision if it allows; else 403 with its reasons."""
    if decision.allow:
        return decision
    raise Forbidden("Access denied by policy.", reasons=list(decision.reasons))


Decide = Callable[[ResourceRef, PolicyContext], Awaitable[Decision]]


async def decide_visible(
    decide: Decide,
    resource: ResourceRef,
    context: PolicyContext,
    *,
    known: bool,
    not_found: Problem,
) -> Decision:
    """Decide an access to one record; raise ``not_found`` if it is unknown or refused.

    The policy is asked for an unknown record too (``resource`` then names what was asked
    for, e.g. its type and id), so the attempt is in the decision log and a stopped OPA is a
    503 either way: whether a record exists is never revealed to someone who may not see it.
    """
    decision = await decide(resource, context)
    if not known or not decision.allow:
        raise not_found
    return decision


async def policy_point(request: Request) -> PolicyEnforcementPoint:
    # async: a plain def dependency would run in FastAPI's thread pool (see state_dependency)
    pep: PolicyEnforcementPoint = request.app.state.pep
    return pep


Policy = Annotated[PolicyEnforcementPoint, Depends(policy_point)]
