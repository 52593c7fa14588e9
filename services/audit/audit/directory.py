"""Names for the citizen's access log, projected from master data's events.

``masterdata.practitioner.changed`` carries the practitioner's name (public register data, HPR)
and ``masterdata.organisation.changed`` the organisation's; audit keeps the latest of each
(``practitioners``: ``_id`` = HPR number; ``organisations``: ``_id`` = organisation number) and
resolves a page of the access log with one lookup per collection. The decision log itself is
never changed: names are resolved when read, so a renamed organisation shows its current name.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymongo.asynchronous.collection import AsyncCollection

from akson_common.db import Document
from akson_common.projections import DirectoryProjections


class Directory(DirectoryProjections):
    async def practitioner_names(self, hpr_numbers: Iterable[str | None]) -> dict[str, str]:
        return await _names(self.practitioners, hpr_numbers)

    async def organisation_names(self, org_numbers: Iterable[str | None]) -> dict[str, str]:
        return await _names(self.organisations, org_numbers)


async def _names(
    collection: AsyncCollection[Document], keys: Iterable[str | None]
) -> dict[str, str]:
    wanted = sorted({k for k in keys if k})
    if not wanted:
        return {}
    cursor = collection.find({"_id": {"$in": wanted}}, {"name": 1})
    return {str(d["_id"]): str(d["name"]) async for d in cursor if d.get("name")}
