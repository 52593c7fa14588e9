"""FerretDB's SQLite backend answers SQLITE_BUSY instead of waiting: writes are retried."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from akson_common.db import when_not_busy


async def test_a_busy_database_is_retried_until_the_write_goes_through() -> None:
    calls: list[int] = []

    async def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationFailure("database is locked (5) (SQLITE_BUSY)")
        return "written"

    assert await when_not_busy(write) == "written"
    assert len(calls) == 3


async def test_other_failures_and_endless_busy_are_raised() -> None:
    async def broken() -> None:
        raise OperationFailure("no such command")

    async def busy() -> None:
        raise OperationFailure("SQLITE_BUSY")

    with pytest.raises(OperationFailure, match="no such command"):
        await when_not_busy(broken)
    with pytest.raises(OperationFailure, match="SQLITE_BUSY"):
        await when_not_busy(busy, attempts=2)
