"""The dashboard in a real browser (headless Chromium, tests/helpers/browser.py) against a real
database: what a person sees and clicks, the live updates arriving without a reload while a
real daemon dials the LiveKit simulator, the actions reaching the database, and what the
browser is refused. Each test saves screenshots of the pages it shows under its tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import psycopg
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from batchctl.dashboard.routes import NOT_FOUND
from batchctl.sim import Scenario
from browser import chromium, click, response_status, screenshot, wait_for
from campaigns import QUICK_CALLS
from dashboard import Board, dashboard
from services import Service, daemon_command, running, wait_finished
from simulator import run_simulator
from sqlapi import SqlApi, phones
from tenant_logins import login_role

Conn = psycopg.Connection[dict[str, Any]]
MARKER = "window.__marker = 1"
HAS_MARKER = "return window.__marker === 1"
PAUSE = '#batch-actions button[form="pause-form"]'


def batch_row(conn: Conn, batch: UUID) -> dict[str, Any]:
    row = conn.execute(
        "select status::text as status, cancel_reason from batchctl.batches where id = %s",
        (batch,),
    ).fetchone()
    assert row is not None
    return row


def path_of(driver: WebDriver) -> str:
    return urlsplit(driver.current_url).path


def sign_in(driver: WebDriver, board: Board, name: str = "operator") -> None:
    """The link `batchctl dashboard` prints: signs in and lands on the campaigns page."""
    driver.get(f"{board.url}/login?token={board.tokens[name]}")
    wait_for(driver, lambda d: path_of(d) == "/" and d.title.startswith("Campaigns"),
             what="the campaigns page after signing in")  # fmt: skip


def text(driver: WebDriver, selector: str) -> str:
    """The text shown in the element at ``selector``, read in one go: a live update may replace
    the element between a find and a read."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null;",
        selector,
    )
    assert isinstance(found, str), f"nothing at {selector} on {driver.current_url}"
    return found


def texts(driver: WebDriver, selector: str) -> list[str]:
    """The text of every element at ``selector``, read in one go."""
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]),"
        " e => (e.innerText ?? e.textContent ?? '').trim());",
        selector,
    )
    assert isinstance(found, list)
    return [str(t) for t in found]


def markup(driver: WebDriver, selector: str) -> str:
    """The inner HTML of the element at ``selector``, read in one go."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerHTML : null;", selector
    )
    assert isinstance(found, str), f"nothing at {selector} on {driver.current_url}"
    return found


def live(driver: WebDriver) -> None:
    """Waits until the page's event stream is open (the top bar says "live")."""
    wait_for(driver, lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state")
             == "open", what="the live updates to connect")  # fmt: skip


def notice_after(driver: WebDriver, action_path: str, what: str) -> str:
    """The notice the batch page shows after the POST to ``action_path``; fails at once, with
    the answer's status and text, when the POST was answered with anything but that page."""
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".banner")
             or path_of(d) == action_path, what=what)  # fmt: skip
    assert path_of(driver) != action_path, (
        f"the POST to {action_path} was answered {response_status(driver)}: "
        f"{text(driver, 'body')[:300]}"
    )
    return text(driver, ".banner.notice")


def dialog_open(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.getElementById('cancel-dialog').open"))


def test_the_campaigns_page_lists_a_running_batch(db_url: str, api: SqlApi, tmp_path: Path) -> None:
    tenant = api.create_tenant("Acme Dental", max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(5))
    api.dispatch_all(limit=2)  # two calls live
    with dashboard(db_url) as board, chromium() as driver:
        # The sign-in form, as a person fills it in.
        driver.get(f"{board.url}/")
        wait_for(driver, lambda d: path_of(d) == "/login", what="the redirect to the sign-in")
        screenshot(driver, tmp_path, "login")
        driver.find_element(By.NAME, "token").send_keys(board.tokens["operator"])
        driver.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
        link = wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, f'a[href="/batches/{batch}"]'),
            what="the batch's row",
        )[0]
        screenshot(driver, tmp_path, "campaigns")
        assert link.text == str(batch)[:8]
        row = link.find_element(By.XPATH, "ancestor::tr")
        assert "Acme Dental" in row.text
        assert text(driver, f"#row-{batch}-status") == "Running"
        assert "0 / 5" in text(driver, f"#row-{batch}-progress")
        assert "2 live" in text(driver, f"#row-{batch}-live")
        assert "tenant 2/2" in text(driver, f"#row-{batch}-live")
        link.click()
        wait_for(driver, lambda d: path_of(d) == f"/batches/{batch}", what="the batch page")
        assert text(driver, "#batch-status .badge") == "Running"
        screenshot(driver, tmp_path, "batch")


