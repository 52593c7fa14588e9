"""Audit's own settings (AKSON_AUDIT_*), next to the ones every service has."""

from __future__ import annotations

from pydantic import Field

from akson_common.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    audit_upload_token: str = ""
    # a checkpoint (position, hash) every this many records
    checkpoint_every: int = Field(default=1000, ge=1)
    # AKSON_AUDIT_RETENTION_DAYS: decisions older than this are pruned by whole checkpoint
    # segments (`akson-audit prune`); 0 keeps everything
    retention_days: int = Field(default=0, ge=0)
    # double recording: an id seen on one side only this long after it arrived is a gap
    reconcile_grace_seconds: float = Field(default=120.0, gt=0)
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
