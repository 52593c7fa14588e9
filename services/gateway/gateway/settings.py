"""The gateway's settings: which services own FHIR types, and how long their capabilities hold."""

from __future__ import annotations

from pydantic import Field

from akson_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    # the Dapr app ids of the services serving a FHIR API; each one's /fhir/R4/metadata says
    # which types it owns (nothing here lists types)
    owners: tuple[str, ...] = ("masterdata", "consent", "journal", "messaging")
    # how long an owner's CapabilityStatement (and so the routing table) is used before it is
    # asked again
    capability_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    # the timeout of one forwarded request
    invoke_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # the base the gateway names in links and Location ("" : as the caller reached it)
    public_base: str = ""
    # entries of one batch or transaction Bundle
    max_bundle_entries: int = Field(default=100, ge=1, le=1000)
