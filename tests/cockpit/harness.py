"""A real cockpit-ws serving rtlibvirt's page, and a headless chromium looking at it.

cockpit-ws runs without TLS on 127.0.0.1 with a free port, in a local session
(``--local-session=cockpit-bridge``: no login; the bridge runs as this user)
under ``setsid dbus-run-session``, with ``XDG_DATA_HOME`` pointing at a folder
where ``rtlibvirt cockpit install --dir`` put the page (Cockpit reads its packages
when the session starts). It is stopped by its process group. Chromium is Debian's,
driven by its own chromedriver; nothing downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.probe.run import _stop as stop_group  # SIGTERM its group, SIGKILL after 10 s

WS = Path("/usr/lib/cockpit/cockpit-ws")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing() -> str | None:
    for path in (WS, CHROMIUM, CHROMEDRIVER, Path("/usr/bin/dbus-run-session")):
        if not path.exists():
            return f"{path} is missing (scripts/install-deps installs it)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cockpit:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def page_url(self) -> str:
        return f"{self.url}/cockpit/@localhost/rtlibvirt/index.html"


@contextlib.contextmanager
def cockpit_ws(
    data_home: Path, log: Path, env: dict[str, str] | None = None, user: str | None = None
) -> Iterator[Cockpit]:
    port = free_port()
    argv = [
        "setsid",
        "dbus-run-session",
        "--",
        str(WS),
        "--no-tls",
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--local-session=cockpit-bridge",
    ]
    if user is not None:
        import pwd

        group = pwd.getpwnam(user).pw_gid
        argv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", *argv]
    environment = {**os.environ, "XDG_DATA_HOME": str(data_home), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=environment, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/cockpit/login", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cockpit-ws did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield Cockpit(url, process, log)
    finally:
        stop_group(process)  # setsid made it the leader of its own process group


def browser(width: int = 1280, height: int = 900):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
