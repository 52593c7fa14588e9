"""The message transport: a Dapr output binding (``message-transport``), so which exchange
carries messages is configuration — HTTP to a peer locally, the national exchange elsewhere.

The binding is invoked with ``errorIfNot2XX=false``: the sidecar then answers 200 with the
peer's status in the ``metadata.statusCode`` response header, so a peer's answer (accepted,
refused, failing) is told apart from the transport being unavailable (the sidecar's own error).
Messaging, not the sidecar, decides about retries (see charts/akson/files/resiliency.yaml).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Outcome = Literal["delivered", "sent", "retry", "permanent"]
RETRYABLE_STATUSES = frozenset({408, 425, 429})
STATUS_HEADER = "metadata.statuscode"
MAX_REASON = 500


@dataclass(frozen=True)
class TransportResult:
    outcome: Outcome
    status_code: int | None = None
    error_code: str | None = None
    reason: str | None = None


def peer_reason(body: bytes) -> str:
    """What the peer said, short: an OperationOutcome's diagnostics, else the body's start."""
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:MAX_REASON]
    if isinstance(answer, dict) and isinstance(answer.get("issue"), list):
        texts = [
            str(i.get("diagnostics") or i.get("code") or "")
            for i in answer["issue"]
            if isinstance(i, dict)
        ]
        return "; ".join(t for t in texts if t)[:MAX_REASON]
    return json.dumps(answer)[:MAX_REASON]


def classify(sidecar_status: int, headers: httpx.Headers, body: bytes) -> TransportResult:
    """What one invocation of the binding came to."""
    if sidecar_status != 200:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")
        return TransportResult(
            "retry", error_code="transport_unavailable", reason=message[:MAX_REASON]
        )
    raw = headers.get(STATUS_HEADER)
    try:
        status = int(raw) if raw is not None else 200
    except ValueError:
        status = 0
    return peer_result(status, body)


def peer_result(status: int, body: bytes) -> TransportResult:
    """What the peer's (or a subscriber endpoint's) HTTP answer comes to: 2xx delivered (202
    sent), 5xx, 408, 425, 429 retried, any other refusal final."""
    if 200 <= status < 300:
        return TransportResult("sent" if status == 202 else "delivered", status)
    code = f"peer_http_{status}"
    reason = f"the peer answered {status}: {peer_reason(body)}"[:MAX_REASON]
    if status >= 500 or status in RETRYABLE_STATUSES or status == 0:
        return TransportResult("retry", status, code, reason)
    return TransportResult("permanent", status, code, reason)


class Transport:
    def __init__(
        self,
        http: httpx.AsyncClient,
        dapr_http_endpoint: str,
        binding: str,
        path: str,
        dapr_api_token: str,
        timeout_seconds: float,
    ) -> None:
        self.http = http
        self.url = f"{dapr_http_endpoint}/v1.0/bindings/{binding}"
        self.path = path
        self.headers = {"dapr-api-token": dapr_api_token} if dapr_api_token else {}
        self.timeout = timeout_seconds

    async def send(self, her_id: str, bundle: dict[str, Any]) -> TransportResult:
        request = {
            "operation": "post",
            "data": bundle,
            "metadata": {
                "path": self.path.format(her_id=her_id),
                "Content-Type": "application/fhir+json",
                "errorIfNot2XX": "false",
            },
        }
        try:
            response = await self.http.post(
                self.url, json=request, headers=self.headers, timeout=self.timeout
            )
        except httpx.HTTPError as error:
            return TransportResult(
                "retry", error_code="transport_unavailable", reason=type(error).__name__
            )
        return classify(response.status_code, response.headers, response.content)
