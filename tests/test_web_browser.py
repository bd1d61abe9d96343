"""The status page in a real browser: Debian's Chromium, headless, through selenium and
/usr/bin/chromedriver, on the page the real `dialer run` serves while the demo campaign runs
against the simulator.

It sees the progress bar advance without the page reloading, the counts equal to what
`dialer status` prints once the campaign is quiet, follows the link to the campaign page and
saves screenshots (``DIALER_SCREENSHOTS=docs`` writes the README's). Without a browser it
skips, saying how to install one, unless CI is set: CI always runs it (.ci/run installs
Chromium when it is missing).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialer.demo import FORCED_OUTCOMES_FILE, unpack_demo_campaign
from dialer.simulator import Simulator, SimulatorConfig, serve
from tests.e2e import KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "sudo apt-get install -y chromium chromium-driver"
DIALER = str(Path(sys.executable).with_name("dialer"))
#: without the background-networking flags, Chromium's own connections are refused here
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
TIME_SCALE = 30.0
WAIT_S = 120.0


def require_browser() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test, but {CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip(f"no Chromium here; install Debian's with `{INSTALL}` (CI always runs this)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_files(folder: Path) -> dict[str, str]:
    """The demo campaign (`dialer demo`'s own files) written to ``folder``; the simulator's
    forced outcomes for its numbers."""
    campaign = unpack_demo_campaign(folder)
    assert campaign == folder / "demo.toml"
    forced = campaign.with_name(FORCED_OUTCOMES_FILE)
    if not forced.exists():
        return {}
    with forced.open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).get("outcomes", {}).items()}


def write_config(folder: Path, base_url: str, port: int) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f"""
[voicedock]
base_url = "{base_url}"
requests_per_minute = {int(100 * TIME_SCALE)}

[database]
url = "sqlite:///{folder / "demo.db"}"

[dialer]
campaigns = ["demo.toml"]
max_concurrent_calls = 12
poll_interval = "1s"
expected_call_length = "3s"
list_interval = "2s"
reconcile_settle = "3s"
stuck_after = "3m"

[web]
listen = "127.0.0.1:{port}"
refresh = "1s"
""",
        encoding="utf-8",
    )
    return path


def dialer_status(config: Path) -> tuple[dict[tuple[str, str | None], int], tuple[int, ...]]:
    """What `dialer status` prints for the demo: attempts per (state, outcome), and
    (settled, contacts, in flight)."""
    done = subprocess.run(
        [DIALER, "status", "demo", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    counts = {
        (state, None if outcome == "-" else outcome): int(n)
        for state, outcome, n in re.findall(
            r"│\s*(\w+)\s*│\s*([\w-]+)\s*│\s*(\d+)\s*│", done.stdout
        )
    }
    line = re.search(r"settled (\d+)/(\d+) · in flight (\d+)", done.stdout)
    assert line is not None, done.stdout
    return counts, tuple(int(x) for x in line.groups())


#: the overview's figures for the demo, read in one go (a refresh swaps the nodes between
#: two separate reads of selenium's)
READ_PAGE = """
const demo = document.querySelector('article.campaign[data-campaign="demo"]');
const updated = document.querySelector("p.updated");
if (!demo || !updated) { return null; }
return {
  settled: Number(demo.dataset.settled),
  total: Number(demo.dataset.total),
  inFlight: Number(demo.dataset.inFlight),
  nextDue: demo.dataset.nextDue,
  updated: updated.dataset.updated,
  bar: demo.querySelector("rect.done").getAttribute("width"),
  counts: Array.from(demo.querySelectorAll("table.counts tbody tr[data-state]")).map(
    (row) => [row.dataset.state, row.dataset.outcome, row.querySelector("td.n").textContent]
  ),
};
"""


class Page:
    """The overview in Chromium, read through its data attributes."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def read(self) -> dict[str, Any]:
        figures: dict[str, Any] | None = self.driver.execute_script(READ_PAGE)
        assert figures is not None, "no demo campaign on the overview"
        return figures

    def counts(self) -> dict[tuple[str, str | None], int]:
        return {
            (state, outcome or None): int(n.replace(",", ""))
            for state, outcome, n in self.read()["counts"]
        }

    def line(self) -> tuple[int, int, int]:
        figures = self.read()
        return figures["settled"], figures["total"], figures["inFlight"]

    def quiet(self) -> bool:
        """Nothing in flight and nothing due within a minute: the counts hold still."""
        figures = self.read()
        due = figures["nextDue"]
        soon = due and datetime.fromisoformat(due) < datetime.now(UTC) + timedelta(minutes=1)
        return figures["inFlight"] == 0 and not soon

    def until(self, condition: Callable[[], object], what: str) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.2).until(
            lambda _: condition(), message=what
        )


