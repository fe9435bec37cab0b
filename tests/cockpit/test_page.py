"""The "Real-time" page in a real cockpit-ws and a real (headless) chromium, on libvirt's test
driver: it loads with no console error, draws the CPU map, follows the shell's dark style,
works at a narrow width, shows the CLI's errors as alerts, and "Make real-time" shows
`tune --dry-run`'s diff before anything is applied. Screenshots go to the test's folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.cockpit.conftest import RTLIBVIRT, severe, wait_for

TEST_URI = {"LIBVIRT_DEFAULT_URI": "test:///default"}


def texts(driver: Any, css: str) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css
        )
    )


def test_the_page_draws_the_cpus_and_vms_of_the_host(open_page: Any, tmp_path: Path) -> None:
    _, driver = open_page(TEST_URI)
    # the test driver's host: 16 CPUs on 2 NUMA nodes; its running domain "test" is not
    # real-time, so it is offered to be made real-time
    assert len(texts(driver, ".rtl-cpu")) == 16
    assert texts(driver, ".rtl-node h3")[0].startswith("NUMA node 0")
    assert "16 CPUs (0-15), 2 NUMA nodes" in driver.find_element("id", "host-line").text
    assert texts(driver, "#other-vms [data-vm] .rtl-other-name") == ["test"]
    assert "No real-time VM" in driver.find_element("id", "rt-vms").text
    assert not driver.execute_script(
        "return document.documentElement.classList.contains('pf-v5-theme-dark')"
    )
    driver.save_screenshot(str(tmp_path / "light.png"))
    assert not severe(driver)


def test_dark_style_and_a_narrow_width(open_page: Any, tmp_path: Path) -> None:
    _, driver = open_page(TEST_URI, width=420, height=1600)
    # the shell's style switch: localStorage "shell:style" and a "cockpit-style" event
    driver.execute_script(
        "localStorage.setItem('shell:style', 'dark');"
        "window.dispatchEvent(new CustomEvent('cockpit-style', {detail: {style: 'dark'}}))"
    )
    assert driver.execute_script(
        "return document.documentElement.classList.contains('pf-v5-theme-dark')"
    )
    background = driver.execute_script(
        "return getComputedStyle(document.querySelector('.pf-v5-c-card')).backgroundColor"
    )
    assert background not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), background
    # nothing wider than the window: no sideways scrolling
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways at a narrow width"
    driver.save_screenshot(str(tmp_path / "dark-narrow.png"))
    driver.execute_script("localStorage.removeItem('shell:style')")


def test_cli_errors_are_alerts_with_message_and_hint(open_page: Any) -> None:
    _, driver = open_page({"LIBVIRT_DEFAULT_URI": "test:///nonexistent/host.xml"})
    alerts = wait_for(
        driver,
        "return [...document.querySelectorAll('#alerts .pf-v5-c-alert')].map(a => a.textContent)",
        what="an alert",
    )
    assert any(
        "rtlibvirt status: cannot connect to test:///nonexistent/host.xml" in a for a in alerts
    ), alerts
    assert driver.find_element("id", "host-line").text == "Could not read the host"
    # the hint line of the CLI's error is the alert's description
    descriptions = texts(driver, "#alerts .pf-v5-c-alert__description")
    assert descriptions and all(d.strip() for d in descriptions), descriptions


def test_make_real_time_shows_the_diff_first(open_page: Any, tmp_path: Path) -> None:
    _, driver = open_page(TEST_URI)
    driver.find_element("css selector", '#other-vms [data-vm="test"] [data-action="tune"]').click()
    apply = driver.find_element("css selector", '[data-action="apply"]')
    assert not apply.is_enabled()  # nothing to apply before the changes were shown
    driver.find_element("css selector", '[data-action="preview"]').click()
    diff = wait_for(
        driver,
        "const d = document.querySelector('#tune-diff [data-diff]'); return d && d.textContent",
        what="the diff",
    )
    assert "Would tune domain 'test'" in diff
    assert '+    <vcpusched priority="1" scheduler="fifo" vcpus="1"/>' in diff, diff
    assert apply.is_enabled()
    driver.save_screenshot(str(tmp_path / "tune.png"))
    # a refusal is the CLI's, shown as it says it
    textarea = driver.find_element("id", "tune-yaml")
    textarea.clear()
    textarea.send_keys("cpu:\n  pinning: [99, 98]\n  emulator: auto\n")
    driver.find_element("css selector", '[data-action="preview"]').click()
    alert = wait_for(
        driver,
        "const a = document.querySelector('#tune-diff .pf-v5-c-alert'); return a && a.textContent",
        what="the refusal",
    )
    assert "rtlibvirt tune --dry-run:" in alert and "99" in alert, alert
    assert not apply.is_enabled()


def test_a_user_without_admin_rights_gets_a_read_only_page(open_page: Any, tmp_path: Path) -> None:
    """cockpit-ws and its bridge run as `nobody`: no superuser, so no Measure, no tune."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run cockpit-ws as another user")
    # a data home that `nobody` can read (the test's own folder is root's only)
    home = Path(tempfile.mkdtemp(prefix="rtl-cockpit-"))
    try:
        home.chmod(0o755)
        subprocess.run(
            [RTLIBVIRT, "cockpit", "install", "--dir", str(home / "cockpit")],
            check=True,
            capture_output=True,
        )
        _, driver = open_page(TEST_URI, user="nobody", data_home=home)
        note = wait_for(
            driver,
            "const n = document.getElementById('readonly'); return !n.hidden && n.textContent",
            what="the read-only note",
        )
        assert "Read-only: you are not an administrator of this host" in note
        # can the bridge (as nobody) run this rtlibvirt at all? Asked through Cockpit itself
        runnable = driver.execute_async_script(
            "const done = arguments[1];"
            "cockpit.spawn([arguments[0], '-V']).then(() => done(true), () => done(false))",
            RTLIBVIRT,
        )
        if runnable:
            # what the user may read is shown; every action is disabled
            assert len(texts(driver, ".rtl-cpu")) == 16, texts(driver, "#alerts")
            tune = driver.find_element(
                "css selector", '#other-vms [data-vm="test"] [data-action="tune"]'
            )
            assert not tune.is_enabled()
        else:
            # this venv's Python is not for other users (e.g. under /root): the page says so
            alerts = texts(driver, "#alerts .pf-v5-c-alert")
            assert any(f"cannot run {RTLIBVIRT} as this user" in a for a in alerts), alerts
            assert not texts(driver, '[data-action="tune"], [data-action="measure"]')
        driver.save_screenshot(str(tmp_path / "read-only.png"))
    finally:
        shutil.rmtree(home)
