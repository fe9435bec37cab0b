"""Installing the hook, its status, and the installed hook run as libvirt runs it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt import __version__
from rtlibvirt.cli import cli
from rtlibvirt.errors import HostError, InputError
from rtlibvirt.hook import install as hookinstall
from rtlibvirt.hook.state import JOURNAL_FILE, LOCK_FILE, STATE_FILE, peek
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.hook import PLAIN_XML, domain_xml
from tests.fakes.host import BTIME, add_vm, build_host, snapshot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    return tmp_path / "hooks"


@pytest.fixture
def installed(hooks_dir: Path) -> Path:
    return hookinstall.install(hooks_dir).path


def fake_daemon(root: Path, started: float, pid: int = 4242) -> None:
    """A libvirtd that started at epoch ``started`` in the fake /proc."""
    ticks = round((started - BTIME) * os.sysconf("SC_CLK_TCK"))
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "run/libvirtd.pid").write_text(f"{pid}\n")
    proc = root / f"proc/{pid}"
    proc.mkdir(parents=True)
    (proc / "comm").write_text("libvirtd\n")
    fields = ["S"] + ["0"] * 49
    fields[22 - 3] = str(ticks)
    (proc / "stat").write_text(f"{pid} (libvirtd) " + " ".join(fields) + "\n")


# ---- install, uninstall ---------------------------------------------------------------


def test_the_installed_hook_runs_this_python_in_isolated_mode(installed: Path) -> None:
    text = installed.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert f"RTLIBVIRT_VERSION='{__version__}'" in lines
    assert f"RTLIBVIRT_PYTHON='{sys.executable}'" in lines
    assert f"RTLIBVIRT_PATH='{REPO}'" in lines
    assert '"${RTLIBVIRT_PYTHON:-python3}" -I -S -c \'' in text
    assert installed.stat().st_mode & 0o777 == 0o755
    # everything else is hooks/qemu as shipped
    source = (REPO / "hooks/qemu").read_text().splitlines()
    assert [ln for ln in lines if not ln.startswith("RTLIBVIRT_")] == [
        ln for ln in source if not ln.startswith("RTLIBVIRT_")
    ]


def test_install_never_touches_the_users_own_hook(hooks_dir: Path) -> None:
    hooks_dir.mkdir()
    mine = hooks_dir / "qemu"
    mine.write_text("#!/bin/sh\necho mine\n")
    mine.chmod(0o700)
    stat = mine.stat()
    result = hookinstall.install(hooks_dir)
    assert result.changed
    assert result.user_hook == mine
    assert mine.read_text() == "#!/bin/sh\necho mine\n"
    assert mine.stat().st_mtime_ns == stat.st_mtime_ns
    assert mine.stat().st_mode & 0o777 == 0o700


def test_installing_again_changes_nothing(installed: Path, hooks_dir: Path) -> None:
    mtime = installed.stat().st_mtime_ns
    result = hookinstall.install(hooks_dir)
    assert not result.changed
    assert installed.stat().st_mtime_ns == mtime


def test_install_does_not_replace_a_file_it_did_not_write(hooks_dir: Path) -> None:
    target = hooks_dir / hookinstall.HOOK_NAME
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(HostError, match="was not installed by rtlibvirt; nothing was changed"):
        hookinstall.install(hooks_dir)
    assert target.read_text() == "#!/bin/sh\nexit 0\n"


def test_uninstall(installed: Path, hooks_dir: Path, tmp_path: Path) -> None:
    fs = HostFS(tmp_path / "root")
    assert hookinstall.uninstall(hooks_dir, fs=fs)
    assert not installed.exists()
    assert not hookinstall.uninstall(hooks_dir, fs=fs)


def test_uninstall_refuses_while_vms_are_isolated(
    installed: Path, hooks_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    state = root / STATE_FILE.lstrip("/")
    state.parent.mkdir(parents=True)
    claim = {"cpus": "1", "phase": "running", "pid": 7, "since": 0, "settings": {}}
    state.write_text(json.dumps({"format": 1, "claims": {"plc": claim}}))
    with pytest.raises(InputError, match=r"isolated by the hook now \(plc\)"):
        hookinstall.uninstall(hooks_dir, fs=HostFS(root))
    assert installed.exists()
    assert hookinstall.uninstall(hooks_dir, fs=HostFS(root), force=True)


# ---- status ---------------------------------------------------------------------------


def test_status_tells_whether_the_daemon_must_restart(
    installed: Path, hooks_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    build_host(root)
    installed_at = installed.stat().st_mtime
    fake_daemon(root, installed_at - 60)
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.installed and st.current and st.python_ok
    assert st.installed_version == __version__
    assert st.daemon is not None and st.daemon.pid == 4242
    assert abs(st.daemon.started - (installed_at - 60)) < 0.1
    assert st.needs_restart is True
    assert not st.ok

    other = tmp_path / "root2"
    build_host(other)
    fake_daemon(other, installed_at + 60)
    st = hookinstall.status(hooks_dir, HostFS(other))
    assert st.needs_restart is False
    assert st.ok


def test_status_of_an_edited_or_missing_hook(
    installed: Path, hooks_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    build_host(root)
    installed.write_text(installed.read_text() + "# edited\n")
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.installed and not st.current
    installed.unlink()
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert not st.installed and st.needs_restart is None and not st.ok


def test_status_reports_a_set_aside_state_file(
    installed: Path, hooks_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    build_host(root)
    fake_daemon(root, installed.stat().st_mtime + 1)
    aside = root / "run/rtlibvirt/state.json.corrupt-20260101T000000-1"
    aside.parent.mkdir(parents=True)
    aside.write_text("garbage")
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.set_aside == [str(aside)]
    assert not st.ok


def test_the_cli(hooks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the hook state of a fake host, not the live one (where VMs may run meanwhile)
    monkeypatch.setenv("RTLIBVIRT_HOST_ROOT", str(tmp_path / "root"))
    runner = CliRunner()
    result = runner.invoke(cli, ["hook", "status", "--hooks-dir", str(hooks_dir)])
    assert result.exit_code == 3
    assert "not installed" in result.output
    result = runner.invoke(cli, ["hook", "install", "--hooks-dir", str(hooks_dir)])
    assert result.exit_code == 0, result.output
    assert f"installed the rtlibvirt hook {__version__} as {hooks_dir}/qemu.d/50-rtlibvirt" in (
        result.output
    )
    result = runner.invoke(cli, ["hook", "status", "--hooks-dir", str(hooks_dir)])
    assert f"hook       installed: {hooks_dir}/qemu.d/50-rtlibvirt" in result.output
    result = runner.invoke(cli, ["hook", "uninstall", "--hooks-dir", str(hooks_dir)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    result = runner.invoke(cli, ["hook", "uninstall", "--hooks-dir", str(hooks_dir)])
    assert "is not installed" in result.output


def test_the_cli_reports_errors_in_one_line(hooks_dir: Path) -> None:
    target = hooks_dir / hookinstall.HOOK_NAME
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\n")
    result = CliRunner().invoke(cli, ["hook", "install", "--hooks-dir", str(hooks_dir)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output


# ---- the installed hook, run as a process -----------------------------------------------


def run_hook(hook: Path, root: Path, args: list[str], xml: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    return subprocess.run(
        [str(hook), *args], input=xml, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_domain_without_metadata_costs_no_imports(installed: Path, tmp_path: Path) -> None:
    result = run_hook(installed, tmp_path, ["plain", "prepare", "begin", "-"], PLAIN_XML)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    probe = (
        "import io, sys; sys.path.insert(0, sys.argv[1]); from rtlibvirt import hook; "
        "rc = hook.main(['plain', 'prepare', 'begin', '-'], io.StringIO(sys.argv[2])); "
        "print(rc, sorted(m for m in sys.modules if m.startswith('rtlibvirt') "
        "or m in ('json', 'pathlib', 're', 'typing', 'xml')))"
    )
    out = subprocess.run(
        [sys.executable, "-IS", "-c", probe, str(REPO), PLAIN_XML],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "0 ['rtlibvirt', 'rtlibvirt.hook']"


def test_the_installed_hook_isolates_and_restores_a_fake_host(
    installed: Path, tmp_path: Path
) -> None:
    root = tmp_path / "host"
    build_host(root)
    fs = HostFS(root)
    before = snapshot(fs)
    xml = domain_xml("a", [0, 1], [1])
    add_vm(root, "a", 500, {1: (501, frozenset({1}), "fifo", 1)})
    for op in (["prepare", "begin"], ["started", "begin"]):
        result = run_hook(installed, root, ["a", *op, "-"], xml)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert fs.read("/proc/irq/24/smp_affinity") == "d"
    for op in (["stopped", "end"], ["release", "end"]):
        assert run_hook(installed, root, ["a", *op, "-"], xml).returncode == 0
    assert snapshot(fs) == before


def test_two_hook_processes_at_once_lose_no_update(installed: Path, tmp_path: Path) -> None:
    root = tmp_path / "host"
    build_host(root, cpus=8)
    fs = HostFS(root)
    before = snapshot(fs)
    vms = {"a": 1, "b": 2, "c": 3, "d": 4}
    xmls = {name: domain_xml(name, [0, cpu], [1]) for name, cpu in vms.items()}
    for index, (name, cpu) in enumerate(vms.items()):
        add_vm(root, name, 600 + 10 * index, {1: (601 + 10 * index, frozenset({cpu}), "fifo", 1)})
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}

    def spawn(name: str, op: str, sub: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(installed), name, op, sub, "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(xmls[name])
        proc.stdin.close()
        return proc

    lock = fs.path(LOCK_FILE)
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [spawn(name, "started", "begin") for name in vms]
        time.sleep(0.5)
        # while the lock is held, no hook may have finished (nor changed a value)
        assert [p.poll() for p in procs] == [None] * len(procs)
        assert snapshot(fs) == before
        fcntl.flock(held, fcntl.LOCK_UN)
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert sorted(peek(fs).claims) == sorted(vms)
    assert fs.read("/proc/irq/24/smp_affinity") == "e1"  # CPUs 0, 5, 6, 7
    stops = [spawn(name, "release", "end") for name in vms]
    for proc in stops:
        assert proc.wait(timeout=60) == 0
    assert snapshot(fs) == before
    assert not fs.path(STATE_FILE).exists()
    assert not fs.path(JOURNAL_FILE).exists()


def test_not_root_the_hooks_python_is_unknown_not_missing(
    installed: Path, hooks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venv's Python in a folder of root's cannot be looked at by another user."""
    root = tmp_path / "root"
    build_host(root)
    real_stat = os.stat

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path) == sys.executable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "stat", stat)
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.python_ok is None


def test_not_root_restore_says_to_use_sudo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rtlibvirt.hook import state

    root = tmp_path / "root"
    build_host(root)

    def refuse(self: object, timeout: float = 10) -> object:
        raise state.StateError("cannot lock /run/rtlibvirt/lock: Permission denied")

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(state.StateStore, "locked", refuse)
    with pytest.raises(HostError) as caught:
        hookinstall.restore(HostFS(root))
    assert "Permission denied" in caught.value.message
    assert caught.value.hint and "sudo" in caught.value.hint
