"""The Redis Streams trimmer: keeps the pub/sub streams bounded without dropping an unread event.

Dapr's ``maxLenApprox`` trims by length whether or not a consumer group has read the entries, so
an import larger than the cap lost events silently. Instead the runner trims here, every few
seconds: a stream longer than ``cap`` loses the entries that EVERY consumer group has been
delivered and has acknowledged (``XTRIM MINID`` at the oldest entry still pending in some group,
or the first one after a group's ``last-delivered-id``). An entry that some group has not read,
or has read but not acknowledged, is never trimmed, however long the stream grows. A stream
without any consumer group (a dead-letter topic, a topic nobody subscribes to) is capped by
length as Dapr did: no consumer can lose anything there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis

log = logging.getLogger("akson.streams")

DEFAULT_CAP = 100_000
TRIM_INTERVAL_SECONDS = 5.0


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _after(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (``<ms>-<seq>``)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def oldest_needed(client: redis.Redis, stream: str) -> str | None:
    """The id of the oldest entry some consumer group still needs (pending or not yet
    delivered), or None when the stream has no consumer group."""
    needed: list[str] = []
    for group in client.xinfo_groups(stream):
        name = _as_text(group["name"])
        pending = client.xpending(stream, name)
        if pending and int(pending.get("pending") or 0) > 0:
            needed.append(_as_text(pending["min"]))
        else:
            needed.append(_after(_as_text(group["last-delivered-id"])))
    return min(needed, key=_id_key) if needed else None


def trim_stream(client: redis.Redis, stream: str, cap: int) -> int:
    """Trim one stream (see the module docstring); how many entries went."""
    if int(client.xlen(stream)) <= cap:
        return 0
    needed = oldest_needed(client, stream)
    if needed is None:
        return int(client.xtrim(stream, maxlen=cap, approximate=False))
    return int(client.xtrim(stream, minid=needed, approximate=False))


def streams(client: redis.Redis) -> list[str]:
    return [_as_text(key) for key in client.scan_iter(_type="STREAM")]


def trim_all(client: redis.Redis, cap: int, only: Iterable[str] | None = None) -> dict[str, int]:
    """Trim every stream (or those in ``only``); entries removed per stream."""
    removed: dict[str, int] = {}
    for stream in list(only) if only is not None else streams(client):
        count = trim_stream(client, stream, cap)
        if count:
            removed[stream] = count
    return removed


class StreamTrimmer:
    """:func:`trim_all` every ``interval`` seconds from a thread, until stopped."""

    def __init__(
        self,
        address: str,
        password: str,
        cap: int = DEFAULT_CAP,
        interval: float = TRIM_INTERVAL_SECONDS,
        only: Iterable[str] | None = None,
    ) -> None:
        host, port = address.rsplit(":", 1)
        self.client = redis.Redis(host=host, port=int(port), password=password)
        self.cap = cap
        self.interval = interval
        self.only = list(only) if only is not None else None
        self.removed = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="akson-stream-trimmer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30.0)
        self.client.close()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                removed = trim_all(self.client, self.cap, self.only)
            except redis.RedisError as error:  # redis restarting: the next round tries again
                log.warning("stream trim failed: %s", type(error).__name__)
                continue
            if removed:
                self.removed += sum(removed.values())
                log.info("streams trimmed: %s", removed)
