"""`make chaos`: kill anything, lose nothing (issue 16). A fault suite with figures.

Starts its own stack (the runner's supervised ``Stack``, in this process, in ``.run/chaos-*``),
seeds a few GPs, patients and documents, then runs each scenario against the real processes —
kill -9 by pid, SIGSTOP/SIGCONT, restart — under real traffic (locust users in a process of
their own: ``chaos_traffic.py``), counts in PostgreSQL and Redis, prints one table and writes it
to ``loadtests/CHAOS.md``. Exit status 1 when a check failed.

    make chaos [ARGS="--only opa,redis --scale 0.1 --keep"]

Scenarios (``--only`` takes their names):

- ``consumer``: a consumer app killed 3x, then its sidecar 3x, each during a stream of 10,000
  events (``journal.visit.completed`` to payroll): every event's effect once (visits and
  timesheet entries counted, hours summed), caught up within 60 s of the last restart.
- ``redis``: Redis killed -9 mid-stream, later stopped (SIGSTOP) for 30 s: every acknowledged
  publish delivered (its effect counted).
- ``outbox``: master data's app killed -9 between its database commit and its publish, 200x
  (its sidecar held with SIGSTOP so the publish cannot finish): every acknowledged change's
  event delivered (each consumer's projection has it, once).
- ``database``: PostgreSQL killed -9 (down 5 s), then FerretDB killed -9 (down 5 s), under
  write load: every acknowledged write stored, the apps never restarted, readiness red and
  green again.
- ``opa``: OPA killed -9 and kept down under read load: every answer meanwhile 503 with no data,
  200 again after it is back, no app restarted.
- ``audit``: audit's app down for 10 minutes while 100,000 decisions are made: every decision
  stored in the chain or reported as a gap, and no gap left open once audit is back.
- ``poison``: 1 % poison messages in five alternating streams of 5,000 (clean, poison, ...) at
  50/s: each dead-lettered with its reason (a payload that fails its schema at once: it never
  becomes valid by retrying; a handler that raises gets bounded retries, ``test_events.py``), the
  good ones' pooled p99 latency within +20 % of the clean streams'.
- ``pool``: 200 concurrent updates against one service: all answered (no 5xx), FerretDB's
  PostgreSQL connections below its pool's size.
- ``readonly``: one service's data refused to writes (its tables read-only, as a full or
  read-only disk does): writes answered 503, reads still served, nothing acknowledged lost, and
  writes accepted again once the data is writable.

``--scale`` multiplies every count and duration (0.1 for a quick look; the table says the scale).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT), str(ROOT / "loadtests")]

from fixtures import Tokens, seed  # noqa: E402
from stack import Stack  # noqa: E402

from akson_common.events import VISIT_COMPLETED, VisitCompletedV1, cloud_event  # noqa: E402
from tests.support import Postgres, run_secret, system_token  # noqa: E402

REPORT = ROOT / "loadtests" / "CHAOS.md"
# what only a document in a body shows: a refusal that holds one of these leaked data
LEAKS = ['"attachment"', "Patient/"]
PAYROLL_DB = "akson_integrations"
POISON_RATE = 50.0  # events/s of the poison scenario's streams
POISON_BATCH = 10  # events a publish: a batch goes out every 0.2 s
POISON_STREAM = 5_000  # events a stream (five streams: 100 poison messages in all)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)  # noqa: T201


@dataclass
class Check:
    scenario: str
    name: str
    ok: bool
    figures: str


@dataclass
class Traffic:
    """A running locust process's answers: counted while it runs, all of them afterwards."""

    out: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    def count(self) -> int:
        try:
            with self.out.open("rb") as lines:
                return sum(1 for _ in lines)
        except OSError:
            return 0


