"""What the gateway publishes and consumes (the topics: ``akson_common.events``): it decides
nothing and stores nothing, so only the shared library's own topics."""

from __future__ import annotations

from akson_common.events import ACCOUNT_DISABLED, ServiceEvents

EVENTS = ServiceEvents(consumes=(ACCOUNT_DISABLED,))
