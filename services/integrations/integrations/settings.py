"""Integrations' own settings (AKSON_INTEGRATIONS_*), next to the ones every service has."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from akson_common.settings import ServiceSettings


class IntegrationsSettings(ServiceSettings):
    """``AKSON_INTEGRATIONS_*``. Mappings are JSON in the environment."""

    # the calendar day of a visit or usage is taken in this time zone
    timezone: str = "Europe/Oslo"
    # unit (org number) -> cost centre; a unit without an entry is its own cost centre
    cost_centres: dict[str, str] = Field(default_factory=dict)
    # item code -> accumulated quantity at which a replenishment order is placed
    order_thresholds: dict[str, float] = Field(default_factory=dict)
    default_order_threshold: float = Field(default=10.0, gt=0)
    # continuous: export pending lines at once; after_day_end: a day's lines only once the day
    # (in ``timezone``) has ended, so each unit gets one file per day
    payroll_export: Literal["continuous", "after_day_end"] = "continuous"
    export_interval_seconds: float = Field(default=2.0, gt=0)
    export_batch_size: int = Field(default=500, ge=1, le=5000)
    export_binding: str = "exports"
    export_policy_package: str = "akson.export"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone: refuse to start rather than fail per event
        return value
