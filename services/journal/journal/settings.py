"""The journal's settings: the shared ones plus its own limits."""

from __future__ import annotations

from pydantic import Field

from akson_common.settings import ServiceSettings


class JournalSettings(ServiceSettings):
    # A submitted resource (JSON, attachments inline as base64) may be at most this large;
    # beyond it the answer is 413. 8 MiB holds a ~6 MiB PDF.
    max_resource_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
