"""Into the journal as the system writer welfare is: its own token (client credentials), through
its sidecar to the journal's FHIR API, where the policy decides the write like any other."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from akson_common.credentials import ClientCredentials
from akson_common.errors import ServiceUnavailable
from akson_common.fhir import FHIR_JSON
from welfare.bundles import MODELS, Entry

log = logging.getLogger("akson.welfare.writer")
# what welfare may write into the journal (its registration at identity grants these)
JOURNAL_SCOPES = " ".join(f"{name}.write" for name in sorted(MODELS))


@dataclass(frozen=True)
class Written:
    status: int
    resource_id: str | None = None

    @property
    def recorded(self) -> bool:
        return self.status == 201


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

    async def create(self, entry: Entry) -> Written:
        """Create the entry's resource; the journal's status (0: not reachable at all)."""
        try:
            token = await self.credentials.token(self.app_id, JOURNAL_SCOPES)
        except ServiceUnavailable:
            return Written(0)
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": FHIR_JSON,
            "prefer": "return=minimal",
        }
        if self.dapr_token:
            headers["dapr-api-token"] = self.dapr_token
        url = f"{self.sidecar}/v1.0/invoke/{self.app_id}/method/fhir/R4/{entry.resource_type}"
        try:
            response = await self.http.post(
                url, json=entry.resource, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as error:
            log.warning("journal write failed", extra={"error": type(error).__name__})
            return Written(0)
        location = response.headers.get("location", "")
        resource_id = location.rstrip("/").split("/")[-1] if location else None
        if response.status_code != 201:
            log.warning(
                "journal refused a write",
                extra={"status": response.status_code, "type": entry.resource_type},
            )
        return Written(response.status_code, resource_id)
