"""The auditor's per-day chart: decisions per day split into allowed, refused and emergency
(allowed by break-glass), drawn as a server-rendered SVG (no chart script, nothing inline that
the Content-Security-Policy would have to allow)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERIES = ("allowed", "refused", "emergency")
COLOURS = {"allowed": "#1e6b34", "refused": "#a11d1d", "emergency": "#8a4b00"}


@dataclass(frozen=True)
class Day:
    day: str
    allowed: int = 0
    refused: int = 0
    emergency: int = 0

    @property
    def total(self) -> int:
        return self.allowed + self.refused + self.emergency


def outcome(decision: Mapping[str, Any]) -> str:
    """``emergency`` for an access allowed by break-glass, else ``allowed`` or ``refused``."""
    if decision.get("allow") is not True:
        return "refused"
    reasons = decision.get("reasons") or []
    if decision.get("emergency_reason") or "emergency" in reasons:
        return "emergency"
    return "allowed"


def per_day(decisions: Iterable[Mapping[str, Any]]) -> list[Day]:
    """Counts per UTC day (the first 10 characters of the ISO time), oldest day first."""
    counts: dict[str, dict[str, int]] = {}
    for decision in decisions:
        at = str(decision.get("at") or "")[:10]
        if len(at) != 10:
            continue
        day = counts.setdefault(at, dict.fromkeys(SERIES, 0))
        day[outcome(decision)] += 1
    return [Day(day, **values) for day, values in sorted(counts.items())]


@dataclass(frozen=True)
class Bar:
    day: str
    series: str
    value: int
    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[str, float]]  # day, x of its label's centre
    peak: int


def draw(days: list[Day], *, width: int = 720, height: int = 220) -> Chart:
    """Grouped bars, one group per day, heights scaled to the busiest series of any day."""
    peak = max((getattr(d, s) for d in days for s in SERIES), default=0)
    plot_top, plot_bottom = 10.0, height - 30.0
    group = width / max(len(days), 1)
    bar_width = min(group / (len(SERIES) + 1), 40.0)
    bars: list[Bar] = []
    labels: list[tuple[str, float]] = []
    for index, day in enumerate(days):
        left = index * group + (group - bar_width * len(SERIES)) / 2
        labels.append((day.day, index * group + group / 2))
        for offset, series in enumerate(SERIES):
            value = getattr(day, series)
            scaled = (plot_bottom - plot_top) * value / peak if peak else 0.0
            bars.append(
                Bar(
                    day.day,
                    series,
                    value,
                    round(left + offset * bar_width, 1),
                    round(plot_bottom - scaled, 1),
                    round(bar_width - 2, 1),
                    round(scaled, 1),
                    COLOURS[series],
                )
            )
    return Chart(width, height, bars, labels, peak)
