"""Service settings: one class, one env prefix per service, no placeholder secrets in production."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# A secret setting, surrounding whitespace dropped: a Secret made from a file (`kubectl create
# secret --from-file`, `openssl rand -hex 32 > f`) ends in a newline, which no token, key or
# connection string holds, and a header with it is refused by the HTTP client (the cluster's
# first OPA question, 2026-12-02: every decision failed closed)
Secret = Annotated[SecretStr, BeforeValidator(_stripped)]


class ServiceSettings(BaseSettings):
    """Settings every service shares; a service subclasses it only to add its own fields.

    Read from the environment with the prefix ``AKSON_<SERVICE>_`` (see :func:`settings_for`),
    so two services on one machine never read each other's values.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str
    environment: Literal["development", "test", "production"] = "production"
    log_level: str = "INFO"

    mongo_url: Secret = SecretStr("mongodb://127.0.0.1:27017/")
    mongo_database: str = ""
    # FerretDB v1 loses concurrent updates of one document: serialise them in-process
    # (akson_common.db.WriteLocks). MongoDB applies each single-document update atomically,
    # so off by default (in production it would serialise writes for nothing); the local
    # runner, on FerretDB, turns it on for every service (AKSON_<SERVICE>_MONGO_SERIALISE_WRITES).
    mongo_serialise_writes: bool = False
    # connections of this service's database client (PyMongo's maxPoolSize; its default 100)
    mongo_max_pool_size: int = Field(default=100, ge=1, le=1000)

    dapr_http_endpoint: str = "http://127.0.0.1:3500"
    dapr_api_token: Secret = SecretStr("")
    app_api_token: Secret = SecretStr("")
    pubsub_name: str = "pubsub"
    # the key of the keyed hash that stands for the subject (a patient) as the broker's
    # partition key: the same in every service of a deployment
    partition_key_secret: Secret = SecretStr("")

    opa_url: str = "http://127.0.0.1:8181"
    # the enforcement points' bearer token: OPA answers decisions to nobody else
    opa_token: Secret = SecretStr("")
    opa_timeout_seconds: float = Field(default=0.5, gt=0, le=5)
    # at most this many questions at OPA at once; one waits at most opa_queue_seconds for a turn
    opa_max_in_flight: int = Field(default=32, ge=1, le=100)
    opa_queue_seconds: float = Field(default=5.0, gt=0, le=30)

    jwt_issuer: str = "https://identity.akson.local"
    jwt_audience: str = ""
    # the platform FHIR base (the gateway service) forwards its callers' tokens to the services
    # owning each type: its audience is accepted too, on /fhir/ routes only ("": none)
    fhir_gateway_audience: str = "gateway"
    jwks_url: str = ""
    jwks_file: str = ""
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=60)
    # a key the issuer publishes ahead of use must be fetched before it signs: keep this
    # below the issuer's publication lead
    jwks_max_age_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)

    otlp_endpoint: str = ""
    outbox_sweep_seconds: float = Field(default=2.0, gt=0)
    # how long a decision may use a patient's projection document read before (0: never);
    # this process forgets it at once when it applies an event about the patient, another
    # replica within this time (akson_common.projections.PatientProjections)
    projection_cache_seconds: float = Field(default=1.0, ge=0, le=10)

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> ServiceSettings:
        if self.environment != "development":
            for name in (
                "dapr_api_token",
                "app_api_token",
                "partition_key_secret",
                "opa_token",
            ):
                value: SecretStr = getattr(self, name)
                if value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name} must be a real secret outside development")
            if not (self.jwks_url or self.jwks_file):
                raise ValueError("jwks_url or jwks_file must be set outside development")
        if not self.mongo_database:
            object.__setattr__(self, "mongo_database", f"akson_{self.service_name}")
        if not self.jwt_audience:
            object.__setattr__(self, "jwt_audience", self.service_name)
        return self


S = TypeVar("S", bound=ServiceSettings)


def settings_for(cls: type[S], service_name: str) -> S:
    """Load ``cls`` from the environment with the service's own prefix."""
    prefix = f"AKSON_{service_name.upper()}_"
    return cls(_env_prefix=prefix, service_name=service_name)
