"""``akson-audit``: the decision log from a terminal, for auditors and operators.

    akson-audit query  [--patient N] [--practitioner HPR] [--organisation O] [--municipality M]
                       [--from T] [--to T] [--outcome allow|deny] [--reason CODE] [--emergency]
                       [--count N] [--all]                    readable table, newest first
    akson-audit export [filters] [--format ndjson|csv] [-o FILE]
    akson-audit reviews [--status open|closed]                emergency-access review queue
    akson-audit review ID justified|not_justified COMMENT
    akson-audit gaps [--status open|resolved]                 decisions seen on one side only
    akson-audit signals [--day D] [--baseline-days N]         snooping signals, explained
    akson-audit verify [--api]      recompute the hash chain (from the database; --api: through
                                    the service) and name the first broken position
    akson-audit prune [--days N]    retention: drop whole checkpoint segments older than N days

API commands use ``--url`` / ``AKSON_AUDIT_URL`` and a bearer token (``--token`` /
``AKSON_TOKEN``) with the auditor role. ``verify`` and ``prune`` read the audit database
directly (``--mongo-url`` / ``AKSON_AUDIT_MONGO_URL``, ``--database``): an operator's tools.
Exit status: 0 fine, 1 the chain is broken, 2 usage or access errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO

import httpx

from akson_common.db import Database
from audit.store import DecisionStore

TABLE_COLUMNS = (
    ("position", "#"),
    ("at", "time (UTC)"),
    ("actor", "who"),
    ("profession", "prof"),
    ("organisation", "organisation"),
    ("action", "action"),
    ("resource_type", "resource"),
    ("patient", "patient"),
    ("category", "category"),
    ("allow", "outcome"),
    ("reasons", "reasons"),
)
REVIEW_COLUMNS = (
    ("id", "review"),
    ("status", "status"),
    ("accessed_at", "accessed (UTC)"),
    ("practitioner", "practitioner"),
    ("patient", "patient"),
    ("reason_code", "reason"),
    ("outcome", "outcome"),
)

GAP_COLUMNS = (
    ("decision_id", "decision"),
    ("side", "side"),
    ("service", "service"),
    ("status", "status"),
    ("detected_at", "detected (UTC)"),
    ("resolved_at", "resolved (UTC)"),
)
SIGNAL_COLUMNS = (
    ("rule", "rule"),
    ("practitioner", "practitioner"),
    ("patient", "patient"),
    ("count", "count"),
    ("explanation", "why"),
)


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"akson-audit: {message}\n")
    raise SystemExit(2)


def cell(name: str, value: Any) -> str:
    if name == "allow":
        return "allow" if value else "DENY"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if name in {"at", "accessed_at", "detected_at", "resolved_at"} and isinstance(value, str):
        return value[:19].replace("T", " ")
    return "" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    cells = [[cell(name, row.get(name)) for name, _ in columns] for row in rows]
    headers = [title for _, title in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def filters(args: argparse.Namespace) -> dict[str, str]:
    params = {
        "patient": args.patient,
        "practitioner": args.practitioner,
        "actor": args.actor,
        "organisation": args.organisation,
        "municipality": args.municipality,
        "from": args.from_,
        "to": args.to,
        "outcome": args.outcome,
        "reason": args.reason,
        "resource_type": args.resource_type,
    }
    if args.emergency:
        params["emergency"] = "true"
    return {k: v for k, v in params.items() if v}


class Api:
    def __init__(self, url: str, token: str) -> None:
        if not url or not token:
            fail("set --url/AKSON_AUDIT_URL and --token/AKSON_TOKEN")
        self.client = httpx.Client(
            base_url=url.rstrip("/"), headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.client.get(path, params=params)
        self._check(response)
        return response.json()

    def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            problem = response.json()
            detail = f"{problem.get('title')}: {problem.get('detail')} {problem.get('reasons', '')}"
        except ValueError:
            detail = response.text[:200]
        fail(f"{response.status_code} {detail}".strip())


def run_query(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, Any] | None = {**filters(args), "_count": args.count}
    rows: list[dict[str, Any]] = []
    path: str | None = "/audit/decisions"
    while path is not None:
        page = api.get(path, params)
        rows += page["items"]
        path, params = (page["next"], None) if args.all else (None, None)
    out.write(table(rows, TABLE_COLUMNS) + f"\n{len(rows)} decision(s)\n")
    return 0


def run_export(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params = {**filters(args), "format": args.format}
    target = open(args.output, "w") if args.output else out  # noqa: SIM115
    try:
        with api.client.stream("GET", "/audit/decisions/export", params=params) as response:
            if not response.is_success:
                response.read()
                api._check(response)
            for text in response.iter_text():
                target.write(text)
    finally:
        if target is not out:
            target.close()
    return 0


def run_reviews(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params = {"status": args.status} if args.status else {}
    items = api.get("/audit/reviews", params)["items"]
    out.write(table(items, REVIEW_COLUMNS) + f"\n{len(items)} review(s)\n")
    return 0


def run_review(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    response = api.client.post(
        f"/audit/reviews/{args.review_id}", json={"outcome": args.outcome, "comment": args.comment}
    )
    api._check(response)
    out.write(table([response.json()], REVIEW_COLUMNS) + "\n")
    return 0


def run_gaps(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params = {"status": args.status} if args.status else {}
    items = api.get("/audit/gaps", params)["items"]
    out.write(table(items, GAP_COLUMNS) + f"\n{len(items)} gap(s)\n")
    return 0


def run_signals(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, Any] = {"baseline_days": args.baseline_days}
    if args.day:
        params["day"] = args.day
    page = api.get("/audit/signals", params)
    items = page["items"]
    out.write(table(items, SIGNAL_COLUMNS) + f"\n{len(items)} signal(s) for {page['day']}\n")
    return 0


def run_verify(args: argparse.Namespace, out: TextIO) -> int:
    if args.api:
        result = Api(args.url, args.token).get("/audit/chain/verify")
        out.write(result["message"] + "\n")
        return 0 if result["intact"] else 1
    report = asyncio.run(_verify(args.mongo_url, args.database))
    out.write(report + "\n")
    return 0 if report.startswith("chain intact") else 1


async def _verify(mongo_url: str, database_name: str) -> str:
    database = Database(mongo_url, database_name)
    try:
        return (await DecisionStore(database).verify()).summary()
    finally:
        await database.close()


def run_prune(args: argparse.Namespace, out: TextIO) -> int:
    days = (
        args.days if args.days is not None else int(os.environ.get("AKSON_AUDIT_RETENTION_DAYS", 0))
    )
    if days <= 0:
        out.write("retention is off (AKSON_AUDIT_RETENTION_DAYS=0): nothing pruned\n")
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=days)
    deleted = asyncio.run(_prune(args.mongo_url, args.database, cutoff))
    out.write(f"pruned {deleted} decision(s) older than {cutoff:%Y-%m-%d %H:%M} UTC\n")
    return 0


async def _prune(mongo_url: str, database_name: str, cutoff: datetime) -> int:
    database = Database(mongo_url, database_name)
    try:
        return await DecisionStore(database).prune(cutoff)
    finally:
        await database.close()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="akson-audit", description="Akson decision log")
    root.add_argument("--url", default=os.environ.get("AKSON_AUDIT_URL", ""))
    root.add_argument("--token", default=os.environ.get("AKSON_TOKEN", ""))
    root.add_argument(
        "--mongo-url", default=os.environ.get("AKSON_AUDIT_MONGO_URL", "mongodb://127.0.0.1:27017/")
    )
    root.add_argument(
        "--database", default=os.environ.get("AKSON_AUDIT_MONGO_DATABASE", "akson_audit")
    )
    commands = root.add_subparsers(dest="command", required=True)

    def with_filters(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("--patient")
        command.add_argument("--practitioner", help="HPR number")
        command.add_argument("--actor", help="subject id (e.g. a system client)")
        command.add_argument("--organisation")
        command.add_argument("--municipality")
        command.add_argument("--from", dest="from_", help="ISO time, inclusive")
        command.add_argument("--to", help="ISO time, exclusive")
        command.add_argument("--outcome", choices=["allow", "deny"])
        command.add_argument("--reason", help="a reason code, e.g. care_relation")
        command.add_argument("--resource-type")
        command.add_argument("--emergency", action="store_true")
        return command

    query = with_filters(commands.add_parser("query", help="decisions as a table"))
    query.add_argument("--count", type=int, default=50)
    query.add_argument("--all", action="store_true", help="follow every page")
    export = with_filters(commands.add_parser("export", help="decisions as NDJSON or CSV"))
    export.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    export.add_argument("-o", "--output")
    reviews = commands.add_parser("reviews", help="the emergency-access review queue")
    reviews.add_argument("--status", choices=["open", "closed"])
    review = commands.add_parser("review", help="close an emergency-access review")
    review.add_argument("review_id")
    review.add_argument("outcome", choices=["justified", "not_justified"])
    review.add_argument("comment")
    gaps = commands.add_parser("gaps", help="decisions seen on one side of double recording")
    gaps.add_argument("--status", choices=["open", "resolved"])
    signals = commands.add_parser("signals", help="snooping signals with their reasons")
    signals.add_argument("--day", help="YYYY-MM-DD (default today, UTC)")
    signals.add_argument("--baseline-days", type=int, default=14)
    verify = commands.add_parser("verify", help="recompute the hash chain")
    verify.add_argument("--api", action="store_true", help="through the service, not the DB")
    prune = commands.add_parser("prune", help="apply the retention period")
    prune.add_argument("--days", type=int)
    return root


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    if args.command == "verify":
        return run_verify(args, out)
    if args.command == "prune":
        return run_prune(args, out)
    api = Api(args.url, args.token)
    commands = {
        "query": run_query,
        "export": run_export,
        "reviews": run_reviews,
        "review": run_review,
        "gaps": run_gaps,
        "signals": run_signals,
    }
    return commands[args.command](api, args, out)


if __name__ == "__main__":
    sys.exit(main())
