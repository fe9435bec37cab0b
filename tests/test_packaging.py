"""A wheel, installed in a fresh virtual environment and used from another folder,
finds its templates and hook script: they are package data, not checkout files."""

from __future__ import annotations

import subprocess
import sysconfig
import venv
import zipfile
from pathlib import Path

from tests.conftest import EXAMPLES, REPO


def test_wheel_contains_templates_and_hook(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rtlibvirt/xml_templates/domain.xml.j2" in names
    assert "rtlibvirt/xml_templates/devices.xml.j2" in names
    assert "rtlibvirt/hooks/qemu" in names
    # the Cockpit page, built: `rtlibvirt cockpit install` copies it from the package
    for name in ("manifest.json", "index.html", "rtlibvirt.js", "rtlibvirt.css", "patternfly.css"):
        assert f"rtlibvirt/cockpit/{name}" in names
    assert not any(n.startswith(("xml_templates/", "hooks/", "cockpit/", "tests/")) for n in names)


def test_installed_wheel_works_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment (no network, no compiling
    # libvirt-python again); rtlibvirt itself only from the wheel.
    env_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    Path(env_site, "deps.pth").write_text(deps + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import rtlibvirt, rtlibvirt.resources as r; print(rtlibvirt.__file__); "
            "print(r.hook_script()); print(r.templates().joinpath('domain.xml.j2').is_file())",
        ],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert probe[0].startswith(str(env_dir)), "imported rtlibvirt from outside the new env"
    assert probe[1].startswith(str(env_dir)) and Path(probe[1]).is_file()
    assert probe[2] == "True"
    rendered = subprocess.run(
        [str(env_dir / "bin" / "rtlibvirt"), "render", str(EXAMPLES / "plc.yaml")],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    )
    assert rendered.stdout == (REPO / "tests" / "expected" / "plc.xml").read_text()