def test_counters_and_progress_move_without_a_reload_while_calls_complete(
    db_url: str, api: SqlApi, conn: Conn, tmp_path: Path
) -> None:
    total = 20
    scenario = Scenario.from_dict(
        {**QUICK_CALLS, "seed": 3, "ring_time_s": [0.05, 0.3], "call_length_s": [0.2, 0.6]}
    )
    tenant = api.create_tenant("Acme Dental", max_concurrent_calls=5)
    batch = api.create_batch(tenant, phones(total), {"report_delay_s": 0})
    with dashboard(db_url) as board, chromium() as driver:
        sign_in(driver, board)
        # The batch page in this tab, the campaigns page in another, both before any call.
        driver.get(f"{board.url}/batches/{batch}")
        live(driver)
        driver.execute_script(MARKER)
        counters = text(driver, "#batch-counters")
        caption = text(driver, "#batch-progress .bar-caption")
        bar = markup(driver, "#batch-progress svg")
        assert caption.startswith(f"0 / {total}"), caption
        batch_tab = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(f"{board.url}/")
        live(driver)
        driver.execute_script(MARKER)
        row_progress = f"#row-{batch}-progress .bar-caption"
        assert text(driver, row_progress).startswith(f"0 / {total}")

        with run_simulator(db_url, scenario) as sim:
            daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
            with running(daemon):
                wait_for(driver, lambda d: not text(d, row_progress).startswith("0 /"),
                         timeout=30, what="the campaigns row to show calls done")  # fmt: skip
                screenshot(driver, tmp_path, "campaigns-mid-campaign")
                assert driver.execute_script(HAS_MARKER), "the campaigns page was reloaded"

                driver.switch_to.window(batch_tab)
                wait_for(driver, lambda d: text(d, "#batch-counters") != counters
                         and text(d, "#batch-progress .bar-caption") != caption,
                         timeout=30, what="the counters and the progress to move")  # fmt: skip
                screenshot(driver, tmp_path, "batch-mid-campaign")
                assert driver.execute_script(HAS_MARKER), "the batch page was reloaded"

                wait_finished(conn, [batch], timeout=60, services=[daemon])
                wait_for(driver, lambda d: text(d, "#batch-status .badge") == "Completed"
                         and text(d, "#batch-progress .bar-caption").startswith(
                             f"{total} / {total}"),
                         timeout=30, what="the page to show the batch completed")  # fmt: skip
        screenshot(driver, tmp_path, "batch-completed")
        assert driver.execute_script(HAS_MARKER), "the batch page was reloaded"
        assert text(driver, "#batch-counters") != counters
        assert markup(driver, "#batch-progress svg") != bar
        # Each outcome's share is drawn: more rectangles than the empty track alone.
        assert len(texts(driver, "#batch-progress svg rect")) > 1
        assert "100%" in text(driver, "#batch-progress .bar-caption")
        assert texts(driver, "#batch-actions button") == [], "no action on a finished batch"


def test_pause_in_the_page_pauses_the_batch(
    db_url: str, api: SqlApi, conn: Conn, tmp_path: Path
) -> None:
    batch = api.create_batch(api.create_tenant(), phones(3))
    with dashboard(db_url) as board, chromium() as driver:
        sign_in(driver, board)
        driver.get(f"{board.url}/batches/{batch}")
        screenshot(driver, tmp_path, "running")
        click(driver, By.CSS_SELECTOR, PAUSE)
        notice = notice_after(driver, f"/batches/{batch}/pause", "the page after pausing")
        screenshot(driver, tmp_path, "paused")
        assert notice == "Paused."
        assert batch_row(conn, batch)["status"] == "paused"
        assert text(driver, "#batch-status .badge") == "Paused"
        assert texts(driver, "#batch-actions button") == ["Resume", "Cancel batch…"]


