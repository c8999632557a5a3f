"""The Compliance sheet: the policy in force, the jurisdiction rules applied (with their source
text), deferrals by rule, opt-outs, do-not-call skips and the lead rows refused at intake.

Sections read top to bottom: a bold title row, a bold row of column headings, the rows, a blank
row. "Refused at intake" comes last, its rows streamed (add_refusals): a write-only sheet is
written in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from batchctl.report.cells import cell, heading
from batchctl.report.compliance_data import Compliance, Refusal

NONE = "(none)"
# The policy's frequency windows (batchctl.frequency_windows, sql/029), in this order.
WINDOWS = {"per_24h": "24 hours", "per_7d": "7 days", "per_30d": "30 days"}
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WIDTHS = {"A": 46, "B": 18, "C": 18, "D": 26, "E": 22, "F": 22, "G": 90, "H": 40}
RULE_COLUMNS = ("Jurisdiction", "Entries", "Days", "Hours (local time)", "Frequency cap",
                "Cool-off after a refusal", "Source", "Note")  # fmt: skip


class ComplianceSheet:
    def __init__(self, ws: WriteOnlyWorksheet, c: Compliance) -> None:
        self.ws = ws
        for column, width in WIDTHS.items():  # before the first row
            ws.column_dimensions[column].width = width
        self._policy(c)
        self._rules(c)
        self._section("Deferrals by rule", ("Rule", "Deferrals", "Entries deferred"))
        for d in c.deferrals:
            self.add(d.rule, d.deferrals, d.entries)
        if not c.deferrals:
            self.add(NONE)
        self._opt_outs(c)
        self._section("Do-not-call", ("What was counted", "Count"))
        self.add("Numbers left out at intake (on the list)", c.dnc_skipped)
        self.add("Entries cancelled: number put on the list while queued", c.dnc_cancelled)
        self._section("Refused at intake", ("Line", "Phone (as given)", "Problem",
                                            "Recorded (UTC)"))  # fmt: skip
        if not c.refused:
            self.add(NONE)

    def add(self, *values: Any) -> None:
        self.ws.append([cell(self.ws, v) for v in values])

    def add_refusals(self, rows: Sequence[Refusal]) -> None:
        for r in rows:
            self.add(r.line, r.to_phone, r.problem, r.created_at)

    def _section(self, title: str, columns: Sequence[str], *, first: bool = False) -> None:
        if not first:
            self.add()
        self.ws.append([heading(self.ws, title)])
        self.ws.append([heading(self.ws, name) for name in columns])

    def _policy(self, c: Compliance) -> None:
        self._section("Policy in force", ("Setting", "Value"), first=True)
        p = c.policy
        self.add("Jurisdiction rules", "applied" if c.rules_applied else "off (the policy)")
        self.add("Frequency caps (calls to one number)", _caps(p.get("frequency")))
        self.add("Cool-offs after an outcome", _cooloffs(p.get("cooloff_s")))
        holidays = p.get("holidays")
        self.add("Holidays", ", ".join(map(str, holidays)) if holidays else NONE)
        self.add("Consent required at intake", "yes" if p.get("require_consent") else "no")
        known = {"jurisdiction_rules", "frequency", "cooloff_s", "holidays", "require_consent"}
        for key in sorted(p.keys() - known):  # a key of a later version: as it is
            self.add(key, p[key])

    def _rules(self, c: Compliance) -> None:
        self._section("Jurisdiction rules applied", RULE_COLUMNS)
        if not c.rules_applied:
            self.add("None: the tenant's policy switches the jurisdiction rules off")
            return
        if not c.rules_readable:
            self.add("The rules are not readable by this login (a tenant's): the report the "
                     "daemon sends shows them. The entries' jurisdictions:")  # fmt: skip
        shown = [j for j in c.jurisdictions if j.rule is not None or not c.rules_readable]
        for j in shown:
            r = j.rule
            if r is None:
                self.add(j.jurisdiction, j.entries)
                continue
            cap = f"{r['max_calls']} calls per {span(r['cap_window'])}" if r["max_calls"] else None
            cooloff = span(r["refusal_cooloff"]) if r["refusal_cooloff"] else None
            self.add(j.jurisdiction, j.entries, _days(r["days"]), r["hours"], cap, cooloff,
                     r["source"], r["note"])  # fmt: skip
        if not shown:
            self.add(NONE)

    def _opt_outs(self, c: Compliance) -> None:
        self._section("Opt-outs", ("What was counted", "Count"))
        self.add("Entries that opted out on their call", c.opted_out)
        self.add("Entries cancelled: their number opted out", c.opted_out_cancelled)
        self.add("Numbers put on the do-not-call list by this batch's calls", c.opt_out_listed)
        if not c.opt_outs:
            return
        self.add()
        more = c.opted_out - len(c.opt_outs)
        title = "Entries that opted out" + (f" (the first {len(c.opt_outs)})" if more else "")
        self.ws.append([heading(self.ws, title)])
        self.ws.append([heading(self.ws, name) for name in
                        ("Entry index", "Phone", "Lead name", "Opted out (UTC)")])  # fmt: skip
        for o in c.opt_outs:
            self.add(o.entry_index, o.to_phone, o.lead_name, o.opted_out_at)


def span(value: timedelta) -> str:
    """An interval as a person reads it: 24 hours, 30 days (else its text: 1 day, 2:30:00)."""
    if value == timedelta(days=1):
        return "24 hours"  # a rolling day, as the rules and the policy name it
    if value.seconds == 0 and not value.microseconds:
        return f"{value.days} day{'s' if value.days != 1 else ''}"
    if value.days == 0 and value.seconds % 3600 == 0 and not value.microseconds:
        return f"{value.seconds // 3600} hour{'s' if value.seconds != 3600 else ''}"
    return str(value)


def _days(days: Sequence[int]) -> str:
    if set(days) == set(range(1, 8)):
        return "every day"
    return ", ".join(DAY_NAMES[d - 1] for d in sorted(days))


def _caps(frequency: Any) -> str:
    if not frequency:
        return NONE
    order = [*WINDOWS, *sorted(frequency.keys() - WINDOWS.keys())]
    return ", ".join(f"{frequency[k]} per {WINDOWS.get(k, k)}" for k in order if k in frequency)


def _cooloffs(cooloffs: Any) -> str:
    if not cooloffs:
        return NONE
    return ", ".join(f"{k}: {span(timedelta(seconds=s))}" for k, s in sorted(cooloffs.items()))
