"""Work beside the routes: a loop runs once started and is cancelled, awaited, by stop."""

from __future__ import annotations

import asyncio

from akson_common.background import Loop


async def test_a_loop_runs_until_stopped() -> None:
    ticks: list[int] = []
    stopped = asyncio.Event()

    async def run() -> None:
        try:
            while True:
                ticks.append(len(ticks))
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    loop = Loop(run, name="ticker")
    await loop.stop()  # not started: nothing to stop
    loop.start()
    await asyncio.sleep(0.05)
    await loop.stop()
    assert stopped.is_set(), "stop returned before the loop ended"
    seen = len(ticks)
    assert seen >= 2
    await asyncio.sleep(0.03)
    assert len(ticks) == seen, "the loop went on after stop"


async def test_its_task_carries_its_name() -> None:
    names: list[str] = []

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        names.append(task.get_name())
        await asyncio.Event().wait()

    loop = Loop(run, name="journal-retries")
    loop.start()
    await asyncio.sleep(0.01)
    await loop.stop()
    assert names == ["journal-retries"]
