"""What one transport attempt comes to, and when the next one is due."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from akson_common.events import (
    MESSAGE_DEAD_LETTERED,
    MESSAGE_DELIVERED,
    MESSAGE_RETRY_SCHEDULED,
    MESSAGE_SENT,
)
from messaging.models import OutboundMessage, Sender
from messaging.settings import MessagingSettings
from messaging.store import attempt_outcome
from messaging.transport import TransportResult, classify
from messaging.worker import SendWorker, backoff


def peer_answer(status: int, body: object = b"") -> tuple[int, httpx.Headers, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return 200, httpx.Headers({"metadata.statusCode": str(status)}), raw


def test_a_2xx_from_the_peer_is_delivered_and_202_only_sent() -> None:
    assert classify(*peer_answer(200)).outcome == "delivered"
    assert classify(*peer_answer(204)).outcome == "delivered"
    assert classify(*peer_answer(202)).outcome == "sent"


def test_a_failing_peer_is_retried_with_its_reason() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "EPJ nede"}]}
    result = classify(*peer_answer(503, outcome))
    assert (result.outcome, result.error_code) == ("retry", "peer_http_503")
    assert result.reason == "the peer answered 503: EPJ nede"
    assert classify(*peer_answer(429)).outcome == "retry"


def test_a_refusing_peer_is_not_retried() -> None:
    result = classify(*peer_answer(400, b"unknown recipient"))
    assert (result.outcome, result.error_code) == ("permanent", "peer_http_400")
    assert result.reason == "the peer answered 400: unknown recipient"


def test_a_sidecar_error_means_the_transport_is_unavailable() -> None:
    body = json.dumps({"errorCode": "ERR_INVOKE_OUTPUT_BINDING", "message": "connection refused"})
    result = classify(500, httpx.Headers(), body.encode())
    assert (result.outcome, result.error_code) == ("retry", "transport_unavailable")
    assert result.reason == "connection refused"


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [backoff(n, 0.5, 4) for n in range(1, 7)]
    assert waits == [timedelta(seconds=s) for s in (0.5, 1, 2, 4, 4, 4)]


def test_a_placeholder_inbound_token_is_refused_outside_development() -> None:
    real = {
        "service_name": "messaging",
        "environment": "production",
        "dapr_api_token": "x" * 20,
        "app_api_token": "y" * 20,
        "partition_key_secret": "p" * 20,
        "opa_token": "o" * 20,
        "jwks_file": "/k.json",
    }
    with pytest.raises(ValueError, match="inbound_token"):
        MessagingSettings.model_validate(real)
    ok = MessagingSettings.model_validate({**real, "inbound_token": "z" * 24})
    assert ok.dispatch_rules["18842-5"] == "discharge_summary"


def queued_message(attempts: int = 0) -> OutboundMessage:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    return OutboundMessage(
        id="m-1",
        kind="referral",
        trigger="explicit",
        patient="01017000000",
        recipient_her_id="123456",
        sender=Sender(kind="system", id="ops"),
        bundle={},
        status="queued",
        attempts=attempts,
        next_attempt_at=at,
        lease_owner="worker-1",
        created_at=at,
        updated_at=at,
    )


NOW = datetime(2026, 11, 22, 1, tzinfo=UTC)
WAIT = timedelta(seconds=2)


def test_an_attempt_delivers_and_releases_the_lease() -> None:
    changes, topic = attempt_outcome(
        queued_message(), TransportResult("delivered", 200), NOW, 6, WAIT
    )
    assert topic is MESSAGE_DELIVERED
    assert changes["status"] == "delivered" and changes["attempts"] == 1
    assert changes["lease_owner"] is None and changes["next_attempt_at"] is None
    _, sent = attempt_outcome(queued_message(), TransportResult("sent", 202), NOW, 6, WAIT)
    assert sent is MESSAGE_SENT


def test_a_failed_attempt_is_queued_again_until_the_last_then_dead_lettered() -> None:
    failure = TransportResult("retry", 503, "peer_http_503", "the peer answered 503: busy")
    changes, topic = attempt_outcome(queued_message(attempts=4), failure, NOW, 6, WAIT)
    assert topic is MESSAGE_RETRY_SCHEDULED
    assert (changes["status"], changes["attempts"]) == ("queued", 5)
    assert changes["next_attempt_at"] == NOW + WAIT
    assert changes["last_error"] == "the peer answered 503: busy"
    last, topic = attempt_outcome(queued_message(attempts=5), failure, NOW, 6, WAIT)
    assert topic is MESSAGE_DEAD_LETTERED
    assert (last["status"], last["attempts"], last["last_error_code"]) == (
        "dead_lettered",
        6,
        "peer_http_503",
    )


def test_a_permanent_refusal_dead_letters_at_the_first_attempt() -> None:
    refusal = TransportResult("permanent", 400, "peer_http_400", "unknown recipient")
    changes, topic = attempt_outcome(queued_message(), refusal, NOW, 6, WAIT)
    assert topic is MESSAGE_DEAD_LETTERED and changes["attempts"] == 1


class OneMessageQueue:
    """A queue holding one due message; records how each attempt was settled."""

    def __init__(self, message: OutboundMessage) -> None:
        self.message: OutboundMessage | None = message
        self.settled: list[TransportResult] = []

    async def claim(self, now: datetime, owner: str, lease: timedelta) -> OutboundMessage | None:
        message, self.message = self.message, None
        return message

    async def settle(
        self,
        message: OutboundMessage,
        owner: str,
        result: TransportResult,
        now: datetime,
        **options: object,
    ) -> OutboundMessage:
        self.settled.append(result)
        return message


class BrokenTransport:
    async def send(self, recipient: str, bundle: object) -> TransportResult:
        raise TypeError("this message cannot be serialised")


async def test_a_message_that_cannot_be_sent_is_a_counted_failed_attempt_not_a_stalled_queue() -> (
    None
):
    queue = OneMessageQueue(queued_message())
    settings = cast(Any, MessagingSettings).model_construct(
        lease_seconds=30, retry_base_seconds=1, retry_max_seconds=10, max_attempts=6
    )
    transport = BrokenTransport()

    async def send(message: OutboundMessage) -> TransportResult:
        return await transport.send(message.recipient_her_id, message.bundle)

    worker = SendWorker(cast(Any, queue), send, settings)
    assert await worker.run_once() == 1
    (result,) = queue.settled
    assert (result.outcome, result.error_code) == ("retry", "internal_error")
