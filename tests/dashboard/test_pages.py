"""The dashboard's pages and live fragments (batchctl/dashboard/pages.py), rendered from sample
models: no database. What a page shows is escaped, its live regions are exactly what the
updates send, its links keep their filters, and nothing in it needs an inline script or style
(the server's Content-Security-Policy allows neither)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchctl.dashboard.charts import (
    MINUTES_H,
    PLOT_H,
    PLOT_T,
    SHARE_W,
    bar_segments,
    minutes_chart,
    percent,
    progress_bar,
    share_bar,
    y_ticks,
)
from batchctl.dashboard.models import (
    OUTCOMES,
    BatchLive,
    BatchRow,
    CampaignsPage,
    Counts,
    EntriesPage,
    EntryRow,
    ErrorCount,
    HistoryItem,
    LiveCall,
    MinuteCount,
    Viewer,
)
from batchctl.dashboard.pages import BATCH_REGIONS, ROW_PARTS, Pages, eta, relative
from batchctl.statuses import BATCH_STATUSES

NOW = datetime(2025, 3, 12, 14, 20, 5, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>\"onmouseover=alert(2) x='"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onmouseover=alert(2) x=&#39;"
TENANT = UUID("7f8e9d0c-1b2a-4c3d-8e4f-5a6b7c8d9e0f")
OTHER_TENANT = UUID("11111111-2222-4333-8444-555555555555")
BATCH = UUID("0b6f3c2e-9a41-4d7e-b5c8-2f1e0d9c8b7a")
VIEWER = Viewer(name="ops-alice", role=None, csrf="csrf-token-123")
PAGES = Pages()


def counts(**kw: int) -> Counts:
    values = {
        "queued": 380,
        "running": 2,
        "dispatched": 4,
        "completed": 412,
        "failed": 61,
        "declined": 97,
        "cancelled": 44,
    }
    values.update(kw)
    return Counts(total=sum(values.values()), **values)


def batch_row(
    status: str = "running", *, batch_id: UUID = BATCH, tenant_name: str = "Acme Insurance"
) -> BatchRow:
    finished = status in ("completed", "cancelled", "failed")
    return BatchRow(
        id=batch_id,
        tenant_id=TENANT,
        tenant_name=tenant_name,
        status=status,
        counts=counts(),
        live_calls=6,
        tenant_live_calls=7,
        tenant_cap=10,
        created_at=NOW - timedelta(minutes=47),
        started_at=None if status == "pending" else NOW - timedelta(minutes=46),
        finished_at=NOW - timedelta(minutes=2) if finished else None,
        report_status="sent" if finished else None,
        cancel_reason="Wrong list uploaded" if status == "cancelled" else None,
    )


def sample_minutes(count: int = 30) -> list[MinuteCount]:
    """``count`` minutes ending at NOW's, as queries.py sends them (10 to 30 of them)."""
    start = NOW.replace(second=0) - timedelta(minutes=count - 1)
    return [
        MinuteCount(start + timedelta(minutes=i), 3 + (i * 7) % 9, 2 + (i * 5) % 8)
        for i in range(count)
    ]


def batch_live(status: str = "running", tenant_name: str = "Acme Insurance") -> BatchLive:
    return BatchLive(
        batch=batch_row(status, tenant_name=tenant_name),
        calls=[
            LiveCall("•••••••5678", "ongoing", 143),
            LiveCall("•••••••0412", "ringing", 9),
            LiveCall("•••••••7781", "in_queue", 2),
        ],
        minutes=sample_minutes(),
        errors=[ErrorCount("SIP 486 Busy Here", 38), ErrorCount("no answer after 30 s", 17)],
        finishes_at=NOW + timedelta(minutes=12, seconds=20),
        history=[
            HistoryItem(NOW - timedelta(minutes=20), "paused", "running", None, "ops via bob"),
            HistoryItem(NOW - timedelta(minutes=25), "running", "paused", "lunch", "ops via bob"),
            HistoryItem(NOW - timedelta(minutes=46), None, "running", None, "acme_app"),
        ],
    )


