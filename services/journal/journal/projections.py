"""The journal's read models: patients with their care relations and consent directives."""

from __future__ import annotations

from akson_common.db import Database
from akson_common.events import Subscriptions
from akson_common.projections import PatientProjections, access_facts, field_key

__all__ = ["Projections", "access_facts", "field_key"]


class Projections(PatientProjections):
    def __init__(
        self, database: Database, subscriptions: Subscriptions, *, cache_seconds: float = 1.0
    ) -> None:
        super().__init__(database, subscriptions, directives=True, cache_seconds=cache_seconds)
