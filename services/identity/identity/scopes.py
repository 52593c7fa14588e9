"""SMART App Launch 2.x scopes: the grammar, and the narrowing that grants only what the
request, the app's registration and the user's kind all allow.

Resource scopes are ``<context>/<type>.<permissions>``: context ``patient`` (the launch
patient's record only), ``user`` (what the user may see anyway) or ``system`` (a backend
service); type a FHIR resource type or ``*``; permissions a non-empty subsequence of ``cruds``.
Finer-grained scopes (``?category=...``) are not offered: they are refused as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

PERMISSIONS = "cruds"
RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/([A-Z][A-Za-z]{0,63}|\*)\.(c?r?u?d?s?)$")
LAUNCH = "launch"
LAUNCH_PATIENT = "launch/patient"
LAUNCH_ENCOUNTER = "launch/encounter"
OPENID = "openid"
FHIR_USER = "fhirUser"
OFFLINE_ACCESS = "offline_access"
ONLINE_ACCESS = "online_access"
OTHER_SCOPES = frozenset(
    {LAUNCH, LAUNCH_PATIENT, LAUNCH_ENCOUNTER, OPENID, FHIR_USER, OFFLINE_ACCESS, ONLINE_ACCESS}
)
# the platform's own system scopes, "<type>.<action>" (the seeded system clients; not SMART)
PLATFORM_SCOPE = re.compile(r"^[A-Z][A-Za-z]{0,63}\.(read|search|write|address)$")
UserKind = Literal["practitioner", "citizen", "system"]
CONTEXTS: dict[str, frozenset[str]] = {
    "practitioner": frozenset({"patient", "user"}),
    "citizen": frozenset({"patient", "user"}),
    "system": frozenset({"system"}),
}


@dataclass(frozen=True)
class ResourceScope:
    context: str
    type: str
    permissions: str

    @classmethod
    def parse(cls, text: str) -> ResourceScope | None:
        match = RESOURCE_SCOPE.match(text)
        if match is None or not match.group(3):
            return None
        return cls(match.group(1), match.group(2), match.group(3))

    def __str__(self) -> str:
        return f"{self.context}/{self.type}.{self.permissions}"

    def meet(self, other: ResourceScope) -> ResourceScope | None:
        """What both scopes allow (the narrower type, the common permissions), or None."""
        if self.context != other.context:
            return None
        if self.type == "*":
            kind = other.type
        elif other.type in ("*", self.type):
            kind = self.type
        else:
            return None
        common = "".join(p for p in PERMISSIONS if p in self.permissions and p in other.permissions)
        return ResourceScope(self.context, kind, common) if common else None


def is_smart_scope(text: str) -> bool:
    return text in OTHER_SCOPES or ResourceScope.parse(text) is not None


def invalid_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes that are not SMART v2 scopes (the registry refuses them)."""
    return [s for s in scopes if not is_smart_scope(s)]


def narrow(requested: Iterable[str], allowed: Iterable[str], kind: UserKind) -> tuple[str, ...]:
    """The granted scopes: each requested scope met with the app's allowed ones, in a context
    the user's kind may use; other scopes only when both ask for and allow them. Order kept,
    duplicates dropped."""
    allowed = tuple(allowed)
    allowed_resources = [s for s in map(ResourceScope.parse, allowed) if s is not None]
    granted: dict[str, None] = {}
    for text in requested:
        wanted = ResourceScope.parse(text)
        if wanted is None:
            if text in OTHER_SCOPES and text in allowed:
                granted[text] = None
            continue
        if wanted.context not in CONTEXTS[kind]:
            continue
        for permitted in allowed_resources:
            meet = wanted.meet(permitted)
            if meet is not None:
                granted[str(meet)] = None
    return tuple(granted)