def entries(status: str | None = None, after: int | None = None) -> EntriesPage:
    first = 0 if after is None else after + 1
    rows = [
        EntryRow(
            id=UUID(int=i + 1),
            index=i,
            number=f"•••••••{1000 + i}",
            lead_name=f"Lead {i}",
            status="completed" if i % 3 else "failed",
            attempts=1 + i % 2,
            outcome="completed" if i % 3 else "busy",
            last_error=None if i % 3 else "SIP 486 Busy Here",
            updated_at=NOW - timedelta(minutes=i),
        )
        for i in range(first, first + 25)
    ]
    return EntriesPage(rows=rows, status=status, after=after, next_after=rows[-1].index)


def campaigns_page(**kw: object) -> CampaignsPage:
    page = CampaignsPage(
        batches=[
            batch_row("running"),
            batch_row("completed", batch_id=UUID(int=2), tenant_name="Globex"),
            batch_row("pending", batch_id=UUID(int=3)),
        ],
        tenants=[(TENANT, "Acme Insurance"), (OTHER_TENANT, "Globex")],
        tenant=None,
        status=None,
        before=None,
        next_before=None,
    )
    return replace(page, **kw)  # type: ignore[arg-type]


class _Html(HTMLParser):
    """Every tag with its attributes, and the raw inner HTML of each data-live-region."""

    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    )

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.line_starts = [0]
        for line in source.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.regions: dict[str, str] = {}
        self.region_order: list[str] = []
        self._open: list[tuple[str, str | None, int]] = []
        self.feed(source)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in self.VOID:
            return
        start_tag = self.get_starttag_text() or ""
        region = a.get("id") if "data-live-region" in a else None
        self._open.append((tag, region, self._offset() + len(start_tag)))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            opened, region, start = self._open.pop()
            if opened == tag:
                if region is not None:
                    assert region not in self.regions, f"region {region} twice"
                    self.regions[region] = self.source[start : self._offset()]
                    self.region_order.append(region)
                return

    def attrs(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    def by_id(self, element_id: str) -> dict[str, str | None]:
        (found,) = [a for _, a in self.tags if a.get("id") == element_id]
        return found


def all_pages() -> dict[str, str]:
    pages = {
        "login": PAGES.login(),
        "login-error": PAGES.login(error=HOSTILE),
        "error": PAGES.error(404, HOSTILE),
        "error-signed-in": PAGES.error(403, "Not yours.", VIEWER),
        "campaigns": PAGES.campaigns(campaigns_page(), VIEWER, NOW),
        "campaigns-empty": PAGES.campaigns(campaigns_page(batches=[]), VIEWER, NOW),
    }
    for status in BATCH_STATUSES:
        pages[f"batch-{status}"] = PAGES.batch(
            batch_live(status), entries(), VIEWER, NOW, notice="Paused.", error="Nope."
        )
    return pages


# Escaping


def hostile_batch_page() -> str:
    live = batch_live("cancelled", tenant_name=HOSTILE)
    live = replace(
        live,
        batch=replace(live.batch, cancel_reason=HOSTILE),
        errors=[ErrorCount(HOSTILE, 3)],
        history=[HistoryItem(NOW, "running", "cancelled", HOSTILE, HOSTILE)],
        calls=[LiveCall(HOSTILE, "ongoing", 5)],
    )
    rows = [replace(r, lead_name=HOSTILE, last_error=HOSTILE) for r in entries().rows]
    viewer = Viewer(name=HOSTILE, role="acme_app", csrf=HOSTILE)
    return PAGES.batch(
        live, replace(entries(), rows=rows), viewer, NOW, notice=HOSTILE, error=HOSTILE
    )


def test_hostile_text_is_escaped_everywhere() -> None:
    tenant_row = batch_row(tenant_name=HOSTILE)
    pages = {
        "batch": hostile_batch_page(),
        "campaigns": PAGES.campaigns(
            campaigns_page(batches=[tenant_row], tenants=[(TENANT, HOSTILE), (OTHER_TENANT, "x")]),
            Viewer(name=HOSTILE, role=None, csrf="c"),
            NOW,
        ),
        "login": PAGES.login(error=HOSTILE),
        "error": PAGES.error(400, HOSTILE, Viewer(name=HOSTILE, role=None, csrf="c")),
        **{
            f"fragment {k}": v
            for k, v in PAGES.batch_fragments(
                replace(
                    batch_live("cancelled", tenant_name=HOSTILE),
                    errors=[ErrorCount(HOSTILE, 1)],
                    history=[HistoryItem(NOW, None, "running", HOSTILE, HOSTILE)],
                ),
                NOW,
            ).items()
        },
    }
    for name, html in pages.items():
        assert "<script>alert" not in html, name
        assert '"onmouseover' not in html, name
        assert "x='" not in html, name
    for name in ("batch", "campaigns", "login", "error"):
        assert ESCAPED in pages[name], name
    batch_page = pages["batch"]
    # tenant, cancel reason, error, history reason and actor, lead names and last errors
    # (text and title), viewer, banners: all there, all escaped.
    assert batch_page.count(ESCAPED) >= 10
    for _, attrs in _Html(batch_page).tags:
        assert not [a for a in attrs if a.startswith("on")]


# Live regions


@pytest.mark.parametrize("status", BATCH_STATUSES)
def test_batch_page_regions_are_the_fragments(status: str) -> None:
    live = batch_live(status)
    page = _Html(PAGES.batch(live, entries(), VIEWER, NOW))
    fragments = PAGES.batch_fragments(live, NOW)
    assert set(fragments) == set(BATCH_REGIONS)
    assert page.regions == fragments


def test_batch_fragments_of_an_empty_batch() -> None:
    live = replace(batch_live("pending"), calls=[], minutes=[], errors=[], history=[])
    live = replace(live, batch=replace(live.batch, counts=Counts(0, 0, 0, 0, 0, 0, 0, 0)))
    page = _Html(PAGES.batch(live, replace(entries(), rows=[], next_after=None), VIEWER, NOW))
    fragments = PAGES.batch_fragments(live, NOW)
    assert page.regions == fragments
    assert "No calls live." in fragments["batch-calls"]
    assert "No errors." in fragments["batch-errors"]
    assert "No changes yet." in fragments["batch-history"]
    assert "No calls yet" in fragments["batch-minutes"]


def test_campaigns_page_regions_are_the_row_fragments() -> None:
    page = campaigns_page()
    parsed = _Html(PAGES.campaigns(page, VIEWER, NOW))
    expected: dict[str, str] = {}
    for row in page.batches:
        fragments = PAGES.campaign_row_fragments(row, NOW)
        assert list(fragments) == [f"row-{row.id}-{part}" for part in ROW_PARTS]
        expected.update(fragments)
    assert parsed.regions == expected


def test_live_urls() -> None:
    page = campaigns_page()
    body = _Html(PAGES.campaigns(page, VIEWER, NOW)).attrs("body")[0]
    assert body["data-live"] == "/live?" + "&".join(f"batch={b.id}" for b in page.batches)
    assert body["data-now"] == NOW.isoformat()
    empty = _Html(PAGES.campaigns(campaigns_page(batches=[]), VIEWER, NOW))
    assert "data-live" not in empty.attrs("body")[0]
    assert not [a for _, a in empty.tags if a.get("id") == "live-state"]
    batch = _Html(PAGES.batch(batch_live(), entries(), VIEWER, NOW))
    assert batch.attrs("body")[0]["data-live"] == f"/batches/{BATCH}/live"
    assert batch.by_id("live-state")


# Actions


@pytest.mark.parametrize("status", BATCH_STATUSES)
def test_actions_follow_the_status(status: str) -> None:
    html = PAGES.batch(batch_live(status), entries(), VIEWER, NOW)
    parsed = _Html(html)
    actions = parsed.regions["batch-actions"]
    buttons = _Html(actions).attrs("button")
    targets = {b.get("form") or b.get("data-open-dialog") for b in buttons}
    expected = {
        "pending": {"cancel-dialog"},
        "running": {"pause-form", "cancel-dialog"},
        "paused": {"resume-form", "cancel-dialog"},
    }.get(status, set())
    assert targets == expected
    assert ("Pause" in actions) == (status == "running")
    assert ("Resume" in actions) == (status == "paused")
    assert ("Cancel batch…" in actions) == (status in ("pending", "running", "paused"))
    if not expected:
        assert actions.strip() == ""
        assert 'id="cancel-dialog"' not in html
    # Each button's form is outside the region, posts to its action and carries the viewer's
    # CSRF token, which the fragments (shared by every viewer) cannot.
    assert "<form" not in actions and VIEWER.csrf not in actions
    forms = {
        m["id"]: (m["action"], m["csrf"])
        for m in re.finditer(
            r'<form id="(?P<id>[\w-]+)" method="post" action="(?P<action>[^"]+)"[^>]*>\s*'
            r'<input type="hidden" name="csrf" value="(?P<csrf>[^"]*)">',
            html,
        )
    }
    for target in targets:
        form_id = "cancel-form" if target == "cancel-dialog" else str(target)
        action = form_id.removesuffix("-form")
        assert forms[form_id] == (f"/batches/{BATCH}/{action}", VIEWER.csrf)


def test_cancel_dialog() -> None:
    html = PAGES.batch(batch_live("running"), entries(), VIEWER, NOW)
    dialog = html[html.index('<dialog id="cancel-dialog"') : html.index("</dialog>")]
    parsed = _Html(dialog + "</dialog>")
    assert "open" not in parsed.attrs("dialog")[0]
    (form,) = parsed.attrs("form")
    assert form["method"] == "post" and form["action"] == f"/batches/{BATCH}/cancel"
    (textarea,) = parsed.attrs("textarea")
    assert textarea["name"] == "reason"
    assert "required" in textarea and textarea["maxlength"] == "1000"
    assert f'Cancel batch <span class="mono">{batch_row().short_id}</span>?' in dialog
    assert "Queued entries are cancelled now; live calls are hung up." in dialog
    buttons = {b.get("type"): b for b in parsed.attrs("button")}
    assert "danger" in (buttons["submit"]["class"] or "")
    assert "data-close-dialog" in buttons["button"]
    assert ">Cancel the batch<" in dialog and ">Keep it running<" in dialog


# Links and cursors


def test_campaigns_paging_keeps_the_filters_and_encodes_the_cursor() -> None:
    created = datetime(2025, 3, 11, 9, 5, 1, 250000, tzinfo=UTC)
    last = UUID(int=3)
    page = campaigns_page(
        tenant=TENANT, status="running", before=(NOW, BATCH), next_before=(created, last)
    )
    parsed = _Html(PAGES.campaigns(page, VIEWER, NOW))
    links = {a.get("href") for a in parsed.attrs("a")}
    (older,) = [h for h in links if h and "before=" in h]
    assert "%2B00%3A00" in older  # a raw "+" would arrive as a space
    query = parse_qs(urlsplit(older).query, strict_parsing=True)
    assert query == {
        "tenant": [str(TENANT)],
        "status": ["running"],
        "before": [f"{created.isoformat()}~{last}"],
    }
    assert f"/?tenant={TENANT}&status=running" in links  # "Newest": the filters, no cursor
    selected = [o for o in parsed.attrs("option") if "selected" in o]
    assert [o["value"] for o in selected] == [str(TENANT), "running"]


def test_campaigns_first_page_without_filters() -> None:
    html = PAGES.campaigns(campaigns_page(next_before=(NOW, BATCH)), VIEWER, NOW)
    hrefs = [a.get("href") or "" for a in _Html(html).attrs("a")]
    assert [h for h in hrefs if "before" in h] == [
        "/?" + "before=" + NOW.isoformat().replace(":", "%3A").replace("+", "%2B") + f"~{BATCH}"
    ]
    assert "Newest" not in html and "Clear filters" not in html


def test_campaigns_filters_and_empty_state() -> None:
    one_tenant = campaigns_page(tenants=[(TENANT, "Acme Insurance")])
    assert 'name="tenant"' not in PAGES.campaigns(one_tenant, VIEWER, NOW)
    html = PAGES.campaigns(campaigns_page(), VIEWER, NOW)
    assert 'name="tenant"' in html and ">All tenants<" in html and 'name="status"' in html
    for status in BATCH_STATUSES:
        assert f'<option value="{status}">' in html
    assert "No batch" not in html
    empty = PAGES.campaigns(campaigns_page(batches=[], status="failed"), VIEWER, NOW)
    assert "No batch matches these filters." in empty and "<table" not in empty
    assert "No batches yet." in PAGES.campaigns(campaigns_page(batches=[]), VIEWER, NOW)


def test_entries_paging() -> None:
    page = _Html(PAGES.batch(batch_live(), entries(status="failed", after=49), VIEWER, NOW))
    hrefs = {a.get("href") for a in page.attrs("a")}
    assert f"/batches/{BATCH}?status=failed&after=74#entries" in hrefs
    assert f"/batches/{BATCH}?status=failed#entries" in hrefs
    first = _Html(PAGES.batch(batch_live(), entries(), VIEWER, NOW))
    hrefs = {a.get("href") for a in first.attrs("a")}
    assert f"/batches/{BATCH}?after=24#entries" in hrefs
    assert not [h for h in hrefs if h and h.endswith(f"/batches/{BATCH}#entries")]
    last = replace(entries(), next_after=None)
    assert "Next →" not in PAGES.batch(batch_live(), last, VIEWER, NOW)
    assert first.by_id("entries")


# The CSP: no inline script, style or handler anywhere


def test_no_inline_scripts_styles_or_handlers() -> None:
    for name, html in {**all_pages(), "hostile": hostile_batch_page()}.items():
        parsed = _Html(html)
        assert html.startswith("<!doctype html>"), name
        for tag, attrs in parsed.tags:
            assert "style" not in attrs, (name, tag)
            assert not [a for a in attrs if a.startswith("on")], (name, tag, attrs)
            assert tag != "style", name
            if tag == "script":
                assert attrs.get("src") == "/static/dashboard.js", name
            for attr in ("href", "src", "action"):
                value = attrs.get(attr) or ""
                assert not value.startswith(("http:", "https:", "//", "javascript:")), name
        assert "javascript:" not in html
        assert len(parsed.attrs("script")) == 1
        (css,) = [a for a in parsed.attrs("link") if a.get("rel") == "stylesheet"]
        assert css["href"] == "/static/dashboard.css"


def test_layout_and_top_bar() -> None:
    html = PAGES.batch(batch_live(), entries(), VIEWER, NOW)
    parsed = _Html(html)
    assert {"charset": "utf-8"} in parsed.attrs("meta")
    assert any(m.get("name") == "viewport" for m in parsed.attrs("meta"))
    logout = [f for f in parsed.attrs("form") if f.get("action") == "/logout"]
    assert logout and logout[0]["method"] == "post"
    assert '<input type="hidden" name="csrf" value="csrf-token-123">' in html
    assert "ops-alice" in html and "tenant-limited" not in html
    limited = PAGES.campaigns(
        campaigns_page(), Viewer(name="acme-bob", role="acme_app", csrf="c"), NOW
    )
    assert "tenant-limited" in limited
    for page in (PAGES.login(), PAGES.error(404, "No such batch.")):
        assert "/logout" not in page and "data-live" not in page


def test_login_page() -> None:
    html = PAGES.login(error="That token is not accepted.")
    parsed = _Html(html)
    (form,) = parsed.attrs("form")
    assert form["method"] == "post" and form["action"] == "/login"
    (field,) = parsed.attrs("input")
    assert field["type"] == "password" and field["name"] == "token"
    assert ">Sign in</button>" in html
    assert html.index("That token is not accepted.") < html.index('action="/login"')
    assert "not accepted" not in PAGES.login()


def test_error_page() -> None:
    html = PAGES.error(404, "No such batch.")
    assert "404" in html and "Not Found" in html and "No such batch." in html
    assert "Error" in PAGES.error(599, "odd")
    signed_in = PAGES.error(403, "Not yours.", VIEWER)
    assert "/logout" in signed_in and "ops-alice" in signed_in


# What the regions say


def test_counters_progress_and_eta() -> None:
    live = batch_live()
    fragments = PAGES.batch_fragments(live, NOW)
    counters = fragments["batch-counters"]
    c = live.batch.counts
    for value in (c.total, c.queued, c.in_progress, c.completed, c.declined, c.failed):
        assert f'<span class="v">{value:,}</span>' in counters
    assert f"{c.finished:,} / {c.total:,}</span> done" in fragments["batch-progress"]
    assert fragments["batch-eta"].strip() == "Finishes in about 12 min (≈ 14:32 UTC)"
    tomorrow = replace(live, finishes_at=NOW + timedelta(hours=26))
    assert PAGES.batch_fragments(tomorrow, NOW)["batch-eta"].strip() == (
        "Finishes in about 26 h (≈ 13 Mar 16:20 UTC)"
    )
    overdue = replace(live, finishes_at=NOW - timedelta(minutes=1))
    assert "under a minute" in PAGES.batch_fragments(overdue, NOW)["batch-eta"]


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize(
    ("status", "estimate", "shown"),
    [
        ("running", False, "Estimating…"),
        ("pending", False, "Not started yet"),
        ("pending", True, "Not started yet"),
        ("paused", False, "No estimate while paused"),
        ("paused", True, "No estimate while paused"),  # a pace from before the pause: not used
        ("completed", False, "Finished 2 min ago"),
        ("cancelled", False, "Cancelled 2 min ago"),
        ("failed", True, "Failed 2 min ago"),
    ],
)
def test_eta_phrase_without_an_estimate(status: str, estimate: bool, shown: str) -> None:
    live = batch_live(status)
    if not estimate:
        live = replace(live, finishes_at=None)
    assert eta(live, NOW) is None
    html = PAGES.batch_fragments(live, NOW)["batch-eta"]
    assert _text(html) == shown
    assert "—" not in html  # a lone dash read as a "minimise" button
    if status in ("completed", "cancelled", "failed"):
        # The time is refreshed by dashboard.js like every other relative time.
        assert '<time datetime="2025-03-12T14:18:05+00:00"' in html and "data-relative" in html
    finished_unknown = replace(live, batch=replace(live.batch, finished_at=None))
    expected = shown.removesuffix(" 2 min ago")
    assert _text(PAGES.batch_fragments(finished_unknown, NOW)["batch-eta"]) == expected


def test_calls_errors_history() -> None:
    fragments = PAGES.batch_fragments(batch_live(), NOW)
    calls = fragments["batch-calls"]
    assert "•••••••5678" in calls and "2:23" in calls and "0:09" in calls
    for status in ("ongoing", "ringing", "in_queue"):
        assert f'class="badge s-{status}"' in calls
    assert "SIP 486 Busy Here" in fragments["batch-errors"] and ">38<" in fragments["batch-errors"]
    history = fragments["batch-history"]
    assert "lunch" in history and "ops via bob" in history and "→" in history
    assert history.index("s-paused") < history.index("s-running")  # newest first, as given


def test_minutes_chart_labels() -> None:
    live = batch_live()
    chart = PAGES.batch_fragments(live, NOW)["batch-minutes"]
    labels = re.findall(r'text-anchor="middle">(\d\d:\d\d)</text>', chart)
    assert labels == [f"{m.minute:%H:%M}" for m in live.minutes if m.minute.minute % 5 == 0]
    # Every gridline is labelled (the unlabelled dashed midline is gone), up to a round top.
    assert max(max(m.started, m.finished) for m in live.minutes) == 11
    assert y_labels(chart) == [0, 5, 10, 15]
    assert len(re.findall(r'<rect class="m-started"', chart)) == len(live.minutes)
    assert ">Started<" in chart and ">Finished<" in chart
    first, last = live.minutes[0].minute, live.minutes[-1].minute
    assert f"{first:%H:%M}\N{EN DASH}{last:%H:%M} UTC" in chart
    # Every minute tells its numbers on hover.
    m = live.minutes[-1]
    assert (
        f"<title>{m.minute:%H:%M} UTC: {m.started} started, {m.finished} finished</title>" in chart
    )


def y_labels(svg: str) -> list[int]:
    return [
        int(v.replace(",", ""))
        for v in re.findall(r'x="-8" y="[\d.]+" text-anchor="end"[^>]*>([\d,]+)</text>', svg)
    ]


def bars(svg: str) -> list[tuple[str, float, float, float, float]]:
    """(series, x %, width %, y, height) of each bar of the minutes chart."""
    return [
        (m["s"], float(m["x"]), float(m["w"]), float(m["y"]), float(m["h"]))
        for m in re.finditer(
            r'<rect class="m-(?P<s>\w+)" x="(?P<x>[\d.]+)%" y="(?P<y>[\d.]+)"'
            r' width="(?P<w>[\d.]+)%" height="(?P<h>[\d.]+)"/>',
            svg,
        )
    ]


@pytest.mark.parametrize("count", range(10, 31))
def test_minutes_chart_fits_any_number_of_minutes(count: int) -> None:
    minutes = sample_minutes(count)
    live = replace(batch_live(), minutes=minutes)
    html = PAGES.batch(live, entries(), VIEWER, NOW)  # renders, page and fragment alike
    assert _Html(html).regions == PAGES.batch_fragments(live, NOW)
    svg = str(minutes_chart(minutes))
    assert "viewBox" not in svg  # pixels are pixels: the labels are never scaled up
    assert f'height="{MINUTES_H}"' in svg
    drawn = bars(svg)
    assert len(drawn) == 2 * count  # every sample minute has calls of both kinds
    slot = 100 / count
    for i, m in enumerate(minutes):
        started, finished = drawn[2 * i], drawn[2 * i + 1]
        assert (started[0], finished[0]) == ("started", "finished")
        for _, x, w, y, h in (started, finished):
            # Within its own minute's slot, sized to the slot, not to a fixed 30 of them.
            assert i * slot - 0.01 <= x and x + w <= (i + 1) * slot + 0.01
            assert w == pytest.approx(slot * 0.36, abs=0.011)
            assert y >= PLOT_T - 0.01 and y + h == pytest.approx(PLOT_T + PLOT_H, abs=0.011)
        top = y_labels(svg)[-1]
        assert started[4] == pytest.approx(PLOT_H * m.started / top, abs=0.011)
        assert finished[4] == pytest.approx(PLOT_H * m.finished / top, abs=0.011)
    # The bars span the whole width: the first minute starts near 0, the last ends near 100%.
    assert drawn[0][1] < slot and drawn[-1][1] + drawn[-1][2] > 100 - slot
    # x labels every five minutes, each under its minute's centre, inside the plot's width
    # (the CSS margins leave room for the half of a label that overhangs either end).
    labels = re.findall(r'<text class="axis" x="([\d.]+)%" y="\d+" text-anchor="middle">'
                        r"(\d\d:\d\d)</text>", svg)  # fmt: skip
    expected = [(i, m) for i, m in enumerate(minutes) if m.minute.minute % 5 == 0]
    assert [t for _, t in labels] == [f"{m.minute:%H:%M}" for _, m in expected]
    assert len(labels) >= 2
    for (x, _), (i, _) in zip(labels, expected, strict=True):
        assert float(x) == pytest.approx((i + 0.5) * slot, abs=0.011)
        assert 0 < float(x) < 100


def test_minutes_chart_without_calls() -> None:
    quiet = [MinuteCount(m.minute, 0, 0) for m in sample_minutes(12)]
    svg = str(minutes_chart(quiet))
    assert "No calls in these minutes" in svg and bars(svg) == []
    assert y_labels(svg) == [0]  # no scale for nothing
    assert "No calls yet" in str(minutes_chart([]))
    one = [*quiet[:-1], MinuteCount(quiet[-1].minute, 1, 0)]
    drawn = bars(str(minutes_chart(one)))
    assert [(s, h) for s, _, _, _, h in drawn] == [("started", PLOT_H)]
    assert y_labels(str(minutes_chart(one))) == [0, 1]


@given(st.integers(min_value=0, max_value=10**7))
def test_y_ticks_are_round_and_cover_the_peak(peak: int) -> None:
    ticks = y_ticks(peak)
    assert ticks[0] == 0 and ticks[-1] >= max(peak, 1)
    assert 2 <= len(ticks) <= 5
    step = ticks[1]
    assert ticks == [step * i for i in range(len(ticks))]
    assert re.fullmatch(r"[125]0*", str(step))
    # The smallest such step: a finer one would need more than four gridlines.
    assert ticks[-2] < max(peak, 1)


def test_y_ticks_examples() -> None:
    assert y_ticks(0) == [0, 1]
    assert y_ticks(3) == [0, 1, 2, 3]
    assert y_ticks(7) == [0, 2, 4, 6, 8]
    assert y_ticks(10) == [0, 5, 10]
    assert y_ticks(160) == [0, 50, 100, 150, 200]
    assert y_ticks(201) == [0, 100, 200, 300]


def test_relative_times() -> None:
    assert relative(NOW - timedelta(seconds=59), NOW) == "just now"
    assert relative(NOW + timedelta(seconds=2), NOW) == "just now"
    assert relative(NOW - timedelta(minutes=4, seconds=50), NOW) == "4 min ago"
    assert relative(NOW - timedelta(hours=3, minutes=59), NOW) == "3 h ago"
    assert relative(NOW - timedelta(days=1, hours=2), NOW) == "1 day ago"
    assert relative(NOW - timedelta(days=9), NOW) == "9 days ago"
    times = PAGES.campaign_row_fragments(batch_row(), NOW)[f"row-{BATCH}-times"]
    assert (
        '<time datetime="2025-03-12T13:34:05+00:00" title="2025-03-12 13:34:05 UTC"'
        " data-relative>46 min ago</time>"
    ) in times


def test_row_fragments() -> None:
    running = PAGES.campaign_row_fragments(batch_row(), NOW)
    live = running[f"row-{BATCH}-live"]
    assert '<span class="num">6</span> live' in live and "tenant 7/10" in live
    assert "s-running" in running[f"row-{BATCH}-status"]
    done = PAGES.campaign_row_fragments(batch_row("completed"), NOW)
    assert "s-sent" in done[f"row-{BATCH}-report"]
    assert "live" not in done[f"row-{BATCH}-live"]


# Progress bars


def rects(svg: str) -> list[tuple[str, float, float]]:
    return [
        (m["outcome"], float(m["x"]), float(m["w"]))
        for m in re.finditer(
            r'<rect class="o-(?P<outcome>\w+)" x="(?P<x>[\d.]+)" y="0" width="(?P<w>[\d.]+)"', svg
        )
    ]


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=7, max_size=7),
    st.sampled_from([100, 240, 1000, 333]),
)
def test_progress_bar_widths_add_up_and_are_proportional(values: list[int], width: int) -> None:
    c = Counts(sum(values), *values)
    svg = str(progress_bar(c, width=width, height=8))
    drawn = rects(svg)
    assert drawn == [(o, x, w) for o, x, w in bar_segments(c, width)]
    if c.total == 0:
        assert drawn == []
        return
    assert [o for o, _, _ in drawn] == [o for o in OUTCOMES if c.of(o)]
    assert abs(sum(w for _, _, w in drawn) - width) < 0.011
    left = 0.0
    for outcome, x, w in drawn:
        assert x == pytest.approx(left, abs=0.011)  # adjacent, no gaps or overlaps
        assert w == pytest.approx(width * c.of(outcome) / c.total, abs=0.011)
        left = x + w