def test_cancel_asks_for_a_reason(db_url: str, api: SqlApi, conn: Conn, tmp_path: Path) -> None:
    batch = api.create_batch(api.create_tenant(), phones(3))
    reason = "wrong list <uploaded> by mistake"
    with dashboard(db_url) as board, chromium() as driver:
        sign_in(driver, board)
        driver.get(f"{board.url}/batches/{batch}")
        driver.execute_script(MARKER)

        def open_dialog() -> WebElement:
            assert not dialog_open(driver)
            click(driver, By.XPATH, "//button[normalize-space()='Cancel batch…']")
            wait_for(driver, lambda d: dialog_open(d), what="the cancel dialog to open")
            reason_box = driver.find_element(By.ID, "cancel-reason")
            assert reason_box.is_displayed()
            return reason_box

        reason_box = open_dialog()
        screenshot(driver, tmp_path, "cancel-dialog")
        submit = driver.find_element(By.CSS_SELECTOR, '#cancel-dialog button[type="submit"]')
        assert submit.text == "Cancel the batch"
        submit.click()  # no reason: the browser does not send the form
        assert driver.execute_script(
            "return document.getElementById('cancel-reason').validity.valueMissing"
        )
        assert dialog_open(driver)
        assert path_of(driver) == f"/batches/{batch}"
        screenshot(driver, tmp_path, "cancel-without-reason")

        keep = driver.find_element(By.XPATH, "//button[normalize-space()='Keep it running']")
        keep.click()
        wait_for(driver, lambda d: not dialog_open(d), what="the dialog to close")
        assert driver.execute_script(HAS_MARKER), "the page was reloaded: the form was sent"
        assert batch_row(conn, batch) == {"status": "running", "cancel_reason": None}

        reason_box = open_dialog()
        reason_box.send_keys(reason)
        driver.find_element(By.CSS_SELECTOR, '#cancel-dialog button[type="submit"]').click()
        notice = notice_after(driver, f"/batches/{batch}/cancel", "the page after cancelling")
        screenshot(driver, tmp_path, "cancelled")
        assert notice == "Cancelled."
        assert batch_row(conn, batch) == {"status": "cancelled", "cancel_reason": reason}
        assert text(driver, "#batch-status .badge") == "Cancelled"
        assert reason in text(driver, "#batch-status .reason")
        assert driver.find_elements(By.ID, "cancel-dialog") == []


def test_a_tenant_token_sees_no_other_tenants_batch(
    db_url: str, api: SqlApi, conn: Conn, tmp_path: Path
) -> None:
    ours, theirs = api.create_tenant("Ours Dental"), api.create_tenant("Theirs Clinic")
    our_batch = api.create_batch(ours, phones(2))
    their_batch = api.create_batch(theirs, phones(2))
    with (
        login_role(conn, ours) as role,
        dashboard(db_url, [role]) as board,
        chromium() as driver,
    ):
        sign_in(driver, board, role)
        screenshot(driver, tmp_path, "campaigns-as-tenant")
        assert driver.find_elements(By.CSS_SELECTOR, f'a[href="/batches/{our_batch}"]')
        assert not driver.find_elements(By.CSS_SELECTOR, f'a[href="/batches/{their_batch}"]')
        page = text(driver, "body")
        assert str(their_batch)[:8] not in page and "Theirs Clinic" not in page
        assert "tenant-limited" in text(driver, ".topbar")
        driver.get(f"{board.url}/batches/{their_batch}")
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".error-page"),
                 what="the error page")  # fmt: skip
        screenshot(driver, tmp_path, "their-batch")
        assert response_status(driver) == 404
        assert text(driver, ".error-page .code") == "404"
        assert NOT_FOUND in text(driver, ".error-page")
        assert "Theirs Clinic" not in text(driver, "body")
        # The same page of our own batch is there.
        driver.get(f"{board.url}/batches/{our_batch}")
        assert response_status(driver) == 200
        assert "Ours Dental" in text(driver, ".batch-head")


def test_a_wrong_token_is_refused(db_url: str, api: SqlApi, tmp_path: Path) -> None:
    api.create_batch(api.create_tenant(), phones(2))
    with dashboard(db_url) as board, chromium() as driver:
        driver.get(f"{board.url}/login")
        driver.find_element(By.NAME, "token").send_keys("not-the-token")
        driver.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
        error = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".banner.error"),
                         what="the sign-in's error")  # fmt: skip
        screenshot(driver, tmp_path, "refused")
        assert error[0].text == "That token is not accepted."
        assert response_status(driver) == 401
        assert [c["name"] for c in driver.get_cookies()] == []
        driver.get(f"{board.url}/")
        assert path_of(driver) == "/login", "no session: the campaigns page sends to the sign-in"


def test_a_post_without_the_csrf_token_is_refused(
    db_url: str, api: SqlApi, conn: Conn, tmp_path: Path
) -> None:
    batch = api.create_batch(api.create_tenant(), phones(2))
    with dashboard(db_url) as board, chromium() as driver:
        sign_in(driver, board)
        driver.get(f"{board.url}/batches/{batch}")
        removed = driver.execute_script(
            "const f = document.querySelector('#pause-form input[name=csrf]');"
            "if (!f) { return false; } f.remove(); return true;"
        )
        assert removed, "the pause form has no csrf field to remove"
        click(driver, By.CSS_SELECTOR, PAUSE)
        wait_for(driver, lambda d: path_of(d) == f"/batches/{batch}/pause",
                 what="the answer to the POST")  # fmt: skip
        screenshot(driver, tmp_path, "refused")
        assert response_status(driver) == 403
        assert "CSRF" in text(driver, "body")
        assert batch_row(conn, batch)["status"] == "running"