def whole_page(driver: Any, path: Path) -> None:
    """A screenshot of the whole page (the window made as tall as the page, within reason)."""
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1280, min(int(height) + 120, 2600))
    driver.save_screenshot(str(path))


def browse(url: str, config: Path, shots: Path) -> dict[str, Any]:
    """The browser's part, in a thread of its own (selenium blocks)."""
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="dialer-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    seen: dict[str, Any] = {}
    try:
        driver.get(url)
        page = Page(driver)
        page.until(lambda: driver.execute_script(READ_PAGE), "no demo campaign on the page")
        driver.execute_script("window.sameDocument = true;")
        settled = [page.read()["settled"]]

        def advanced() -> bool:
            figures = page.read()
            if figures["settled"] != settled[-1]:
                settled.append(figures["settled"])
            return len(settled) >= 3 or (len(settled) >= 2 and settled[-1] == figures["total"])

        page.until(advanced, "the progress bar never advanced")
        seen["settled"] = settled
        page.until(page.quiet, "the campaign never went quiet")
        while True:  # the counts as the page shows them, unchanged around `dialer status`
            before, stamp = (page.counts(), page.line()), page.read()["updated"]
            status = dialer_status(config)
            page.until(lambda stamp=stamp: page.read()["updated"] != stamp, "no more refreshes")
            if (page.counts(), page.line()) == before:
                break
        seen["page"] = before
        seen["status"] = status
        seen["bar"] = page.read()["bar"]
        seen["same_document"] = driver.execute_script("return window.sameDocument === true;")
        seen["overview_html"] = driver.page_source
        whole_page(driver, shots / "status-overview.png")

        def follow_the_link() -> bool:
            try:
                driver.find_element(By.LINK_TEXT, "demo").click()
            except StaleElementReferenceException:  # a refresh swapped it in between
                return False
            return True

        page.until(follow_the_link, "no link to the campaign")
        page.until(lambda: driver.current_url.endswith("/campaigns/demo"), "no campaign page")
        page.until(
            lambda: driver.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar"), "no outcome chart"
        )
        seen["campaign_rows"] = driver.execute_script(
            "return document.querySelectorAll('tr[data-attempt]').length;"
        )
        seen["campaign_html"] = driver.page_source
        whole_page(driver, shots / "status-campaign.png")
        return seen
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-2000:]


async def wait_for_page(url: str, daemon: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if daemon.returncode is not None:
                pytest.fail(f"dialer run exited {daemon.returncode}:\n{tail(log)}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"the status page never answered at {url}:\n{tail(log)}")


def screenshots_folder(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def test_the_overview_in_a_browser_while_the_demo_runs(tmp_path: Path) -> None:
    require_browser()
    shots = screenshots_folder(tmp_path)
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=TIME_SCALE,
            requests_per_minute=100,
            scale_rate_limit=True,
            seed=7,
            destination_outcomes=demo_files(tmp_path),
        )
    )
    async with serve(sim, host="127.0.0.1", port=0) as base_url:
        port = free_port()
        config = write_config(tmp_path, base_url, port)
        log = tmp_path / "dialer.log"
        with log.open("wb") as err:
            daemon = await asyncio.create_subprocess_exec(
                DIALER,
                "run",
                "--config",
                str(config),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "VOICEDOCK_API_KEY": KEY},
            )
        try:
            url = f"http://127.0.0.1:{port}/"
            await wait_for_page(url, daemon, log)
            seen = await asyncio.to_thread(browse, url, config, shots)
        finally:
            if daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(daemon.wait(), timeout=30)
    assert code == 0, tail(log)
    settled = seen["settled"]
    assert settled == sorted(settled) and settled[-1] > settled[0]  # advanced, never back
    assert seen["same_document"], "the page reloaded instead of refreshing its figures"
    page_counts, page_line = seen["page"]
    status_counts, status_line = seen["status"]
    assert page_counts == status_counts
    assert page_line == status_line
    assert seen["campaign_rows"] > 0
    for html in (seen["overview_html"], seen["campaign_html"]):
        assert KEY not in html  # the API key is on no page
    assert (shots / "status-overview.png").stat().st_size > 10_000
    assert (shots / "status-campaign.png").stat().st_size > 10_000
