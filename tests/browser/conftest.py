"""Browser tests: a real server process and Debian's Chromium driven by Playwright.

The browser is always the system's ``/usr/bin/chromium`` (``apt-get install chromium``), never
one downloaded by Playwright. Without it the tests are skipped on a workstation, but fail in CI
(``CI=true``) so that the browser half of the suite cannot vanish silently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        message = f"Chromium was not found at {CHROMIUM}; install it with: apt-get install -y chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}. The browser tests must run in CI.", pytrace=False)
        pytest.skip(message)
    return str(CHROMIUM)


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}", pytrace=False
        )


SCRIPT = str(Path(sys.executable).parent / "facility-share")


@pytest.fixture(scope="session")
def server_env(chromium_path: str) -> Iterator[dict[str, str]]:
    """The environment of the server process: its own temporary database."""
    with tempfile.TemporaryDirectory(prefix="facility-share-browser-") as tmp:
        yield {
            **os.environ,
            "FACILITY_SHARE_DATABASE_URL": f"sqlite:///{tmp}/t.sqlite3",
            "FACILITY_SHARE_LOCALE": "zh_CN",
            "FACILITY_SHARE_DEBUG": "false",
        }


@pytest.fixture(scope="session")
def server(server_env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """A migrated, imported database and ``facility-share serve`` on a free port, starting up."""
    _run([SCRIPT, "db", "upgrade"], server_env)
    _run([SCRIPT, "catalog", "import", "catalog"], server_env)
    port = _free_port()
    log_path = Path(server_env["FACILITY_SHARE_DATABASE_URL"].removeprefix("sqlite:///")).parent / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(port)], cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}", process, log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="session")
def server_url(server: tuple[str, subprocess.Popen, Path]) -> str:
    """The server's base URL, once ``/healthz`` answers 200."""
    url, process, log_path = server
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return url
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"the server did not answer /healthz within {STARTUP_TIMEOUT:.0f} s:\n{log_path.read_text()}",
                pytrace=False,
            )
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    """Chromium for one test module.

    Module scope, not session: while Playwright's sync API is active it leaves its event loop
    marked as running in this thread, which would break ``asyncio.run`` in later test modules.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(server, browser, server_url: str) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) at desktop width.

    The server process is started first, so the browser launches while it boots.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def demo_data(server_env: dict[str, str], server_url: str) -> str:
    """``facility-share demo load`` against the running server's database: the demo accounts
    (password ``demo-password-2026``), enterprises, qualifications and bookings."""
    _run([SCRIPT, "demo", "load"], server_env)
    return server_url
