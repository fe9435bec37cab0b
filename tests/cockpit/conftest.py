"""The browser tests' fixtures: the page installed by `rtlibvirt cockpit install --dir`, a
cockpit-ws serving it, a headless chromium, and a check that the browser logged no error."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cockpit import harness

RTLIBVIRT = str(Path(sys.executable).with_name("rtlibvirt"))


@pytest.fixture(scope="module")
def installed_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_DATA_HOME with the page installed under cockpit/rtlibvirt/, as a user would."""
    problem = harness.missing()
    if problem:
        pytest.skip(problem)
    data_home = tmp_path_factory.mktemp("xdg-data")
    subprocess.run(
        [RTLIBVIRT, "cockpit", "install", "--dir", str(data_home / "cockpit")],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "RTLIBVIRT_PROBE_RESULTS": str(data_home / "probe")},
    )
    return data_home


def wait_for(driver: Any, script: str, timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            shown = driver.execute_script("return document.body.innerText")[-2000:]
            pytest.fail(f"timed out waiting for {what or script}; the page shows:\n{shown}")
        time.sleep(0.2)


def loaded(driver: Any) -> None:
    """Wait until the page has every part (it says so after each refresh)."""
    wait_for(driver, "return document.body.getAttribute('data-loaded') === 'true'", what="the page")


def refresh(driver: Any) -> None:
    driver.find_element("id", "refresh").click()
    loaded(driver)


def severe(driver: Any) -> list[str]:
    """The browser's console errors (and failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def open_page(
    installed_page: Path, tmp_path: Path
) -> Iterator[Callable[..., tuple[harness.Cockpit, Any]]]:
    """Start a cockpit-ws (one browser session each) and a browser on the page; both are
    stopped afterwards, and the test fails on any console error the browser logged."""
    opened: list[tuple[Any, Any]] = []

    def open_(
        env: dict[str, str] | None = None,
        width: int = 1280,
        height: int = 900,
        user: str | None = None,
        data_home: Path | None = None,
    ) -> tuple[harness.Cockpit, Any]:
        environment = {"RTLIBVIRT_PROBE_RESULTS": str(installed_page / "probe"), **(env or {})}
        ws_cm = harness.cockpit_ws(
            data_home or installed_page, tmp_path / f"ws{len(opened)}.log", environment, user
        )
        ws = ws_cm.__enter__()
        try:
            driver = harness.browser(width, height)
        except BaseException:
            ws_cm.__exit__(None, None, None)
            raise
        opened.append((ws_cm, driver))
        driver.get(ws.page_url())
        loaded(driver)
        return ws, driver

    yield open_
    errors: list[str] = []
    for ws_cm, driver in opened:
        try:
            errors += severe(driver)
        finally:
            driver.quit()
            ws_cm.__exit__(None, None, None)
    assert not errors, "the browser logged errors:\n" + "\n".join(errors)