@dataclass
class Chaos:
    """The stack under test and what the scenarios share."""

    stack: Stack
    scale: float
    work: Path
    tokens: Tokens
    plan: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    postgres: Postgres = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = Postgres(self.stack.endpoints)

    @property
    def endpoints(self) -> dict[str, Any]:
        return self.stack.endpoints

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def n(self, count: float) -> int:
        return max(1, int(count * self.scale))

    def check(self, scenario: str, name: str, ok: bool, figures: str) -> None:
        self.checks.append(Check(scenario, name, ok, figures))
        log(f"[{scenario}] {'PASS' if ok else 'FAIL'} {name}: {figures}")

    # -- the processes ---------------------------------------------------------------------

    def pid(self, name: str) -> int:
        popen = self.stack.processes[name].popen
        assert popen is not None and popen.poll() is None, f"{name} is not running"
        return popen.pid

    def restarts(self) -> dict[str, int]:
        return {name: p.restarts for name, p in self.stack.processes.items()}

    def kill(self, name: str) -> None:
        """kill -9 of the process (its supervisor restarts it)."""
        os.kill(self.pid(name), signal.SIGKILL)

    def wait_running(self, name: str, timeout: float = 120.0) -> float:
        """Seconds until ``name`` is running (restarted and healthy) again."""
        started = time.monotonic()
        process = self.stack.processes[name]
        while time.monotonic() - started < timeout:
            popen = process.popen
            if process.state == "running" and popen is not None and popen.poll() is None:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"{name} not running again after {timeout:.0f} s")

    def kill_and_wait(self, name: str) -> float:
        """kill -9, then the seconds until the supervisor has it running again."""
        before = self.stack.processes[name].restarts
        self.kill(name)
        deadline = time.monotonic() + 60
        while self.stack.processes[name].restarts == before and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.wait_running(name)

    @contextmanager
    def killed(self, name: str) -> Iterator[None]:
        """kill -9 and kept down (unsupervised) for the block, then started again."""
        process = self.stack.processes[name]
        with self.stack.lock:
            process.supervised = False
            os.kill(self.pid(name), signal.SIGKILL)
        assert process.popen is not None
        process.popen.wait(timeout=30)
        process.state = "stopped"
        try:
            yield
        finally:
            self.stack.start(name, timeout=120)

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """SIGSTOP (the process hangs: it holds its connections, answers nothing) for the
        block, then SIGCONT."""
        pid = self.pid(name)
        with self.stack.lock:
            self.stack.processes[name].supervised = False
            os.killpg(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(pid, signal.SIGCONT)
            with self.stack.lock:
                self.stack.processes[name].supervised = True

    def ready(self, service: str) -> int:
        try:
            return httpx.get(f"{self.url(service)}/readyz", timeout=2.0).status_code
        except httpx.HTTPError:
            return 0

    # -- traffic (locust in chaos_traffic.py) ----------------------------------------------

    @contextmanager
    def traffic(self, kind: str, users: int, rate: float | None = None) -> Iterator[Traffic]:
        """Locust users for the block; ``records`` holds every answer afterwards."""
        name = f"{kind}-{uuid.uuid4().hex[:6]}"
        plan_file, out, stop = (self.work / f"{name}.{ext}" for ext in ("plan", "jsonl", "stop"))
        plan_file.write_text(json.dumps(self.plan))
        argv = [
            sys.executable, str(ROOT / "loadtests" / "chaos_traffic.py"), "--plan", str(plan_file),
            "--out", str(out), "--stop-file", str(stop), "--users", str(users), "--kind", kind,
        ] + (["--rate", str(rate)] if rate else [])  # fmt: skip
        with (self.work / f"{name}.log").open("ab") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
        traffic = Traffic(out)
        try:
            deadline = time.monotonic() + 300
            while b"traffic started" not in (self.work / f"{name}.log").read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"traffic did not start: {self.work / f'{name}.log'}")
                time.sleep(0.2)
            yield traffic
        finally:
            stop.touch()
            process.wait(timeout=120)
            if out.exists():
                traffic.records.extend(json.loads(line) for line in out.read_text().splitlines())

    # -- events (published through a sidecar, as the service would) --------------------------

    def publish(self, via: str, topic: str, events: list[dict[str, Any]]) -> set[str]:
        """Dapr's bulk publish through ``via``'s sidecar; the ids of the acknowledged events
        (an entry the sidecar reports failed, or a request that failed, is not)."""
        sidecar = self.endpoints["services"][via]["dapr_http"]
        entries = [
            {"entryId": e["id"], "event": e, "contentType": "application/cloudevents+json"}
            for e in events
        ]
        try:
            answer = httpx.post(
                f"{sidecar}/v1.0-alpha1/publish/bulk/pubsub/{topic}",
                json=entries,
                headers={"dapr-api-token": run_secret(self.endpoints, "dapr_api_token")},
                timeout=15.0,
            )
        except httpx.HTTPError:
            return set()
        if answer.status_code == 204:
            return {e["id"] for e in events}
        try:
            failed = {f["entryId"] for f in answer.json().get("failedEntries", [])}
        except ValueError:
            return set()
        return {e["id"] for e in events} - failed if answer.status_code == 500 else set()

    def visits(self, tag: str, count: int, *, poison_every: int = 0) -> list[dict[str, Any]]:
        """``count`` completed visits (one hour each) tagged ``tag``; every ``poison_every``-th
        one (when set) a poison message: its payload not a visit."""
        start = datetime(2026, 11, 2, 8, tzinfo=UTC)
        events = []
        for i in range(count):
            visit = VisitCompletedV1(
                encounter_id=f"chaos-{tag}-{i}",
                version=1,
                performer="9100001",
                unit="chaos-unit",
                visit_type="home-visit",
                start=start + timedelta(minutes=i),
                end=start + timedelta(minutes=i, hours=1),
            )
            event = cloud_event(VISIT_COMPLETED, visit, source="journal", subject=f"visit-{i}")
            if poison_every and i % poison_every == poison_every - 1:
                event["data"] = {"encounter_id": f"chaos-{tag}-{i}", "poison": True}
            events.append(event)
        return events

    def stream(
        self,
        via: str,
        events: list[dict[str, Any]],
        rate: float,
        on_progress: Callable[[int], None],
        *,
        batch: int = 50,
        sent: dict[str, float] | None = None,
    ) -> set[str]:
        """Publish ``events`` at about ``rate`` a second in batches of ``batch``, retrying a
        batch's failed entries for a while (a producer would); returns the acknowledged ids.
        ``sent`` (when given) gets each event's first publish time (epoch seconds), taken just
        before its batch goes out."""
        acknowledged: set[str] = set()
        started = time.monotonic()
        for offset in range(0, len(events), batch):
            chunk = events[offset : offset + batch]
            if sent is not None:
                now = time.time()
                for event in chunk:
                    sent.setdefault(event["id"], now)
            todo = chunk
            deadline = time.monotonic() + 120
            while todo and time.monotonic() < deadline:
                done = self.publish(via, VISIT_COMPLETED.name, todo)
                acknowledged |= done
                todo = [e for e in todo if e["id"] not in done]
                if todo:
                    time.sleep(0.5)
            on_progress(offset + len(chunk))
            ahead = started + (offset + len(chunk)) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        return acknowledged

    def payroll_counts(self, tag: str) -> tuple[int, int, int, float]:
        """(visits, timesheet entries, distinct visits among the entries, hours) for ``tag``."""
        visits = self.postgres.table_or_none(PAYROLL_DB, "visits")
        entries = self.postgres.table_or_none(PAYROLL_DB, "timesheet_entries")
        if visits is None or entries is None:
            return 0, 0, 0, 0.0
        like = f"LIKE 'chaos-{tag}-%'"
        row = self.postgres.query(
            f"SELECT (SELECT count(*) FROM {visits} WHERE _jsonb->>'_id' {like}),"
            f" count(*), count(DISTINCT _jsonb->>'encounter_id'),"
            f" coalesce(sum((_jsonb->>'hours')::float), 0)"
            f" FROM {entries} WHERE _jsonb->>'encounter_id' {like}"
        )[0]
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    def wait_payroll(
        self, tag: str, expected: int, timeout: float
    ) -> tuple[float, tuple[Any, ...]]:
        """Seconds until payroll holds ``expected`` visits of ``tag`` (or the timeout)."""
        started = time.monotonic()
        counts: tuple[Any, ...] = (0, 0, 0, 0.0)
        logged = started
        while time.monotonic() - started < timeout:
            counts = self.payroll_counts(tag)
            if counts[0] >= expected and counts[1] >= expected:
                break
            if time.monotonic() - logged > 5:
                log(f"  payroll has {counts[0]} of {expected} visits; pending {self.pending()}")
                logged = time.monotonic()
            time.sleep(1.0)
        return time.monotonic() - started, counts

    def pending(self, topic: str = VISIT_COMPLETED.name) -> dict[str, Any]:
        """Per consumer group of ``topic``: its pending entries by consumer."""
        client = self.redis()
        try:
            out: dict[str, Any] = {}
            for group in client.xinfo_groups(topic):
                entries = client.xpending_range(topic, group["name"], "-", "+", 1000)
                idles = sorted(e["time_since_delivered"] for e in entries)
                deliveries = sorted(e["times_delivered"] for e in entries)
                out[group["name"].decode()] = (
                    f"{len(entries)} pending, idle ms {idles[:1]}..{idles[-1:]}, "
                    f"deliveries {deliveries[:1]}..{deliveries[-1:]}"
                )
            return out
        except redis.RedisError as error:
            return {"error": str(error)}
        finally:
            client.close()

    def redis(self) -> redis.Redis:
        host, port = self.endpoints["redis"]["address"].rsplit(":", 1)
        return redis.Redis(
            host=host, port=int(port), password=run_secret(self.endpoints, "redis_password")
        )


