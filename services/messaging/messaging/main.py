"""The messaging service: electronic messages with actors who are not on the platform."""

from __future__ import annotations

from akson_common.settings import settings_for
from messaging.app import create_app
from messaging.settings import MessagingSettings

app = create_app(settings_for(MessagingSettings, "messaging"))
