"""Bulk import of NDJSON: one record per line, errors reported per line, never echoed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from akson_common.guard import HostileInput, parse_json
from masterdata.models import ImportLineError, ImportReport
from masterdata.service import Register

MAX_LINES = 50_000


def parse_lines(
    register: Register[Any, Any], lines: Iterable[bytes]
) -> tuple[list[Any], ImportReport]:
    """Validate every line; return the valid records (first occurrence of each key) and a report.

    Reasons name the field and the rule, never the rejected value: it may be personal data.
    """
    report = ImportReport()
    records: list[Any] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        report.received += 1
        reason = None
        try:
            # the input guard's checks, per line: one hostile line is refused, not the file
            record = register.record.model_validate(parse_json(raw, location="line"))
        except (ValueError, UnicodeDecodeError) as error:
            reason = _reason(error)
        else:
            key = register.key(record)
            if key in seen:
                reason = "the same identifier appears on an earlier line"
            else:
                seen.add(key)
                records.append(record)
        if reason is not None:
            report.rejected += 1
            report.errors.append(ImportLineError(line=number, reason=reason))
        if report.received > MAX_LINES:
            raise ValueError(f"at most {MAX_LINES} lines per import")
    return records, report


def _reason(error: Exception) -> str:
    if isinstance(error, HostileInput):
        return f"{error.location}: {error.reason}"
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in error.errors()
        )
    return "not a JSON object"