def test_progress_bar_of_the_sample() -> None:
    c = counts()
    drawn = dict((o, w) for o, _, w in rects(str(progress_bar(c, width=1000, height=20))))
    assert drawn["completed"] == pytest.approx(1000 * 412 / c.total, abs=0.01)
    assert drawn["in_progress"] == pytest.approx(1000 * 6 / c.total, abs=0.01)
    assert 'viewBox="0 0 1000 20"' in str(progress_bar(c, width=1000, height=20))


# The outcome chart: HTML rows (text at the page's size) with a stretched bar each


def test_outcome_chart_rows() -> None:
    live = batch_live()
    c = live.batch.counts
    region = PAGES.batch_fragments(live, NOW)["batch-outcomes"]
    rows = re.findall(r"<tr>(.*?)</tr>", region, re.S)
    assert len(rows) == len(OUTCOMES)
    for outcome, row in zip(OUTCOMES, rows, strict=True):
        cells = _text(re.sub(r"<svg.*?</svg>", "", row, flags=re.S)).split(" ")
        assert cells[-2:] == [f"{c.of(outcome):,}", percent(c.percent(outcome))]
        assert f'class="o-{outcome}"' in row
    assert "<text" not in region  # no SVG text to scale with the card
    svg = _Html(region).attrs("svg")
    assert all(a["preserveaspectratio"] == "none" and a["aria-hidden"] == "true" for a in svg)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_share_bar_fits_its_track(n: int, rest: int) -> None:
    total = n + rest
    svg = str(share_bar("queued", n, total))
    assert f'<rect class="track" x="0" y="0" width="{SHARE_W}"' in svg
    drawn = [
        float(w) for w in re.findall(r'<rect class="o-queued" x="0" y="0" width="([\d.]+)"', svg)
    ]
    if n == 0:
        assert drawn == []
        return
    (w,) = drawn
    assert 0 < w <= SHARE_W  # the full width for everything, never beyond the track
    assert w == pytest.approx(max(SHARE_W * n / total, 6), abs=0.006)
    assert f"<title>Queued: {n:,} of {total:,}</title>" in svg
