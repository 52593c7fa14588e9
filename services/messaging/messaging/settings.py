"""Messaging's settings: the shared ones plus addressing, transport, retry timings and rules.

Retry timings are settings so the local stack and the tests run in seconds while production
backs off over minutes.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from akson_common.settings import PLACEHOLDER_SECRETS, Secret, ServiceSettings

# LOINC document types that a recorded journal document is dispatched for, and the message kind
# it becomes: discharge summary (epikrise), nurse discharge note (PLO discharge report), summary
# of episode (PLO health information to the GP).
DEFAULT_DISPATCH_RULES = {
    "18842-5": "discharge_summary",
    "34745-0": "discharge_report",
    "34133-9": "care_information",
}


class MessagingSettings(ServiceSettings):
    # the platform's own communication party (HER-id) as the sender of every message
    her_id: str = "8000001"
    # the peer (the message exchange) presents this bearer token on POST /messages/inbound
    inbound_token: Secret = SecretStr("")
    transport_binding: str = "message-transport"
    # where a message to a HER-id goes, relative to the binding's URL
    transport_path: str = "/her/{her_id}"
    transport_timeout_seconds: float = Field(default=10.0, gt=0)
    # attempts with exponential backoff: base * 2**(attempt-1), at most retry_max_seconds
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    # a claimed message is someone's for this long; a crashed worker's claim then lapses
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=2.0, gt=0)
    dispatch_rules: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DISPATCH_RULES))
    # where a recipient with a token would read the referenced journal document
    journal_fhir_base: str = "https://akson.invalid/journal/fhir/R4"
    # -- topic-based subscriptions (rest-hook) --
    # the FHIR base notifications name resources under (the gateway's public base); "" names
    # them relatively (DocumentReference/1)
    public_fhir_base: str = ""
    subscription_min_heartbeat_seconds: int = Field(default=5, ge=1)
    subscription_max_heartbeat_seconds: int = Field(default=86_400, ge=1)
    subscription_max_timeout_seconds: int = Field(default=10, ge=1, le=60)
    # notification workers sending at once (one slow endpoint holds only its own worker)
    notification_workers: int = Field(default=4, ge=1, le=32)
    # how many subscriptions one subscriber may hold
    subscriptions_per_owner: int = Field(default=100, ge=1)
    # loopback ports never notified (besides this service's sidecar and OPA): the platform's own
    subscription_refused_ports: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _inbound_token_is_real(self) -> MessagingSettings:
        token = self.inbound_token.get_secret_value()
        if self.environment != "development" and token.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("inbound_token must be a real secret outside development")
        return self
