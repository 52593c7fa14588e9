"""Work a service runs beside its routes: started with the app, cancelled when it stops.

A subclass gives ``_run`` (its loop) and, in ``__init__``, a ``name`` for its task; ``configure``
hands it to ``platform.beside(...)`` and the app factory starts and stops it (after the
service's own start-up, before its shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class Worker(Protocol):
    """What ``platform.beside`` takes: started with the app, stopped when it stops."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Background:
    """A :class:`Worker` that is one asyncio task running ``_run``."""

    name: str = "background"
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Loop(Background):
    """A coroutine function run as :class:`Background` (``run`` loops until cancelled)."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._loop, self.name = run, name

    async def _run(self) -> None:
        await self._loop()
