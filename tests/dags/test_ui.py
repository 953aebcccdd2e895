"""The Airflow web UI in a real browser: the embedded deployment (``make airflow``) behind its login, the five DAGs
with their last-run states and one DAG's grid, seen by headless Chromium through Selenium.

The test starts Airflow in its own dirs, runs ``ingest_and_validate`` (week 3: succeeds) and ``rollback`` (no
registry: fails) so the UI has a green and a red last state, then logs in as ``admin`` and reads the React UI's
DOM (its ``data-testid`` attributes). Screenshots of the login page, the DAG list, the grid and the run go to
``$RECSYS_TEST_ARTIFACTS/airflow-ui/`` (default: the test's tmp dir) and, with ``RECSYS_RENDER_AIRFLOW=DIR``, also
into DIR (how ``docs/img/airflow/`` is refreshed). A failed wait saves and shows the page's DOM.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.dags.harness import EmbeddedAirflow, library_env, require_airflow
from tests.receivers import free_port

CHROMIUM = Path(os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RECSYS_CHROMEDRIVER", "/usr/bin/chromedriver"))
DAG_IDS = ("ab_decision", "ingest_and_validate", "monitor", "retrain", "rollback")
INGEST_TASKS = ("replay_week", "in_timeline", "ingest", "validate", "publish")
WAIT = 90.0
"""Seconds a browser wait may take (generous: 2 shared cores, a React app polling the API)."""


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium showing pages of 1600x1000 (``--no-sandbox``: CI runs as root)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER} (make browser-tools)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:  # headless Chromium's window includes its (invisible) toolbars: make the page itself 1600x1000
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        driver.set_window_size(2 * 1600 - inner[0], 2 * 1000 - inner[1])
        yield driver
    finally:
        driver.quit()


def _dom(html: str, limit: int = 6000) -> str:
    """The page's markup without scripts, styles, icons and CSS classes (what a failure message shows)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(r"<svg\b.*?</svg>", "<svg/>", html, flags=re.S)
    html = re.sub(r' (class|style)="[^"]*"', "", html)
    return html[:limit]


