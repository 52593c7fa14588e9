"""The browser tests run against the same whole stack as the integration tests (its fixture)."""

from tests.integration.conftest import http, platform

__all__ = ["http", "platform"]
