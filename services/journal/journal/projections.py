"""Local read models of other services' facts, kept from their events.

Access decisions are made from these: the patient's active care relations come from master
data's events, never from a call to master data at decision time. The master-data part is
shared with every service that decides access (``akson_common.projections``).
"""

from __future__ import annotations

from akson_common.projections import MasterDataProjections


class Projections(MasterDataProjections):
    """The journal's read models: master data's patients and care relations."""
