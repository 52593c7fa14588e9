"""No identifier leaves a service in a URL that a library logs, or in a broker's partition key."""

from __future__ import annotations

import asyncio
import logging

import httpx

from akson_common.events import PERSON_CHANGED, EventPublisher, PersonChangedV1, cloud_event
from akson_common.logs import configure_logging

NATIONAL_ID = "01015012345"


def publish_through(secret: str, *subjects: str) -> list[httpx.Request]:
    sent: list[httpx.Request] = []

    def sidecar(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(sidecar)) as client:
            publisher = EventPublisher(client, "http://dapr", "pubsub", partition_key_secret=secret)
            for subject in subjects:
                payload = PersonChangedV1(
                    national_id=subject, municipality="4601", address_protection="none",
                    deceased=False,
                )  # fmt: skip
                await publisher.publish(
                    cloud_event(PERSON_CHANGED, payload, source="masterdata", subject=subject)
                )

    asyncio.run(run())
    return sent


def test_the_partition_key_is_a_keyed_hash_stable_per_patient() -> None:
    first, again, other = publish_through("deployment-key", NATIONAL_ID, NATIONAL_ID, "02025012345")
    keys = [r.url.params["metadata.partitionKey"] for r in (first, again, other)]
    assert NATIONAL_ID not in str(first.url)
    assert keys[0] == keys[1] != keys[2]
    assert len(keys[0]) == 32
    # another deployment's key gives another hash: the key cannot be computed without the secret
    (elsewhere,) = publish_through("another-key", NATIONAL_ID)
    assert elsewhere.url.params["metadata.partitionKey"] != keys[0]


def test_http_client_libraries_log_no_request_lines() -> None:
    configure_logging("journal", "INFO")
    for name in ("httpx", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    assert logging.getLogger("akson.events").isEnabledFor(logging.INFO)
