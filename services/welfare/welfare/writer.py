"""Into the journal as the system writer welfare is: its own token (client credentials), through
its sidecar to the journal's FHIR API, where the policy decides the write like any other."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from akson_common.credentials import ClientCredentials
from akson_common.errors import ServiceUnavailable
from akson_common.fhir import FHIR_JSON
from welfare.bundles import MODELS

log = logging.getLogger("akson.welfare.writer")
# what welfare may write into the journal (its registration at identity grants these)
JOURNAL_SCOPES = " ".join(f"{name}.write" for name in sorted(MODELS))


@dataclass(frozen=True)
class Written:
    status: int
    resource_id: str | None = None

    @property
    def recorded(self) -> bool:
        """Made now (201), or by an earlier attempt with the same key (200)."""
        return self.status in (200, 201)

    @property
    def retryable(self) -> bool:
        """The journal (or the way to it) could not take it for now: not reached, timed out,
        overloaded or down (the sidecar's 500 for an app it cannot reach), or a token that
        was refused (a new one is fetched). A refusal of the entry itself is for good."""
        return self.status in (0, 401, 408, 429) or self.status >= 500


class JournalWriter:
    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: ClientCredentials,
        *,
        sidecar: str,
        dapr_token: str,
        app_id: str,
        timeout: float,
    ) -> None:
        self.http = http
        self.credentials = credentials
        self.sidecar = sidecar.rstrip("/")
        self.dapr_token = dapr_token
        self.app_id = app_id
        self.timeout = timeout

    async def create(self, resource_type: str, resource: dict[str, Any], key: str) -> Written:
        """Create the entry's resource; the journal's status (0: not reachable at all).
        ``key`` (the message's and the entry's) makes a retry find what an attempt whose
        answer was lost made, instead of a second resource."""
        try:
            token = await self.credentials.token(self.app_id, JOURNAL_SCOPES)
        except ServiceUnavailable:
            return Written(0)
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": FHIR_JSON,
            "prefer": "return=minimal",
            "idempotency-key": key,
        }
        if self.dapr_token:
            headers["dapr-api-token"] = self.dapr_token
        url = f"{self.sidecar}/v1.0/invoke/{self.app_id}/method/fhir/R4/{resource_type}"
        try:
            response = await self.http.post(
                url, json=resource, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as error:
            log.warning("journal write failed", extra={"error": type(error).__name__})
            return Written(0)
        location = response.headers.get("location", "")
        resource_id = location.rstrip("/").split("/")[-1] if location else None
        if response.status_code != 201:
            log.warning(
                "journal refused a write",
                extra={"status": response.status_code, "type": resource_type},
            )
        return Written(response.status_code, resource_id)
