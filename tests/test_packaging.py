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


def fresh_env(env_dir: Path, wheel: Path, deps: Path) -> Path:
    """A new venv with rtlibvirt from ``wheel`` only and its dependencies from ``deps``
    (a folder on its path: no network, no compiling libvirt-python again); its Python."""
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(env_site, "deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return python


def test_installed_wheel_works_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    python = fresh_env(env_dir, wheel, Path(sysconfig.get_paths()["purelib"]))
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


# What a guest's `pip install rtlibvirt` brings: the core dependencies, not libvirt-python.
GUEST_DEPS = ("click", "jinja2", "markupsafe", "lxml", "ruamel")


def test_wheel_needs_libvirt_python_only_for_its_host_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    libvirt = [line for line in requires if "libvirt-python" in line]
    assert libvirt and all('extra == "host"' in line for line in libvirt), requires
    assert "Provides-Extra: host" in metadata


def test_guest_install_without_libvirt_runs_guest_prep(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with the wheel and its core dependencies only (no libvirt-python):
    guest-prep plans on a faithful root; a command that needs libvirt says what to install."""
    from tests.fakes.roots import make_tree

    deps = tmp_path / "deps"
    deps.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower().replace("_yaml", "")
        if top in GUEST_DEPS:
            (deps / entry.name).symlink_to(entry)
    env_dir = tmp_path / "env"
    python = fresh_env(env_dir, wheel, deps)
    no_libvirt = subprocess.run(
        [str(python), "-c", "import libvirt"], capture_output=True, text=True, cwd=tmp_path
    )
    assert no_libvirt.returncode == 1 and "No module named 'libvirt'" in no_libvirt.stderr

    root = make_tree(tmp_path / "guest-root", "debian", cpus=4)
    rtlibvirt = str(env_dir / "bin" / "rtlibvirt")
    done = subprocess.run(
        [rtlibvirt, "guest-prep", "plan", str(EXAMPLES / "plc.yaml"), "--root", str(root)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "isolcpus=managed_irq,domain,1-3" in done.stdout and "irqaffinity=0" in done.stdout
    host_yaml = tmp_path / "host.yaml"
    host_yaml.write_text("isolated_cpus: 1-3\n")
    done = subprocess.run(
        [rtlibvirt, "host-prep", "plan", str(host_yaml), "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "nohz_full=1-3" in done.stdout
    refused = subprocess.run(
        [rtlibvirt, "define", str(EXAMPLES / "plc.yaml"), "--connect", "test:///default"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert refused.returncode == 1, refused.stderr
    assert "pip install 'rtlibvirt[host]'" in refused.stderr
    assert "Traceback" not in refused.stderr
