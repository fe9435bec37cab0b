"""The page on the real libvirtd, with the hook installed (as tests/daemon/test_hook_e2e.py):

- "Make real-time" on a plain domain shows tune's diff and changes nothing until Apply;
- a real-time VM started with one FIFO vCPU on CPU 1 is seen by name on CPU 1, FIFO, isolated
  by the hook, with the hook's log lines about it;
- "Measure" of the running VM (this rtlibvirt has no `noise`: the page falls back to the
  probe) shows the probe's refusal as the CLI says it; of the stopped VM, it runs the probe
  under TCG (3 s) with its progress and shows the kept result with its plot.
The domains and the hook are removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cockpit.conftest import RTLIBVIRT, refresh, severe, wait_for
from tests.conftest import REPO, require_rt_host
from tests.daemon.test_hook_e2e import SPEC, _cleanup

pytestmark = pytest.mark.libvirtd

NAME = "rtl-cockpit-e2e"
PLAIN = "rtl-cockpit-plain"
PLAIN_XML = f"""<domain type='qemu'>
  <name>{PLAIN}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><memballoon model='virtio'/></devices>
</domain>
"""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def card_text(driver: Any, name: str) -> str:
    return str(
        driver.execute_script(
            'const c = document.querySelector(`[data-vm="${arguments[0]}"]`);'
            "return c ? c.textContent : ''",
            name,
        )
    )


def test_the_page_on_the_real_libvirtd(
    system_uri: str, open_page: Any, installed_page: Path, tmp_path: Path
) -> None:
    require_rt_host("installs a libvirt hook and starts a real-time VM")
    virsh = ("virsh", "-q", "-c", system_uri)
    hook_was_installed = Path("/etc/libvirt/hooks/qemu.d/50-rtlibvirt").exists()
    try:
        run(RTLIBVIRT, "hook", "install")
        run(str(REPO / "scripts/libvirtd-up"))
        xml = tmp_path / "plain.xml"
        xml.write_text(PLAIN_XML)
        run(*virsh, "define", str(xml))
        _, driver = open_page({"LIBVIRT_DEFAULT_URI": system_uri}, height=1400)

        # Make real-time: the diff first, nothing changed until Apply
        driver.find_element(
            "css selector", f'#other-vms [data-vm="{PLAIN}"] [data-action="tune"]'
        ).click()
        driver.find_element("css selector", '[data-action="preview"]').click()
        diff = wait_for(
            driver,
            "const d = document.querySelector('#tune-diff [data-diff]'); return d && d.textContent",
            what="the diff",
        )
        assert f"Would tune domain '{PLAIN}'" in diff and "vcpusched" in diff
        assert "vcpusched" not in run(*virsh, "dumpxml", "--inactive", PLAIN).stdout
        driver.save_screenshot(str(tmp_path / "tune.png"))
        driver.find_element("css selector", '[data-action="apply"]').click()
        done = wait_for(
            driver,
            "return [...document.querySelectorAll('#alerts .pf-m-success')].map(a => a.textContent)"
            ".join('\\n')",
            what="the tune's result",
        )
        assert f"Tuned domain '{PLAIN}'" in done
        tuned = run(*virsh, "dumpxml", "--inactive", PLAIN).stdout
        assert "<vcpusched" in tuned and "scheduler='fifo'" in tuned
        run(*virsh, "undefine", PLAIN)

        # a real-time VM on CPU 1, started: on the map, FIFO, isolated by the hook
        spec = tmp_path / "vm.yaml"
        spec.write_text(SPEC.replace("name: rtl-hook-e2e", f"name: {NAME}"))
        run(RTLIBVIRT, "define", str(spec), "-c", system_uri)
        run(*virsh, "start", NAME)
        refresh(driver)
        wait_for(
            driver,
            "const c = document.querySelector('[data-cpu=\"1\"]');"
            "return c && (c.getAttribute('data-hook-isolated') || '').split(',')"
            f".includes('{NAME}')",
            what="CPU 1 isolated by the hook for the VM",
        )
        tile = driver.find_element("css selector", '[data-cpu="1"]').text
        assert NAME in tile and "vCPU 0" in tile and "FIFO 1" in tile, tile
        assert f"isolated by the hook for {NAME}" in tile, tile
        # check's findings with their fixes: CPU 1 is not isolated at boot on this machine
        codes = driver.execute_script(
            f"return [...document.querySelectorAll('[data-vm=\"{NAME}\"] .rtl-findings li')]"
            ".map(li => li.dataset.code)"
        )
        assert "cpu-not-isolated" in codes, codes
        card = card_text(driver, NAME)
        assert "running" in card and "isolates CPUs 1" in card, card
        log = driver.execute_script(
            f"return document.querySelector('[data-vm=\"{NAME}\"] details pre').textContent"
        )
        assert f"{NAME} prepare begin: isolating CPUs 1" in log, log
        driver.save_screenshot(str(tmp_path / "running.png"))
        docs = os.environ.get("RTLIBVIRT_COCKPIT_SCREENSHOT")  # docs/cockpit.png is made so
        if docs:
            driver.execute_script(
                "document.querySelectorAll('#alerts .pf-v5-c-alert__action button')"
                ".forEach(b => b.click())"
            )
            driver.set_window_size(900, 1500)
            driver.save_screenshot(docs)
            driver.set_window_size(1280, 1400)
        assert not severe(driver)

        # Measure a running VM: `rtlibvirt noise` on its CPUs, shown by source with the fix
        driver.find_element("css selector", f'[data-vm="{NAME}"] [data-action="measure"]').click()
        noise = wait_for(
            driver,
            f"const n = document.querySelector('[data-vm=\"{NAME}\"] .rtl-noise');"
            "return n && n.textContent",
            timeout=120,
            what="the noise result",
        )
        assert f"CPU 1 ({NAME} vCPU 0)" in noise and "disturbances/s" in noise, noise
        assert "qemu-system" not in noise and "CPU 0/KVM" not in noise, noise  # the owner
        assert not severe(driver)

        # Measure the stopped VM: the probe under TCG, 3 s, its result kept and shown
        run(*virsh, "destroy", NAME)
        refresh(driver)
        wait_for(
            driver,
            f"return !document.querySelector('[data-cpu=\"1\"]').getAttribute('data-hook-isolated')"
            f' && document.querySelector(\'[data-vm="{NAME}"] [data-action="measure"]\')',
            what="the stopped VM",
        )
        driver.execute_script(
            "document.getElementById('measure-virt-type').value = 'qemu';"
            "document.getElementById('measure-duration').value = '3s'"
        )
        driver.find_element("css selector", f'[data-vm="{NAME}"] [data-action="measure"]').click()
        progress = wait_for(
            driver,
            f"const p = document.querySelector('[data-vm=\"{NAME}\"] .rtl-measure-log');"
            "return p && p.textContent",
            timeout=300,
            what="the probe's progress",
        )
        assert "probe:" in progress
        kept = wait_for(
            driver,
            f"const k = document.querySelector('[data-kept=\"{NAME}\"]'); return k && k.textContent",
            timeout=600,
            what="the probe's result",
        )
        assert "TCG: not real-time figures" in kept and "rtlibvirt: max" in kept, kept
        assert driver.execute_script(
            f"return document.querySelectorAll('[data-kept=\"{NAME}\"] svg polyline').length"
        )
        result = json.loads((installed_page / "probe" / f"{NAME}.json").read_text())
        assert result["name"] == NAME and result["virt_type"] == "qemu"
        driver.save_screenshot(str(tmp_path / "measured.png"))
    finally:
        _cleanup(virsh, RTLIBVIRT, hook_was_installed, names=(NAME, PLAIN))
