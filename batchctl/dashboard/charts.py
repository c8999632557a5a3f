"""The dashboard's charts as inline SVG, drawn from numbers and fixed class names only.

Sizes are computed here, not in CSS ``style`` attributes (the Content-Security-Policy forbids
those); colours come from dashboard.css by class (``o-<outcome>``, ``m-started``, ...), so an
outcome has one colour everywhere. A chart's size never depends on its data, so an update never
makes the page jump.

Text is never scaled: the bars (progress_bar, share_bar) are rectangles only and stretch to
their box (preserveAspectRatio none), their labels are HTML beside them; the per-minute chart
has no viewBox, so its user unit is the CSS pixel: heights and text are in pixels, horizontal
positions in percent of the chart's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

from batchctl.dashboard.models import OUTCOMES, Counts, MinuteCount

OUTCOME_LABELS = {
    "completed": "Completed",
    "declined": "Declined",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "in_progress": "In progress",
    "queued": "Queued",
}


def _n(x: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros (short markup, stable output)."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def bar_segments(counts: Counts, width: float) -> list[tuple[str, float, float]]:
    """(outcome, x, width) of each non-empty outcome in OUTCOMES order. Edges are rounded from
    the running total, not each width on its own, so the widths always add up to ``width``."""
    if counts.total <= 0:
        return []
    segments = []
    done = 0
    left = 0.0
    for outcome in OUTCOMES:
        n = counts.of(outcome)
        if n <= 0:
            continue
        done += n
        right = round(width * min(done, counts.total) / counts.total, 2)
        segments.append((outcome, left, round(right - left, 2)))
        left = right
    return segments


def progress_bar(counts: Counts, *, width: int, height: int) -> Markup:
    """A stacked horizontal bar of the batch's entries by outcome. It stretches to its box's
    width (preserveAspectRatio none): only rectangles, nothing to distort."""
    total = counts.total
    label = (
        ", ".join(f"{OUTCOME_LABELS[o]} {counts.of(o):,}" for o in OUTCOMES if counts.of(o))
        or "No entries"
    )
    parts = [
        f'<svg class="bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' preserveAspectRatio="none" role="img" aria-label="{escape(label)}">',
        f'<rect class="track" x="0" y="0" width="{width}" height="{height}"/>',
    ]
    for outcome, x, w in bar_segments(counts, width):
        n = counts.of(outcome)
        parts.append(
            f'<rect class="o-{outcome}" x="{_n(x)}" y="0" width="{_n(w)}" height="{height}">'
            f"<title>{escape(OUTCOME_LABELS[outcome])}: {n:,} of {total:,}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


SHARE_W = 1000  # the share bar's viewBox; it stretches to its table cell
SHARE_H = 12
SHARE_MIN = 6  # the least width drawn for a count above zero: "none" and "a few" differ


def share_bar(outcome: str, n: int, total: int) -> Markup:
    """One outcome's share of all entries on its track: a row of the outcome chart, whose
    label and numbers are HTML cells beside it (regions/batch_outcomes.html). Hidden from
    screen readers, which read those cells."""
    w = SHARE_W * n / total if total > 0 and n > 0 else 0.0
    if n > 0:
        w = min(max(w, SHARE_MIN), SHARE_W)
    parts = [
        f'<svg class="bar share" viewBox="0 0 {SHARE_W} {SHARE_H}" width="{SHARE_W}"'
        f' height="{SHARE_H}" preserveAspectRatio="none" aria-hidden="true" focusable="false">',
        f'<rect class="track" x="0" y="0" width="{SHARE_W}" height="{SHARE_H}"/>',
    ]
    if w > 0:
        name = escape(OUTCOME_LABELS[outcome])
        parts.append(
            f'<rect class="o-{outcome}" x="0" y="0" width="{_n(w)}" height="{SHARE_H}">'
            f"<title>{name}: {n:,} of {total:,}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def percent(p: float) -> str:
    """A share for people: whole percents, but never "0%" for some or "100%" for not all."""
    if p <= 0:
        return "0%"
    if p < 1:
        return "<1%"
    if 99 < p < 100:
        return ">99%"
    return f"{p:.0f}%"


def y_ticks(v: int) -> list[int]:
    """The y axis' gridlines, from 0 to the first at or above ``v``: a round step (1, 2 or 5
    times a power of ten) and at most four of them above zero, e.g. 0, 50, 100, 150, 200 for
    160; each is labelled."""
    v = max(v, 1)
    power = 1
    while True:
        for m in (1, 2, 5):
            step = m * power
            steps = -(-v // step)
            if steps <= 4:
                return [step * i for i in range(steps + 1)]
        power *= 10


MINUTES_H = 170  # the chart's height in pixels; its width is its box's (dashboard.css)
PLOT_T = 8  # room above the top gridline's label
PLOT_B = 26  # the x labels, under the plot
PLOT_H = MINUTES_H - PLOT_T - PLOT_B
BAR_SHARE = 0.36  # of a minute's slot, for each of its two bars
# The y labels sit left of the svg (in its CSS margin), at x < 0: hence overflow visible. The
# CSS margins also leave room for half a time label at either end, so none is cut off.


def _pct(x: float) -> str:
    return f"{_n(x)}%"


def minutes_chart(minutes: Sequence[MinuteCount]) -> Markup:
    """Calls started and finished per minute, side by side, oldest minute on the left, for any
    number of minutes (their slots share the width); a label under every minute divisible by
    five (HH:MM UTC), and a labelled gridline at each of y_ticks."""
    base = PLOT_T + PLOT_H
    peak = max([0, *(max(m.started, m.finished) for m in minutes)])
    parts = [
        f'<svg class="chart minutes" width="100%" height="{MINUTES_H}" overflow="visible"'
        ' role="img" aria-label="Calls started and finished per minute">'
    ]
    # An idle chart has only its baseline: a "1" on top would suggest a scale for nothing.
    ticks = y_ticks(peak) if peak else [0]
    top = ticks[-1]
    for value in ticks:
        y = _n(base - PLOT_H * value / top) if value else str(base)
        parts.append(
            f'<line class="grid{" base" if value == 0 else ""}" x1="0" y1="{y}" x2="100%"'
            f' y2="{y}"/><text class="axis" x="-8" y="{y}" text-anchor="end"'
            f' dominant-baseline="central">{value:,}</text>'
        )
    if not peak:
        parts.append(
            f'<text class="empty" x="50%" y="{PLOT_T + PLOT_H / 2}" text-anchor="middle"'
            ' dominant-baseline="central">'
            f"{'No calls yet' if not minutes else 'No calls in these minutes'}</text>"
        )
    if not minutes:
        parts.append("</svg>")
        return Markup("".join(parts))
    slot = 100 / len(minutes)
    bar = slot * BAR_SHARE
    for i, m in enumerate(minutes):
        center = (i + 0.5) * slot
        hhmm = _utc(m.minute).strftime("%H:%M")
        # The whole minute answers the pointer (behind the bars), with both numbers.
        parts.append(
            f'<rect class="slot" x="{_pct(i * slot)}" y="{PLOT_T}" width="{_pct(slot)}"'
            f' height="{PLOT_H}"><title>{hhmm} UTC: {m.started:,} started,'
            f" {m.finished:,} finished</title></rect>"
        )
        for series, value, x in (
            ("started", m.started, center - bar),
            ("finished", m.finished, center),
        ):
            if value <= 0:
                continue
            h = max(PLOT_H * value / top, 1.5)  # a call is never invisible
            parts.append(
                f'<rect class="m-{series}" x="{_pct(x)}" y="{_n(base - h)}" width="{_pct(bar)}"'
                f' height="{_n(h)}"/>'
            )
        if _utc(m.minute).minute % 5 == 0:
            parts.append(
                f'<line class="tick" x1="{_pct(center)}" y1="{base}" x2="{_pct(center)}"'
                f' y2="{base + 4}"/><text class="axis" x="{_pct(center)}" y="{MINUTES_H - 6}"'
                f' text-anchor="middle">{hhmm}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
