"""Welfare's settings: the shared ones plus its own client at identity (it writes into the
journal as the system it is, never into the journal's database) and where it sends."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from akson_common.settings import Secret, ServiceSettings


class WelfareSettings(ServiceSettings):
    # welfare's own client registration at identity (client credentials, private_key_jwt)
    client_id: str = "akson-welfare"
    # the client's private key as a JWK (JSON): a mounted secret file, or the secret itself
    client_key_file: str = ""
    client_key: Secret = SecretStr("")
    # identity's token endpoint ("": beside the JWKS the tokens are verified with, /token)
    token_endpoint: str = ""
    # the services welfare calls through its sidecar (Dapr app ids)
    journal_app_id: str = "journal"
    messaging_app_id: str = "messaging"
    invoke_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # what the journal cannot take for now is tried again: after 1, 2, 4 ... s (at most 60 s
    # apart) and at most 100 times (some 90 minutes), then dead-lettered; the worker looks for
    # due retries every poll
    journal_retry_base_seconds: float = Field(default=1.0, gt=0, le=60)
    journal_retry_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    journal_max_attempts: int = Field(default=100, ge=1, le=10_000)
    journal_retry_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # clinical entries one message may carry
    max_entries: int = Field(default=50, ge=1, le=500)

    @model_validator(mode="after")
    def _client_configured_outside_development(self) -> WelfareSettings:
        if not self.token_endpoint and self.jwks_url.endswith("/jwks"):
            object.__setattr__(
                self, "token_endpoint", self.jwks_url.removesuffix("/jwks") + "/token"
            )
        keyed = self.client_key_file or self.client_key.get_secret_value()
        if self.environment != "development" and not (keyed and self.token_endpoint):
            raise ValueError("a client key and the token endpoint must be set outside development")
        return self
