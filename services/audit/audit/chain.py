"""The hash chain: pure functions, no database.

Every stored decision has a gap-free ``position`` (1, 2, 3, ...) and
``hash = sha256(canonical JSON of {"position", "previous", "record"})`` where ``previous`` is
the hash of the record at ``position - 1`` (:data:`GENESIS` before the first). Changing,
removing or moving any record breaks the chain at that record's position; :func:`verify` walks
it and names the first position where it breaks.

Canonical JSON: keys sorted, no insignificant whitespace, UTF-8, no NaN. The record is plain
JSON (strings, numbers, booleans, lists, objects) so it reads back from the database unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

GENESIS = "0" * 64

Problem = Literal["altered", "deleted", "reordered", "checkpoint", "truncated"]


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(position: int, previous: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        canonical({"position": position, "previous": previous, "record": record})
    ).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last link: position 0 and :data:`GENESIS` for an empty chain."""

    position: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class Link:
    position: int
    previous_hash: str
    hash: str
    record: dict[str, Any]


def extend(head: Head, records: Sequence[dict[str, Any]]) -> list[Link]:
    """Chain ``records`` after ``head``, in order."""
    links: list[Link] = []
    previous, position = head.hash, head.position
    for record in records:
        position += 1
        digest = chain_hash(position, previous, record)
        links.append(Link(position, previous, digest, record))
        previous = digest
    return links


@dataclass(frozen=True)
class Finding:
    position: int
    problem: Problem
    message: str


@dataclass
class Report:
    """What :func:`verify` found: ``finding`` is None when the chain is intact."""

    start: int
    checked: int = 0
    last_position: int = 0
    checkpoints_checked: int = 0
    finding: Finding | None = None

    @property
    def intact(self) -> bool:
        return self.finding is None

    def summary(self) -> str:
        if self.finding is None:
            return (
                f"chain intact: {self.checked} records (positions {self.start}.."
                f"{self.last_position}), {self.checkpoints_checked} checkpoints agree"
            )
        return f"chain BROKEN at position {self.finding.position}: {self.finding.message}"


@dataclass(frozen=True)
class StoredLink:
    """A stored record as :func:`verify` reads it; ``fields`` are its extracted query fields."""

    position: int
    previous_hash: str
    hash: str
    record: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)


async def in_position_order(
    links: AsyncIterable[StoredLink], start: int
) -> AsyncIterator[StoredLink]:
    """Links read in storage order, yielded by ascending position from ``start``.

    Storage order is nearly always insertion order, so the buffer of early arrivals stays
    small and no sort of the whole collection is needed (FerretDB v1 sorts in memory). Whatever
    is left when the input ends (after a gap) comes out sorted, so :func:`verify` sees the gap.
    """
    waiting: dict[int, StoredLink] = {}
    expected = start
    async for link in links:
        if link.position < expected or link.position in waiting:
            yield link  # a second record claiming a position: let verify report it
            continue
        waiting[link.position] = link
        while expected in waiting:
            yield waiting.pop(expected)
            expected += 1
    for position in sorted(waiting):
        yield waiting[position]


async def verify(
    links: AsyncIterable[StoredLink],
    *,
    anchor: Head = Head(),
    head: Head | None = None,
    checkpoints: Mapping[int, str] | None = None,
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Report:
    """Walk ``links`` (ascending position) from ``anchor`` and report the first break.

    - a missing position (a gap) means records were **deleted**;
    - a record whose stored ``previous_hash`` is not its predecessor's hash was **reordered**
      (moved, or its predecessor replaced);
    - a record whose own hash does not match, or whose query fields differ from what its
      record yields (``derive``), was **altered**;
    - a checkpoint that disagrees with the recomputed chain means the chain was rewritten;
    - fewer records than the chain head says means the newest were **deleted**.
    """
    checkpoints = checkpoints or {}
    report = Report(start=anchor.position + 1, last_position=anchor.position)
    expected, previous = anchor.position + 1, anchor.hash
    async for link in links:
        recomputed = chain_hash(link.position, previous, link.record)
        checkpoint = checkpoints.get(link.position)
        report.finding = _broken_link(link, expected, previous, recomputed, derive) or (
            _broken_checkpoint(link.position, checkpoint, recomputed)
        )
        if report.finding is not None:
            return report
        if checkpoint is not None:
            report.checkpoints_checked += 1
        previous = recomputed
        report.checked += 1
        report.last_position = link.position
        expected += 1
    report.finding = _broken_head(head, report.last_position, previous)
    return report


def _broken_link(
    link: StoredLink,
    expected: int,
    previous: str,
    recomputed: str,
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> Finding | None:
    """What is wrong with ``link`` where position ``expected`` after ``previous`` should be."""
    if link.position < expected:
        return Finding(link.position, "reordered", "two records claim this position")
    if link.position > expected:
        missing = (
            f"position {expected}"
            if link.position == expected + 1
            else f"positions {expected}..{link.position - 1}"
        )
        return Finding(expected, "deleted", f"{missing} missing: records were deleted (a gap)")
    if link.previous_hash != previous:
        return Finding(
            link.position,
            "reordered",
            "the record is not chained to the record before it: records were moved, or the "
            "one before it was replaced",
        )
    if recomputed != link.hash:
        return Finding(link.position, "altered", "the record's content does not match its hash")
    if derive is not None:
        derived = derive(link.record)
        changed = sorted(k for k, v in derived.items() if link.fields.get(k) != v)
        if changed:
            return Finding(
                link.position,
                "altered",
                f"query field(s) {', '.join(changed)} differ from the hashed record",
            )
    return None


def _broken_checkpoint(position: int, checkpoint: str | None, recomputed: str) -> Finding | None:
    if checkpoint is not None and checkpoint != recomputed:
        return Finding(
            position,
            "checkpoint",
            "the checkpoint disagrees with the chain: it was rewritten up to here",
        )
    return None


def _broken_head(head: Head | None, last_position: int, last_hash: str) -> Finding | None:
    """The chain head against the last record walked: newest records deleted, or altered."""
    if head is not None and head.position > last_position:
        return Finding(
            last_position + 1,
            "truncated",
            f"the chain head is at position {head.position} but the records end at "
            f"{last_position}: the newest records were deleted",
        )
    if head is not None and head.position == last_position and head.hash != last_hash:
        return Finding(
            head.position, "altered", "the chain head's hash does not match the last record"
        )
    return None