# -- the scenarios -------------------------------------------------------------------------


def consumer(chaos: Chaos) -> None:
    """A consumer app killed 3x, then its sidecar 3x, each during a stream of 10,000 events."""
    count = chaos.n(10_000)
    for victim in ("integrations-app", "integrations-dapr"):
        tag = f"c{uuid.uuid4().hex[:6]}"
        events = chaos.visits(tag, count)
        kills = [count * k // 4 for k in (1, 2, 3)]
        restarted: list[float] = []

        def progress(
            published: int,
            victim: str = victim,
            kills: list[int] = kills,
            restarted: list[float] = restarted,
        ) -> None:
            if kills and published >= kills[0]:
                kills.pop(0)
                restarted.append(chaos.kill_and_wait(victim))

        before = chaos.restarts()
        acknowledged = chaos.stream("journal", events, rate=250.0, on_progress=progress)
        back_at = time.monotonic()
        took, (visits, entries, distinct, hours) = chaos.wait_payroll(tag, len(acknowledged), 600)
        scenario = f"consumer ({victim} killed 3x)"
        chaos.check(
            scenario,
            "every acknowledged event applied, none twice",
            visits == entries == distinct == len(acknowledged) == count
            and abs(hours - count) < 1e-6,
            f"{count} published, {len(acknowledged)} acknowledged; {visits} visits, {entries} "
            f"timesheet entries ({distinct} distinct visits), {hours:.0f} hours (expected "
            f"{count}); restarts {chaos.restarts()[victim] - before[victim]}, back in "
            + ", ".join(f"{s:.1f}" for s in restarted)
            + " s",
        )
        chaos.check(
            scenario,
            "caught up < 60 s after the stream's end",
            took < 60.0 and visits == count,
            f"{took:.1f} s after the last publish ({time.monotonic() - back_at:.1f} s wall)",
        )


def redis_restart(chaos: Chaos) -> None:
    """Redis killed -9 mid-stream, then stopped for 30 s mid-stream."""
    count = chaos.n(10_000)
    for fault in ("killed -9", "stopped 30 s"):
        tag = f"r{uuid.uuid4().hex[:6]}"
        events = chaos.visits(tag, count)
        at = [count // 2]
        outage: list[float] = []

        def progress(
            published: int, fault: str = fault, at: list[int] = at, outage: list[float] = outage
        ) -> None:
            if at and published >= at[0]:
                at.pop()
                if fault == "killed -9":
                    outage.append(chaos.kill_and_wait("redis"))
                else:
                    seconds = 30.0 * chaos.scale
                    pause = threading.Thread(target=_pause_redis, args=(chaos, seconds))
                    pause.start()
                    outage.append(30.0 * chaos.scale)

        acknowledged = chaos.stream("journal", events, rate=250.0, on_progress=progress)
        took, (visits, entries, distinct, _) = chaos.wait_payroll(tag, len(acknowledged), 600)
        chaos.check(
            f"redis ({fault} mid-stream)",
            "every acknowledged publish delivered",
            len(acknowledged) > 0 and visits == entries == distinct == len(acknowledged),
            f"{count} published, {len(acknowledged)} acknowledged, {visits} applied "
            f"({entries} entries); Redis away {sum(outage):.1f} s; caught up {took:.1f} s after "
            "the stream's end",
        )


def _pause_redis(chaos: Chaos, seconds: float) -> None:
    with chaos.paused("redis"):
        time.sleep(seconds)


def _answered(records: list[dict[str, Any]], since: float, until: float) -> list[dict[str, Any]]:
    return [r for r in records if since <= r["t"] < until]


def _statuses(records: list[dict[str, Any]]) -> str:
    counts: dict[int, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n}x {status}" for status, n in sorted(counts.items())) or "none"


def opa_down(chaos: Chaos) -> None:
    """OPA killed -9 and kept down under read load, then started again."""
    before = chaos.restarts()
    down_seconds = max(10.0, 30.0 * chaos.scale)
    with chaos.traffic("read", users=8) as traffic:
        time.sleep(5.0)
        killed = time.time()
        with chaos.killed("opa"):
            time.sleep(down_seconds)
            restarted = time.time()
        back = time.time()
        time.sleep(10.0)
    records = traffic.records
    # answers that ended within the outage (a second's grace for reads decided just before)
    during = _answered(records, killed + 1.0, restarted)
    refused = [r for r in during if r["status"] == 503 and not r["leak"]]
    leaks = [r for r in records if r["leak"]]
    chaos.check(
        "opa (killed, kept down)",
        "every answer while it is down 503, no data",
        len(during) > 0 and len(refused) == len(during) and not leaks,
        f"{len(during)} answers in {restarted - killed:.0f} s down: {_statuses(during)}; "
        f"{len(leaks)} refusals holding document data (whole run)",
    )
    after = _answered(records, back, float("inf"))
    first_ok = next((r["t"] - back for r in after if r["status"] == 200), None)
    settled = _answered(records, back + 5.0, float("inf"))
    apps = {n: chaos.restarts()[n] - before[n] for n in before if n.endswith("-app")}
    chaos.check(
        "opa (killed, kept down)",
        "200 again once it is back, no app restarted",
        first_ok is not None
        and bool(settled)
        and all(r["status"] == 200 for r in settled)
        and not any(apps.values()),
        f"first 200 {first_ok if first_ok is None else round(first_ok, 1)} s after OPA was "
        f"healthy; from 5 s on: {_statuses(settled)}; app restarts {sum(apps.values())}",
    )


class Readiness(threading.Thread):
    """Samples a service's /readyz every 0.2 s: the (time, status) changes."""

    def __init__(self, chaos: Chaos, service: str) -> None:
        super().__init__(daemon=True)
        self.chaos, self.service = chaos, service
        self.changes: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            status = self.chaos.ready(self.service)
            if not self.changes or self.changes[-1][1] != status:
                self.changes.append((time.time(), status))

    def went_red_and_green(self, since: float) -> bool:
        seen = [status for at, status in self.changes if at >= since]
        return any(s != 200 for s in seen) and bool(seen) and seen[-1] == 200


def database_restart(chaos: Chaos) -> None:
    """PostgreSQL killed -9, later FerretDB killed -9, under write load."""
    before = chaos.restarts()
    readiness = Readiness(chaos, "journal")
    readiness.start()
    outages: dict[str, tuple[float, float]] = {}
    with chaos.traffic("write", users=4, rate=20.0) as traffic:
        time.sleep(5.0)
        for victim in ("postgres", "ferretdb"):
            at = time.time()
            # down for a few seconds (a restart that takes under a second is over before
            # readiness is next asked), then started again
            with chaos.killed(victim):
                time.sleep(5.0)
            outages[victim] = (at, time.time())
            time.sleep(20.0)
    readiness.stopping.set()
    readiness.join()
    records = traffic.records
    acknowledged = [r["location"].rsplit("/", 1)[-1] for r in records if r["status"] == 201]
    table = chaos.postgres.table("akson_journal", "resources")
    stored: set[str] = set()
    for start in range(0, len(acknowledged), 500):
        chunk = acknowledged[start : start + 500]
        ids = ",".join(f"'{i}'" for i in chunk if i.replace("-", "").isalnum())
        if ids:
            rows = chaos.postgres.query(
                f"SELECT _jsonb->>'_id' FROM {table} WHERE _jsonb->>'_id' IN ({ids})"
            )
            stored |= {row[0] for row in rows}
    missing = [i for i in acknowledged if i not in stored]
    failures = [r for r in records if r["status"] != 201]
    errors = [r for r in failures if r["status"] >= 500 and r["status"] != 503]
    chaos.check(
        "database (PostgreSQL, then FerretDB killed -9)",
        "every acknowledged write stored; refusals 503, never 500",
        bool(acknowledged) and not missing and not errors,
        f"{len(records)} writes: {_statuses(records)}; {len(acknowledged)} acknowledged, "
        f"{len(missing)} missing",
    )
    apps = {n: chaos.restarts()[n] - before[n] for n in before if n.endswith(("-app", "-dapr"))}
    tail = _answered(records, max(end for _, end in outages.values()) + 10.0, float("inf"))
    chaos.check(
        "database (PostgreSQL, then FerretDB killed -9)",
        "apps reconnect by themselves (writes accepted again, no restart)",
        bool(tail) and all(r["status"] == 201 for r in tail) and not any(apps.values()),
        f"from 10 s after the last outage: {_statuses(tail)}; app and sidecar restarts "
        f"{sum(apps.values())}; back in "
        + ", ".join(f"{v} {end - at:.1f} s" for v, (at, end) in outages.items()),
    )
    red_green = {v: readiness.went_red_and_green(at) for v, (at, _) in outages.items()}
    chaos.check(
        "database (PostgreSQL, then FerretDB killed -9)",
        "readiness red during each outage, green after",
        all(red_green.values()),
        "journal /readyz: "
        + " -> ".join(
            f"{status}@{at - outages['postgres'][0]:+.1f}s"
            for at, status in readiness.changes
            if at >= outages["postgres"][0] - 1
        ),  # fmt: skip
    )


def outbox(chaos: Chaos) -> None:
    """Master data's app killed -9 between its commit and its publish, 200x."""
    kills = chaos.n(200)
    tag = f"o{uuid.uuid4().hex[:6]}"
    token = system_token(chaos.endpoints, "masterdata", "Patient.write")
    base = chaos.url("masterdata")
    written: list[str] = []
    acknowledged = 0
    started = time.monotonic()
    patient_ids = iter(_fresh_patients(kills * 2))
    for kill in range(kills):
        if kill and kill % 50 == 0:
            token = system_token(chaos.endpoints, "masterdata", "Patient.write")
        with chaos.paused("masterdata-dapr"):
            for _ in range(2):
                national_id = next(patient_ids)
                written.append(national_id)
                try:
                    answer = httpx.put(
                        f"{base}/persons/{national_id}",
                        json={"national_id": national_id, "given_name": tag,
                              "family_name": "Syntetisk", "municipality": "4601"},
                        headers={"authorization": f"Bearer {token}"},
                        timeout=5.0,
                    )  # fmt: skip
                    acknowledged += answer.status_code in (200, 201)
                except httpx.HTTPError:
                    pass
            process = chaos.stack.processes["masterdata-app"]
            with chaos.stack.lock:
                process.supervised = False
                os.kill(chaos.pid("masterdata-app"), signal.SIGKILL)
            assert process.popen is not None
            process.popen.wait(timeout=30)
        chaos.stack.start("masterdata-app", timeout=120)
        if kill % 20 == 19:
            log(f"  {kill + 1} kills, {time.monotonic() - started:.0f} s")
    took = time.monotonic() - started
    committed = _tagged_persons(chaos, tag)
    deadline = time.monotonic() + 300
    consumers = ("journal", "consent", "messaging")
    effects: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        effects = {c: _applied_changes(chaos, c, committed) for c in consumers}
        if all(len(e) >= len(committed) for e in effects.values()):
            break
        time.sleep(2.0)
    once = {c: sum(1 for n in e.values() if n == 1) for c, e in effects.items()}
    chaos.check(
        f"outbox (master data killed -9 after its commit, {kills}x)",
        "every committed change's event applied once by every consumer",
        len(committed) > 0 and all(n == len(committed) for n in once.values()),
        f"{len(written)} writes, {acknowledged} acknowledged, {len(committed)} committed in "
        f"{took:.0f} s; applied exactly once: "
        + ", ".join(f"{c} {n}" for c, n in once.items())
        + "; applied more than once: "
        + ", ".join(f"{c} {sum(1 for v in e.values() if v > 1)}" for c, e in effects.items()),
    )


def _fresh_patients(count: int) -> list[str]:
    from bench_events import patient_ids

    return patient_ids(count)


def _tagged_persons(chaos: Chaos, tag: str) -> list[str]:
    table = chaos.postgres.table("akson_masterdata", "persons")
    rows = chaos.postgres.query(
        f"SELECT _jsonb->>'_id' FROM {table} WHERE _jsonb->>'given_name' = '{tag}'"
    )
    return [row[0] for row in rows]


def _applied_changes(chaos: Chaos, service: str, patients: list[str]) -> dict[str, int]:
    table = chaos.postgres.table_or_none(f"akson_{service}", "patients")
    if table is None or not patients:
        return {}
    found: dict[str, int] = {}
    for start in range(0, len(patients), 500):
        ids = ",".join(f"'{p}'" for p in patients[start : start + 500] if p.isdigit())
        rows = chaos.postgres.query(
            f"SELECT _jsonb->>'_id', _jsonb->>'applied_changes' FROM {table}"
            f" WHERE _jsonb->>'_id' IN ({ids})"
        )
        found.update({row[0]: int(row[1] or 0) for row in rows})
    return found


def pool(chaos: Chaos) -> None:
    """200 concurrent updates against one service (master data's persons)."""
    count = max(200, chaos.n(200))
    patients = _fresh_patients(count)
    token = system_token(chaos.endpoints, "masterdata", "Patient.write")
    base = chaos.url("masterdata")

    def body(national_id: str, name: str) -> dict[str, str]:
        return {"national_id": national_id, "given_name": name, "family_name": "Syntetisk",
                "municipality": "4601"}  # fmt: skip

    with httpx.Client(timeout=30.0) as http:
        for p in patients:
            http.put(f"{base}/persons/{p}", json=body(p, "First"),
                     headers={"authorization": f"Bearer {token}"}).raise_for_status()  # fmt: skip
    held: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            rows = chaos.postgres.query(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'akson_app'"
            )
            held.append(int(rows[0][0]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:

            async def update(p: str) -> int:
                try:
                    answer = await http.put(
                        f"{base}/persons/{p}", json=body(p, "Second"),
                        headers={"authorization": f"Bearer {token}"},
                    )  # fmt: skip
                except httpx.HTTPError:
                    return 0
                return answer.status_code

            return list(await asyncio.gather(*(update(p) for p in patients)))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    took = time.monotonic() - started
    sampling.set()
    sampler.join()
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    from stack import FERRETDB_POOL, SERVICE_MONGO_POOL

    peak = max(held, default=0)
    chaos.check(
        f"pool ({count} concurrent updates, master data)",
        "every update answered 200, FerretDB's connections below its pool",
        counts.get(200, 0) == count and peak < FERRETDB_POOL,
        f"{', '.join(f'{n}x {s}' for s, n in sorted(counts.items()))} in {took:.1f} s; "
        f"PostgreSQL connections of the services at most {peak} (FerretDB pool "
        f"{FERRETDB_POOL}, each service's client {SERVICE_MONGO_POOL})",
    )


def disk_full(chaos: Chaos) -> None:
    """The journal's documents on a full disk: writes refused with 503, reads served, nothing
    acknowledged lost, writes accepted again once there is room."""
    disk = chaos.work / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    shutil.chown(disk, "postgres", "postgres")
    table = chaos.postgres.table("akson_journal", "resources")
    try:
        chaos.postgres.query(f"CREATE TABLESPACE chaos_small LOCATION '{disk}'")
        chaos.postgres.query(f"ALTER TABLE {table} SET TABLESPACE chaos_small")
        filler = disk / "filler"
        # fill the disk but a few pages: the next writes cannot extend the table
        free = shutil.disk_usage(disk).free
        with filler.open("wb") as out:
            out.write(b"\0" * max(0, free - 16 * 8192))
        shutil.chown(filler, "postgres", "postgres")
        with chaos.traffic("read", users=2, rate=20.0) as reading:
            with chaos.traffic("write", users=4, rate=20.0) as writing:
                time.sleep(max(15.0, 30.0 * chaos.scale))
                freed = time.time()
                filler.unlink()
                time.sleep(15.0)
    finally:
        chaos.postgres.query(f"ALTER TABLE {table} SET TABLESPACE pg_default")
        chaos.postgres.query("DROP TABLESPACE IF EXISTS chaos_small")
        subprocess.run(["umount", str(disk)], check=False)
    reads, writes = reading.records, writing.records
    full = _answered(writes, 0, freed)
    refused = [r for r in full if r["status"] != 201]
    acknowledged = [r["location"].rsplit("/", 1)[-1] for r in writes if r["status"] == 201]
    stored = _stored_documents(chaos, acknowledged)
    chaos.check(
        "disk full (the journal's documents)",
        "writes refused with 503 (never 500), nothing acknowledged lost",
        bool(refused)
        and all(r["status"] == 503 for r in refused)
        and len(stored) == len(acknowledged),
        f"while full: {_statuses(full)}; {len(acknowledged)} acknowledged, "
        f"{len(acknowledged) - len(stored)} missing",
    )
    during = _answered(reads, 0, freed)
    after = _answered(writes, freed + 5.0, float("inf"))
    chaos.check(
        "disk full (the journal's documents)",
        "reads served while full; writes accepted again once there is room",
        bool(during)
        and all(r["status"] == 200 for r in during)
        and bool(after)
        and all(r["status"] == 201 for r in after),
        f"reads while full: {_statuses(during)}; writes from 5 s after: {_statuses(after)}",
    )


def _stored_documents(chaos: Chaos, ids: list[str]) -> set[str]:
    table = chaos.postgres.table("akson_journal", "resources")
    stored: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ",".join(f"'{i}'" for i in ids[start : start + 500] if i.replace("-", "").isalnum())
        if chunk:
            rows = chaos.postgres.query(
                f"SELECT _jsonb->>'_id' FROM {table} WHERE _jsonb->>'_id' IN ({chunk})"
            )
            stored |= {row[0] for row in rows}
    return stored


def poison(chaos: Chaos) -> None:
    """1 % poison messages in a stream: dead-lettered with the reason, the good ones' p99 within
    +20 % of a clean stream's. Against the noise of a 2-core machine the streams alternate
    (clean, poison, clean, poison, clean) and the p99s are of every good message pooled per kind;
    each message's latency runs from just before its publish to its timesheet entry."""
    count = chaos.n(POISON_STREAM)
    latencies: dict[str, list[float]] = {"clean": [], "poison": []}
    per_stream: list[str] = []
    dead = [0, 0, 0]
    for run in ("clean", "poison", "clean", "poison", "clean"):
        tag = f"p{uuid.uuid4().hex[:6]}"
        events = chaos.visits(tag, count, poison_every=100 if run == "poison" else 0)
        sent: dict[str, float] = {}
        # below what payroll applies a second (~190): the latency of a message, not of a backlog
        chaos.stream(
            "journal", events, rate=POISON_RATE, on_progress=lambda _: None,
            batch=POISON_BATCH, sent=sent,
        )  # fmt: skip
        good = count - (count // 100 if run == "poison" else 0)
        chaos.wait_payroll(tag, good, 600)
        by_encounter = {e["data"]["encounter_id"]: sent[e["id"]] for e in events}
        stream_latencies = _latencies(chaos, tag, by_encounter)
        latencies[run] += stream_latencies
        per_stream.append(f"{run} {_p99(stream_latencies):.0f}")
        if run == "poison":
            poisoned = [e["id"] for e in events if "poison" in e["data"]]
            dead = [a + b for a, b in zip(dead, _dead_letters(chaos, poisoned), strict=True)]
    chaos.check(
        "poison (1 % of a stream)",
        "every poison message dead-lettered with its reason",
        dead[0] > 0 and dead[0] == dead[1] == dead[2],
        f"{dead[0]} poison messages: {dead[1]} recorded in dead_letters with a reason, "
        f"{dead[2]} on the dead-letter topic",
    )
    clean, poisoned_p99 = _p99(latencies["clean"]), _p99(latencies["poison"])
    chaos.check(
        "poison (1 % of a stream)",
        "good messages' p99 within +20 % of a clean stream's",
        poisoned_p99 <= 1.2 * clean,
        f"p99 publish -> timesheet entry at {POISON_RATE:.0f}/s: clean {clean:.0f} ms "
        f"({len(latencies['clean'])} messages), with poison {poisoned_p99:.0f} ms "
        f"({len(latencies['poison'])}); per stream: {', '.join(per_stream)} ms",
    )


def _latencies(chaos: Chaos, tag: str, sent: dict[str, float]) -> list[float]:
    """Milliseconds from each visit's publish to its timesheet entry, for ``tag``."""
    table = chaos.postgres.table(PAYROLL_DB, "timesheet_entries")
    rows = chaos.postgres.query(
        f"SELECT _jsonb->>'encounter_id', _jsonb->'recorded_at' FROM {table}"
        f" WHERE _jsonb->>'encounter_id' LIKE 'chaos-{tag}-%'"
    )
    latencies = []
    for encounter, recorded in rows:
        value = json.loads(recorded)
        at = (value["$d"] / 1000) if isinstance(value, dict) else (
            datetime.fromisoformat(value).timestamp())  # fmt: skip
        if encounter in sent:
            latencies.append((at - sent[encounter]) * 1000)
    return latencies


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("inf")


def _dead_letters(chaos: Chaos, event_ids: list[str]) -> tuple[int, int, int]:
    """(poison messages, recorded in integrations' dead_letters with a reason, on the topic's
    dead-letter stream), waiting a while for the last ones."""
    wanted = set(event_ids)
    deadline = time.monotonic() + 60
    recorded: set[str] = set()
    streamed: set[str] = set()
    while time.monotonic() < deadline:
        table = chaos.postgres.table_or_none(PAYROLL_DB, "dead_letters")
        if table is not None:
            rows = chaos.postgres.query(
                f"SELECT _jsonb->>'event_id' FROM {table} WHERE _jsonb->>'reason' <> ''"
            )
            recorded = {row[0] for row in rows} & wanted
        client = chaos.redis()
        try:
            entries = client.xrange(f"{VISIT_COMPLETED.name}.deadletter")
        finally:
            client.close()
        streamed = set()
        for _, fields in entries or []:
            try:
                streamed.add(json.loads((fields or {})[b"data"])["id"])
            except (KeyError, ValueError, TypeError):
                continue
        streamed &= wanted
        if len(recorded) == len(streamed) == len(wanted):
            break
        time.sleep(2.0)
    return len(wanted), len(recorded), len(streamed)


def audit_down(chaos: Chaos) -> None:
    """Audit's app down for 10 minutes while 100,000 decisions are made."""
    target, minimum = chaos.n(100_000), 600.0 * chaos.scale
    with chaos.traffic("read", users=8) as traffic:
        time.sleep(2.0)
        with chaos.killed("audit-app"):
            down_at = time.monotonic()
            made = 0
            while time.monotonic() - down_at < 3 * minimum:
                made = traffic.count()
                if made >= target and time.monotonic() - down_at >= minimum:
                    break
                time.sleep(5.0)
            down_for = time.monotonic() - down_at
        time.sleep(2.0)
    records = traffic.records
    decisions = {
        d.strip() for r in records if r["decisions"] for d in r["decisions"].split(",") if d.strip()
    }
    log(f"  {len(decisions)} decisions made, audit down {down_for:.0f} s; reconciling")
    settled_at = time.monotonic() + 1200
    silent: set[str] = set(decisions)
    open_gaps: set[str] = set()
    stored: set[str] = set()
    while time.monotonic() < settled_at:
        stored = _ids(chaos, "decisions") & decisions
        gaps = _gaps(chaos)
        open_gaps = {g for g, status in gaps.items() if status == "open"} & decisions
        silent = decisions - stored - set(gaps)
        if not silent and not open_gaps:
            break
        log(f"  {len(stored)} stored, {len(open_gaps)} open gaps, {len(silent)} neither")
        time.sleep(15.0)
    chaos.check(
        "audit (down while decisions are made)",
        "no silent loss: every decision stored or reported as a gap",
        bool(decisions) and not silent,
        f"{len(decisions)} decisions in {down_for:.0f} s down; {len(stored)} stored in the "
        f"chain, {len(silent)} neither stored nor a gap",
    )
    chaos.check(
        "audit (down while decisions are made)",
        "no gap left open once audit is back",
        bool(decisions) and not open_gaps,
        f"{len(open_gaps)} open gaps among them",
    )


def _ids(chaos: Chaos, collection: str) -> set[str]:
    table = chaos.postgres.table_or_none("akson_audit", collection)
    if table is None:
        return set()
    return {row[0] for row in chaos.postgres.query(f"SELECT _jsonb->>'_id' FROM {table}")}


def _gaps(chaos: Chaos) -> dict[str, str]:
    table = chaos.postgres.table_or_none("akson_audit", "gaps")
    if table is None:
        return {}
    rows = chaos.postgres.query(f"SELECT _jsonb->>'_id', _jsonb->>'status' FROM {table}")
    return {row[0]: row[1] for row in rows}


SCENARIOS: dict[str, Callable[[Chaos], None]] = {
    "consumer": consumer,
    "redis": redis_restart,
    "outbox": outbox,
    "database": database_restart,
    "opa": opa_down,
    "audit": audit_down,
    "poison": poison,
    "pool": pool,
    "disk": disk_full,
}


# -- the run -------------------------------------------------------------------------------


INTRO = """# Fault suite (issue 16)

`make chaos` writes this file: each run's table on top (the last five kept), then what the suite
found and what was fixed. Every row is a check that can fail; the figures are counted in
PostgreSQL (rows, effects), Redis (streams, pending entries) and the answers of locust users.
"""

FINDINGS = """## What the suite found, and the fixes

- **PostgreSQL could not be restarted** (database): the runner supervised `runuser`, not the
  server; kill -9 of that pid left the postmaster running, and every restart failed on its lock
  file (`postmaster.pid already exists`) for as long as it lived. The runner now starts
  PostgreSQL as its user through `Popen(user=...)`: the pid it watches is the server's
  (`test_supervision.py`: a killed PostgreSQL is restarted and the apps reconnect).
- **Database failures answered 500** (database, disk full): a PostgreSQL or FerretDB restart,
  and a full disk, reached the apps as PyMongo errors nothing mapped. They are a 503
  problem (an OperationOutcome under /fhir) with `Retry-After: 5`, a duplicate key a 409
  (`akson_common.errors.storage_problem`, `test_storage_errors.py`).
- **A restarted sidecar's backlog came back 200 entries every 15 s** (consumer): the entries a
  killed sidecar had read but not acknowledged wait in Redis' pending list, and the Redis
  component claims at most `queueDepth` of them per look. `redeliverInterval: "5s"` was meant
  to look every 5 s, but components-contrib 1.18.3 silently ignores a duration string there
  (only milliseconds parse; dapr/docs#5324): it looked every 15 s, its default. With
  `"1000"` the backlog is claimed every second (`test_chart.py`: millisecond-only metadata).
- **kill -9 of PostgreSQL lost an acknowledged write** (database: 1 of 914): the runner ran it
  with `synchronous_commit=off`, so a commit was acknowledged before its WAL was written out.
  It is on now (`fsync` stays off: a process crash loses nothing, a power loss may); the
  setting is checked in `test_supervision.py`.
- **A 500 under read load** (opa: 1 of ~9,000 reads once OPA was back): the patient projection's
  cache asked `patient in cache` and then `cache[patient]`; an entry expiring in between raised
  `KeyError`. One lookup now (`test_projection_cache.py`: a clock that moves between calls).
- **An audit outage of ten minutes lost decision-log entries** (audit): OPA's buffer of 10 MiB
  holds ~13,000 decisions; it now holds ten minutes at the local peak (256 MiB; the chart's OPA
  memory limit 1 GiB). What OPA still drops past the cap is reported as a gap by audit.

- **A burst of 200 concurrent updates was answered 503 with OPA healthy** (pool: 12 of 200 in
  the run of 20:33, 4 of 200 again with `--only pool`): every question to OPA had 0.5 s in all,
  and half of them spent it waiting for one of the HTTP client's 100 connections, so the
  service failed closed for requests nothing was wrong with. Now at most 32 questions go to OPA
  at once, one waits at most 5 s for its turn, and the 0.5 s is the question's own
  (`akson_common.policy`; `test_policy_and_settings.py`: 200 against an engine that answers
  0.3 s late, 100 refused before, none now). `--only pool` after it: 200x 200 in 9.0 s.
- **The poison p99 was as noisy as its margin** (run 3 of 19:20 failed it): the publish time
  was the ack of a batch of 50 at 100/s. Each message is now timed from just before its publish
  (batches of 10 at 50/s) and five streams alternate (clean, poison, clean, poison, clean),
  their latencies pooled per kind.

- **After an audit outage under load the decision log stalled for good** (audit, run of
  21:40): OPA's first upload of the backlog timed out (5 s) after audit had stored part of the
  chunk; every re-sent chunk then failed "too much contention", because the store dropped one
  already-stored decision a round and gave up after 50 rounds (273 stored, 60,485 open gaps
  after 20 min). Stored decisions are now skipped as they come and only contention counts
  (`audit.store`; `test_audit.py`: 300 re-sent with 3 new).
- **The pool row failed again in the run of 21:40** (32 of 200 answered 503 in 36 s) while
  that run's audit backlog stalled and two test suites ran alongside; `--only pool` on a quiet
  machine after the OPA-queue fix: 200x 200 in 9.0 s. Since the audit fix it has not come back:
  `--only pool` with three CPU-bound loops alongside 200x 200 in 11.8 s, and the full run of
  23:35 (CI and two helpers alongside) 200x 200 in 28.0 s. The stalled audit log (OPA
  re-sending every 5 s) is the likely cause; masterdata's log of 21:40 is gone.
- **The poison p99 check is at the mercy of other jobs on the machine** (run of 23:35, CI and
  two helpers alongside, load 5-6 on 2 cores): the good messages' p99 was 2.2-4.0 s in every
  stream, clean and poison alike (a backlog, not the poison: quiet, both are ~300 ms), and rose
  with the machine's load: 2213, 2832, 2677, 3976, 3360 ms in stream order, pooled clean
  2961 ms against poison 3689 ms (+25 %). The check compares like with like only on a machine
  without other jobs; that is where it must pass twice.
- **A kill of audit mid-round left gaps open for good** (audit, run of 2026-12-02 02:31 at
  851387e on a quiet machine, stopped there; the 12 checks before it passed): 101,320
  decisions, every one stored in the chain, but 103 `logged_only` gaps never closed. The 103
  were the reads of the scenario's first two seconds, which audit had received from both sides
  just before it was killed. A reconcile round forgot their enforced side, then was killed
  before it forgot their logged side, so after the restart they were logged decisions that
  nobody had enforced, and their enforced reports were already consumed. The round now forgets
  the logged side first: a crash in between leaves the enforced side, which the next round
  completes from the chain (`test_audit_completeness.py`: every crash point of a round, then a
  clean round, raises no gap; the old order fails at the second delete).

What held without a change: dedupe (no effect twice after any kill), the outbox (every committed
change published after a kill between commit and publish), Redis' append-only file (kill -9 and
a 30 s stop lost no acknowledged publish), fail-closed reads without OPA, FerretDB's pool under
200 concurrent updates (each service's client keeps 12 connections; FerretDB's pool of 240 is
above the 216 connections the commands of all nine services can hold at once, see
`FERRETDB_POOL` in infra/local/stack.py).
"""


def write_report(chaos: Chaos, command: str, started: datetime, took: float) -> str:
    rows = [(c.scenario, c.name, "PASS" if c.ok else "FAIL", c.figures) for c in chaos.checks]
    header = ("scenario", "check", "result", "figures")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    verdict = "PASS" if chaos.checks and all(c.ok for c in chaos.checks) else "FAIL"
    run = "\n".join(
        [
            f"## Run of {started:%Y-%m-%d %H:%M} UTC: {verdict}",
            "",
            f"- command: `{command}` ({took / 60:.1f} min, scale {chaos.scale:g})",
            f"- machine: {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.2f}",
            "",
            *table,
            "",
        ]
    )
    earlier = REPORT.read_text().split("\n## ") if REPORT.exists() else []
    runs = ["## " + part.strip() + "\n" for part in earlier if part.startswith("Run of ")]
    REPORT.write_text("\n".join([INTRO, run, *runs[:4], FINDINGS]))
    return "\n".join(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the run folder afterwards")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    command = "make chaos" + (f' ARGS="{" ".join(sys.argv[1:])}"' if sys.argv[1:] else "")
    run_dir = ROOT / ".run" / f"chaos-{uuid.uuid4().hex[:8]}"
    started, began = datetime.now(UTC), time.monotonic()
    stack = Stack(run_dir=run_dir)
    log(f"stack up in {stack.up(supervise=True):.1f} s ({run_dir})")
    work = run_dir / "chaos"
    work.mkdir()
    try:
        tokens = Tokens(stack.endpoints)
        seeded = seed(stack.endpoints, tokens, gp_count=2, patient_count=20,
                      documents_per_patient=2, note_bytes=200, log=log)  # fmt: skip
        chaos = Chaos(stack, args.scale, work, tokens)
        chaos.plan = {
            "endpoints": stack.endpoints,
            "gps": [
                {"hpr_number": g.hpr_number, "unit": g.unit, "organisation": g.organisation}
                for g in seeded.gps
            ],
            "patients": {p: seeded.gps.index(g) for p, g in seeded.patients.items()},
            "documents": seeded.documents,
            "leaks": LEAKS,
        }
        system_token(stack.endpoints, "masterdata", "Patient.write")  # identity answers
        for name in chosen:
            log(f"scenario {name}")
            try:
                SCENARIOS[name](chaos)
            except Exception as error:  # a scenario that could not run is a failed check
                chaos.check(name, "ran to the end", False, f"{type(error).__name__}: {error}")
    finally:
        stack.down()
    table = write_report(chaos, command, started, time.monotonic() - began)
    print(table)  # noqa: T201
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    raise SystemExit(0 if chaos.checks and all(c.ok for c in chaos.checks) else 1)


if __name__ == "__main__":
    main()