class Pages:
    """The browser's waits and screenshots; a wait that times out saves the DOM and fails with it."""

    def __init__(self, driver: Any, out: list[Path]) -> None:
        self.driver, self.out = driver, out

    def wait(self, what: str, cond: Callable[[Any], Any], timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:  # React re-renders: an element found may be gone when read (stale), the next poll finds the new one
            return WebDriverWait(self.driver, timeout, poll_frequency=0.5,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(cond)
        except TimeoutException:
            html = self.driver.page_source
            name = re.sub(r"\W+", "-", what).strip("-")[:60]
            (self.out[0] / f"failed-{name}.html").write_text(html)
            self.driver.save_screenshot(str(self.out[0] / f"failed-{name}.png"))
            raise AssertionError(f"UI: {what} not within {timeout:.0f} s at {self.driver.current_url}; page saved to "
                                 f"{self.out[0]}:\n{_dom(html)}") from None

    def css(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def shot(self, name: str) -> None:
        first = self.out[0] / f"{name}.png"
        assert self.driver.save_screenshot(str(first)), f"screenshot {name} failed"
        for extra in self.out[1:]:
            shutil.copyfile(first, extra / first.name)


def _out_dirs(tmp_path: Path) -> list[Path]:
    dirs = [Path(os.environ.get("RECSYS_TEST_ARTIFACTS") or tmp_path) / "airflow-ui"]
    if render := os.environ.get("RECSYS_RENDER_AIRFLOW", "").strip():
        dirs.append(Path(render))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def _login(pages: Pages, url: str, password: str) -> None:
    """The base URL redirects to SimpleAuthManager's login form; fill it in, submit, leave the login page."""
    from selenium.webdriver.common.by import By

    pages.driver.get(f"{url}/")
    pages.wait("the login form", lambda d: "/auth/login" in d.current_url and d.find_elements(By.NAME, "username"))
    assert "Sign into Airflow" in pages.driver.page_source
    pages.driver.find_element(By.NAME, "username").send_keys("admin")
    pages.driver.find_element(By.NAME, "password").send_keys(password)
    pages.shot("login")
    pages.wait("an enabled Sign in button", lambda d: d.find_element(By.CSS_SELECTOR, "form button[type=submit]")
               if d.find_element(By.CSS_SELECTOR, "form button[type=submit]").is_enabled() else False).click()
    pages.wait("leaving the login page", lambda d: "/auth/login" not in d.current_url)


def _dag_cards(pages: Pages) -> dict[str, tuple[str | None, str]]:
    """DAG id -> (the latest run's state badge, the latest run's link) of every card of the DAG list."""
    from selenium.webdriver.common.by import By

    cards = {}
    for card in pages.css("[data-testid=dag-card]"):
        ids = card.find_elements(By.CSS_SELECTOR, "[data-testid=dag-id]")
        if not ids:
            continue
        badge = card.find_elements(By.CSS_SELECTOR, "[data-testid=latest-run] [data-testid=state-badge]")
        link = card.find_elements(By.CSS_SELECTOR, "[data-testid=latest-run] a[href]")
        cards[ids[0].text.strip()] = (badge[0].get_attribute("aria-label") if badge else None,
                                      unquote(link[0].get_attribute("href")) if link else "")
    return cards


def _task_states(pages: Pages) -> dict[str, str]:
    """Task id -> the state badge's text of each row of a run page's task-instance table."""
    from selenium.webdriver.common.by import By

    states = {}
    for row in pages.css("tr"):
        task = row.find_elements(By.CSS_SELECTOR, "[data-testid=truncated-text][title]")
        state = row.find_elements(By.CSS_SELECTOR, "[data-testid=table-cell-state] [data-testid=state-badge]")
        if task and state:
            states[str(task[0].get_attribute("title"))] = state[0].text.strip()
    return states


@pytest.mark.timeout(600)
def test_the_web_ui_shows_the_dags_their_last_states_and_the_grid(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path], browser: Any) -> None:
    require_airflow()
    raw_data_dir(tmp_path)
    out = _out_dirs(tmp_path)
    # no cron runs (monitor every 15 min, the weekly runs catching up): only this test's runs, which then wait
    # for nothing and are the latest ones the UI shows
    env = library_env(tmp_path, AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False")
    with EmbeddedAirflow(tmp_path / "airflow", free_port(), env) as af:
        # a logical date: the DAG's templates read {{ logical_date }}, undefined for a run triggered without one
        ok = af.trigger("ingest_and_validate", {"week": 3}, logical_date=datetime.now(UTC).isoformat())
        assert af.wait_run("ingest_and_validate", ok) == "success", af.tasks("ingest_and_validate", ok)
        bad = af.trigger("rollback", {"reason": "ui test"})
        assert af.wait_run("rollback", bad) == "failed"

        # auth stays on: the API refuses a request without a token
        assert httpx.get(f"{af.url}/api/v2/dags", timeout=30).status_code == 401

        pages = Pages(browser, out)
        _login(pages, af.url, af.password)

        browser.get(f"{af.url}/dags")
        pages.wait("the five DAG cards", lambda d: set(DAG_IDS) <= set(_dag_cards(pages)))
        pages.wait("the last-run states of ingest_and_validate and rollback", lambda d: (
            (c := _dag_cards(pages))["ingest_and_validate"][0] == "success" and c["rollback"][0] == "failed"))
        cards = _dag_cards(pages)
        assert cards["ingest_and_validate"][1].endswith(f"/dags/ingest_and_validate/runs/{ok}"), cards
        assert cards["rollback"][1].endswith(f"/dags/rollback/runs/{bad}"), cards
        pages.shot("dags")

        browser.get(f"{af.url}/dags/ingest_and_validate")
        pages.wait("the grid view button", lambda d: pages.css("[data-testid=grid-view-button]"))
        if not pages.css(f'[data-run-id="{ok}"]'):
            pages.css("[data-testid=grid-view-button]")[0].click()
        pages.wait(f"the grid column of run {ok}", lambda d: pages.css(f'a[href$="/runs/{ok}/"]'))
        for task in INGEST_TASKS:
            pages.wait(f"the grid row of task {task}", lambda d, t=task: [
                e for e in pages.css(f'[data-testid="task-{t}"]') if e.text.strip() == t])
            pages.wait(f"the grid cell of {task} in run {ok}",
                       lambda d, t=task: pages.css(f'a[data-testid="grid-{ok}-{t}"] [data-testid=task-state-badge]'))
        pages.shot("grid")

        # the run's own page (its grid column clicked): its state and every task instance's
        pages.wait(f"the grid column of run {ok}", lambda d: pages.css(f'a[href$="/runs/{ok}/"]'))[0].click()
        pages.wait(f"the page of run {ok}", lambda d: [
            h for h in pages.css("[data-testid=header-card] h2") if h.text.strip() == ok])
        pages.wait("the run's state badge Success", lambda d: [
            b for b in pages.css("[data-testid=header-card] [data-testid=state-badge]") if b.text.strip() == "Success"])
        pages.wait("every task instance Success",
                   lambda d: _task_states(pages) == dict.fromkeys(INGEST_TASKS, "Success"))
        pages.shot("run")
