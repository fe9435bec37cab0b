"""The installed hook's shell entry: which calls reach Python, stdin, exit codes, upgrades.

libvirt runs the hook for every domain at every step. The entry (hooks/qemu)
decides without Python which calls need rtlibvirt; here a recorder stands in
for the Python it starts, so that each test sees exactly which calls reach it,
with which arguments and which stdin, and what the hook answers libvirt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt import __version__
from rtlibvirt.cli import cli
from rtlibvirt.hook import MAX_XML, main
from rtlibvirt.hook import install as hookinstall
from rtlibvirt.hook.state import STATE_FILE
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.hook import PLAIN_XML, domain_xml
from tests.fakes.host import add_vm, build_host, snapshot

REPO = Path(__file__).resolve().parents[2]
OLD_ENTRY = REPO / "tests/data/hooks/qemu-python-entry"  # hooks/qemu before the shell entry

# What libvirt 9.0 calls (src/util/virhook.c, qemu_process.c), as "op subop".
LIBVIRT_CALLS = [
    ("prepare", "begin"),
    ("start", "begin"),
    ("started", "begin"),
    ("stopped", "end"),
    ("release", "end"),
    ("migrate", "begin"),
    ("restore", "begin"),
    ("reconnect", "begin"),
    ("attach", "begin"),
]
NEEDS_RTLIBVIRT = {"prepare", "started", "stopped", "release", "reconnect"}

RECORDER = """#!/bin/sh
# stands in for the hook's Python: $1..$4 are -I -S -c CODE, $5 the package folder
echo "$1 $2 $3 $5 | $6 $7 $8 $9" >> "$RECORD/calls"
cat > "$RECORD/stdin.$7"
exit "${RECORDER_EXIT:-0}"
"""


@pytest.fixture
def rt_xml() -> str:
    return domain_xml("rt", [0, 1], [1]) + "\n\n"  # trailing newlines must survive


class Entry:
    """The installed hook with a recording Python, run as libvirt runs it."""

    def __init__(self, tmp_path: Path, python: str | None = None) -> None:
        self.record = tmp_path / "record"
        self.record.mkdir()
        self.root = tmp_path / "root"
        self.root.mkdir()
        if python is None:
            recorder = tmp_path / "python"
            recorder.write_text(RECORDER)
            recorder.chmod(0o755)
            python = str(recorder)
        self.hooks = tmp_path / "hooks"
        self.path = self.hooks / hookinstall.HOOK_NAME
        self.path.parent.mkdir(parents=True)
        self.path.write_text(hookinstall.render(python, tmp_path / "pkg"))
        self.path.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "RTLIBVIRT_HOST_ROOT": str(self.root),
            "RECORD": str(self.record),
            **extra,
        }

    def __call__(
        self, name: str, op: str, sub: str, xml: str | bytes, **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        data = xml.encode() if isinstance(xml, str) else xml
        return subprocess.run(
            [str(self.path), name, op, sub, "-"],
            input=data,
            env=self.env(**env),
            capture_output=True,
            timeout=60,
        )

    def calls(self) -> list[str]:
        path = self.record / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def stdin(self, op: str) -> bytes:
        return (self.record / f"stdin.{op}").read_bytes()

    def state_exists(self) -> None:
        state = self.root / STATE_FILE.lstrip("/")
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text('{"format": 1}\n')

    def log(self) -> str:
        path = self.root / "var/log/rtlibvirt/hook.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def entry(tmp_path: Path) -> Entry:
    return Entry(tmp_path)


# ---- which calls reach Python ------------------------------------------------------------


def test_an_rtlibvirt_domain_reaches_python_exactly_for_the_calls_that_matter(
    entry: Entry, rt_xml: str
) -> None:
    for op, sub in LIBVIRT_CALLS:
        done = entry("rt", op, sub, rt_xml)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), (op, done)
    pkg = entry.path.parent.parent.parent / "pkg"
    assert entry.calls() == [
        f"-I -S -c {pkg} | rt {op} {sub} -" for op, sub in LIBVIRT_CALLS if op in NEEDS_RTLIBVIRT
    ]
    for op in NEEDS_RTLIBVIRT:
        assert entry.stdin(op) == rt_xml.encode()  # exactly what libvirt wrote


def test_another_domain_starts_no_python_unless_a_stop_may_have_to_undo(entry: Entry) -> None:
    for op, sub in LIBVIRT_CALLS:
        done = entry("plain", op, sub, PLAIN_XML)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert entry.calls() == []
    # a VM whose metadata was edited away while it ran is undone by name at its stop:
    # while the state file exists, stops go to Python
    entry.state_exists()
    for op, sub in LIBVIRT_CALLS:
        assert entry("plain", op, sub, PLAIN_XML).returncode == 0
    assert [c.split(" | ")[1] for c in entry.calls()] == [
        "plain stopped end -",
        "plain release end -",
    ]
    assert entry.stdin("release") == PLAIN_XML.encode()


def test_the_namespace_anywhere_in_the_xml_counts(entry: Entry) -> None:
    # no parsing in the shell: a namespace the Python side then finds unusable is its call
    xml = PLAIN_XML.replace("</domain>", "<!-- http://rtlibvirt.org/xmlns/vm/1 -->\n</domain>")
    assert entry("x", "prepare", "begin", xml).returncode == 0
    assert len(entry.calls()) == 1


# ---- stdin --------------------------------------------------------------------------------


def feed(entry: Entry, args: list[str], size: int, head: bytes = b"") -> tuple[int, int]:
    """Write ``size`` bytes to the hook's stdin in chunks; (bytes written, exit status)."""
    proc = subprocess.Popen(
        [str(entry.path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=entry.env(),
    )
    assert proc.stdin is not None
    written = 0
    chunk = b"<!-- padding padding padding padding padding padding -->\n" * 1024
    try:
        proc.stdin.write(head)
        written += len(head)
        while written < size:
            part = chunk[: size - written]
            proc.stdin.write(part)
            written += len(part)
        proc.stdin.close()
    except BrokenPipeError:  # the hook stopped reading: libvirt would see EPIPE
        pass
    return written, proc.wait(timeout=120)


@pytest.mark.parametrize(
    ("name", "op", "head"),
    [
        ("plain", "start", b"<domain>"),  # a call no one needs
        ("plain", "prepare", b"<domain>"),  # a call that matters, of another domain
        ("rt", "prepare", b"<domain><metadata xmlns='http://rtlibvirt.org/xmlns/vm/1'/>"),
        ("rt", "started", b"<domain><metadata xmlns='http://rtlibvirt.org/xmlns/vm/1'/>"),
    ],
)
def test_every_path_reads_all_of_stdin(entry: Entry, name: str, op: str, head: bytes) -> None:
    size = 4 << 20  # far more than a pipe holds
    assert feed(entry, [name, op, "begin", "-"], size, head) == (size, 0)


def test_a_huge_stdin_is_read_to_its_end_and_cut_for_python(entry: Entry) -> None:
    size = MAX_XML + (1 << 20)
    head = b"<domain><metadata xmlns='http://rtlibvirt.org/xmlns/vm/1'/>"
    assert feed(entry, ["rt", "prepare", "begin", "-"], size, head) == (size, 0)
    assert len(entry.stdin("prepare")) == MAX_XML
    # cut before the namespace: still Python's to judge (and to say why it cannot)
    assert feed(entry, ["late", "started", "begin", "-"], size, b"<domain>") == (size, 0)
    assert [c.split(" | ")[1] for c in entry.calls()][-1] == "late started begin -"


def test_an_unreadable_stdin_is_no_xml(entry: Entry, tmp_path: Path) -> None:
    for op in ("prepare", "started", "start"):
        directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # read(): EISDIR
        try:
            done = subprocess.run(
                [str(entry.path), "rt", op, "begin", "-"],
                stdin=directory,
                env=entry.env(),
                capture_output=True,
                timeout=60,
            )
        finally:
            os.close(directory)
        assert (done.returncode, done.stdout) == (0, b"")
    assert entry.calls() == []


def test_the_python_side_bounds_and_survives_its_stdin(tmp_path: Path) -> None:
    class Broken:
        def read(self, size: int = -1) -> str:
            raise OSError(5, "Input/output error")

    assert main(["rt", "prepare", "begin", "-"], Broken(), str(tmp_path)) == 0  # type: ignore[arg-type]

    class Endless:
        def __init__(self) -> None:
            self.given = 0

        def read(self, size: int = -1) -> str:
            if self.given > 3 * MAX_XML:
                return ""
            self.given += size
            return "x" * size

    build_host(tmp_path)
    endless = Endless()
    assert main(["rt", "prepare", "begin", "-"], endless, str(tmp_path)) == 0  # type: ignore[arg-type]
    assert endless.given > 3 * MAX_XML  # read to the end
    log = (tmp_path / "var/log/rtlibvirt/hook.log").read_text()
    assert f"rt prepare begin: the domain XML on stdin is longer than {MAX_XML}" in log


# ---- exit status: only rtlibvirt's refusal of a prepare stops a VM -----------------------------


def test_only_a_refused_prepare_fails(entry: Entry, rt_xml: str) -> None:
    refused = entry("rt", "prepare", "begin", rt_xml, RECORDER_EXIT="1")
    assert refused.returncode == 1
    for op, sub in (("started", "begin"), ("stopped", "end"), ("reconnect", "begin")):
        assert entry("rt", op, sub, rt_xml, RECORDER_EXIT="1").returncode == 0
    crashed = entry("rt", "prepare", "begin", rt_xml, RECORDER_EXIT="139")
    assert crashed.returncode == 0
    assert "rt prepare begin: the rtlibvirt hook failed (exit status 139" in entry.log()


def test_a_missing_python_never_stops_a_vm(tmp_path: Path, rt_xml: str) -> None:
    gone = Entry(tmp_path, python=str(tmp_path / "no-such-python"))
    for op, sub in LIBVIRT_CALLS:
        done = gone("rt", op, sub, rt_xml)
        assert (done.returncode, done.stdout) == (0, b""), (op, done)
    assert "rt prepare begin: the rtlibvirt hook failed (exit status 127" in gone.log()


def test_a_missing_rtlibvirt_never_stops_a_vm(tmp_path: Path, rt_xml: str) -> None:
    hook = Entry(tmp_path, python=sys.executable)  # the package folder tmp/pkg is empty
    done = hook("rt", "prepare", "begin", rt_xml, PYTHONPATH="")
    assert (done.returncode, done.stdout) == (0, b"")
    assert b"cannot import rtlibvirt (ModuleNotFoundError" in done.stderr
    assert f"rt prepare begin: {sys.executable} cannot import rtlibvirt from " in hook.log()
    assert "run `rtlibvirt hook install`" in hook.log()


def test_usage(entry: Entry) -> None:
    done = subprocess.run([str(entry.path), "rt"], capture_output=True, env=entry.env())
    assert done.returncode == 2
    assert b"usage: 50-rtlibvirt DOMAIN OPERATION" in done.stderr


# ---- the real thing: the entry with rtlibvirt's Python, on a fake host -------------------------


def test_the_entry_runs_rtlibvirt_for_real(tmp_path: Path) -> None:
    hook = hookinstall.install(tmp_path / "hooks").path
    root = tmp_path / "host"
    build_host(root)
    fs = HostFS(root)
    before = snapshot(fs)
    xml = domain_xml("a", [0, 1], [1])
    add_vm(root, "a", 500, {1: (501, frozenset({1}), "fifo", 1)})
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}

    def call(*args: str, stdin: str = xml) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(hook), *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
        )

    for op, sub in LIBVIRT_CALLS[:3]:
        done = call("a", op, sub, "-")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert fs.read("/proc/irq/24/smp_affinity") == "d"
    # the VM's metadata was edited away while it ran: its stop still undoes by name
    for op, sub in LIBVIRT_CALLS[3:5]:
        assert call("a", op, sub, "-", stdin=PLAIN_XML.replace("plain", "a")).returncode == 0
    assert snapshot(fs) == before
    assert not fs.path(STATE_FILE).exists()


# ---- upgrades ---------------------------------------------------------------------------------


def old_hook(hooks_dir: Path, python: str = sys.executable, path: Path = REPO) -> Path:
    """The hook as `rtlibvirt hook install` wrote it before the shell entry."""
    lines = OLD_ENTRY.read_text().splitlines(keepends=True)
    body = "".join(lines[1:])
    body = body.replace('RTLIBVIRT_VERSION = ""', f"RTLIBVIRT_VERSION = {json.dumps(__version__)}")
    body = body.replace('RTLIBVIRT_PATH = ""', f"RTLIBVIRT_PATH = {json.dumps(str(path))}")
    target = hooks_dir / hookinstall.HOOK_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"#!{python} -IS\n" + body)
    target.chmod(0o755)
    return target


def test_an_old_installed_hook_still_works(tmp_path: Path) -> None:
    # `rtlibvirt.hook.run` is what hooks installed by older versions call
    hook = old_hook(tmp_path / "hooks")
    root = tmp_path / "host"
    build_host(root)
    fs = HostFS(root)
    xml = domain_xml("a", [0, 1], [1])
    add_vm(root, "a", 500, {1: (501, frozenset({1}), "fifo", 1)})
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    for op, sub in (("prepare", "begin"), ("started", "begin")):
        done = subprocess.run(
            [str(hook), "a", op, sub, "-"], input=xml, env=env, capture_output=True, text=True
        )
        assert (done.returncode, done.stderr) == (0, "")
    assert fs.read("/proc/irq/24/smp_affinity") == "d"


def test_status_says_an_old_hook_is_out_of_date_and_install_upgrades_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks_dir = tmp_path / "hooks"
    root = tmp_path / "root"
    build_host(root)
    monkeypatch.setenv("RTLIBVIRT_HOST_ROOT", str(root))  # not the live host's state
    target = old_hook(hooks_dir)
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.installed and not st.current and not st.ok
    assert st.installed_version == __version__
    assert st.python == sys.executable and st.python_ok
    assert st.stale is not None and "older hook that starts Python for every call" in st.stale

    runner = CliRunner()
    shown = runner.invoke(cli, ["hook", "status", "--hooks-dir", str(hooks_dir)])
    assert shown.exit_code == 3
    assert "out of date: an older hook that starts Python" in shown.output
    assert "run `rtlibvirt hook install` to upgrade" in shown.output

    done = runner.invoke(cli, ["hook", "install", "--hooks-dir", str(hooks_dir)])
    assert done.exit_code == 0, done.output
    assert f"upgraded the rtlibvirt hook to {__version__} as {target}" in done.output
    assert "it was an older hook that starts Python" in done.output
    assert target.read_text() == hookinstall.render()
    assert target.stat().st_mode & 0o777 == 0o755
    st = hookinstall.status(hooks_dir, HostFS(root))
    assert st.current and st.stale is None
    again = hookinstall.install(hooks_dir)
    assert not again.changed and again.upgraded is None


def test_status_names_the_version_of_a_hook_from_another_release(tmp_path: Path) -> None:
    hooks_dir = tmp_path / "hooks"
    target = hookinstall.install(hooks_dir).path
    target.write_text(
        target.read_text().replace(
            f"RTLIBVIRT_VERSION='{__version__}'", "RTLIBVIRT_VERSION='0.0.9'"
        )
    )
    st = hookinstall.status(hooks_dir, HostFS(tmp_path / "root"))
    assert st.installed_version == "0.0.9"
    assert st.stale == f"installed by rtlibvirt 0.0.9; this is rtlibvirt {__version__}"
    result = hookinstall.install(hooks_dir)
    assert result.changed and result.upgraded == st.stale


def test_the_installed_settings_survive_shell_quoting(tmp_path: Path) -> None:
    odd = tmp_path / "it's a dir" / "python"
    text = hookinstall.render(str(odd), tmp_path / "o'brien")
    settings = hookinstall.installed_settings(text)
    assert settings == {
        "VERSION": __version__,
        "PYTHON": str(odd),
        "PATH": str(tmp_path / "o'brien"),
    }
    assert hookinstall.stale_reason(text) is None
    with pytest.raises(Exception, match="absolute path of one line"):
        hookinstall.render("python3")


def test_the_shell_entry_parses() -> None:
    text = hookinstall.render()
    assert text.startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    if os.path.exists("/bin/dash"):
        assert subprocess.run(["/bin/dash", "-n"], input=text, text=True).returncode == 0


# ---- the Python entry's own shortcuts ----------------------------------------------------------


def test_a_stop_without_state_imports_nothing_more(tmp_path: Path, rt_xml: str) -> None:
    build_host(tmp_path)
    probe = (
        "import io, sys; sys.path.insert(0, sys.argv[1]); from rtlibvirt import hook; "
        "rcs = [hook.main(['rt', op, 'end', '-'], io.StringIO(sys.argv[2]), sys.argv[3]) "
        "for op in ('stopped', 'release')]; "
        "print(rcs, sorted(m for m in sys.modules if m.startswith('rtlibvirt')))"
    )
    out = subprocess.run(
        [sys.executable, "-IS", "-c", probe, str(REPO), rt_xml, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[0, 0] ['rtlibvirt', 'rtlibvirt.hook']"


def test_the_stop_shortcut_is_what_the_operations_would_do(tmp_path: Path) -> None:
    # the entry skips a stop when the state file is missing; the operations must agree
    from rtlibvirt.hook import ops

    fs = HostFS(tmp_path)
    build_host(tmp_path)
    before = snapshot(fs)
    xml = domain_xml("rt", [0, 1], [1])
    for op in ("stopped", "release"):
        assert ops.handle(fs, "rt", op, "end", xml) == 0
    assert snapshot(fs) == before
    assert not fs.path(STATE_FILE).exists()
    assert not (tmp_path / "var/log/rtlibvirt/hook.log").exists()


def test_the_shell_and_python_entries_name_the_same_state_files() -> None:
    from rtlibvirt import hook
    from rtlibvirt.hook import state

    text = (REPO / "hooks/qemu").read_text()
    assert f"STATE_FILE={state.STATE_FILE}" in text
    assert f"JOURNAL_FILE={state.JOURNAL_FILE}" in text
    assert f"NAMESPACE='{hook.NAMESPACE}'" in text
    assert f"MAX_XML={MAX_XML}" in text
    assert "/" + hook.STATE_FILE == state.STATE_FILE
    assert "/" + hook.JOURNAL_FILE == state.JOURNAL_FILE


def test_a_journal_alone_sends_stops_to_python(entry: Entry) -> None:
    journal = entry.root / "run/rtlibvirt/journal"
    journal.parent.mkdir(parents=True)
    journal.write_text("")
    assert entry("plain", "release", "end", PLAIN_XML).returncode == 0
    assert [c.split(" | ")[1] for c in entry.calls()] == ["plain release end -"]


def test_a_domain_name_that_is_not_utf8_is_logged_escaped(tmp_path: Path) -> None:
    """libvirt passes the name as bytes: the log writes them as \\xNN, strict UTF-8 (syslog's)."""
    from rtlibvirt.hook.log import escape

    hook = hookinstall.install(tmp_path / "hooks").path
    root = tmp_path / "host"
    build_host(root)
    xml = domain_xml("a", [0, 1], [1]).encode()
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    for op, sub in LIBVIRT_CALLS[:5]:
        done = subprocess.run(
            [str(hook), b"a\xff", op, sub, "-"], input=xml, env=env, capture_output=True
        )
        assert (done.returncode, done.stderr) == (0, b"")
    log = (root / "var/log/rtlibvirt/hook.log").read_bytes().decode("utf-8")  # strict
    assert "a\\xff prepare begin: isolating" in log
    assert "a\\xff stopped end:" in log
    assert "a?" not in log
    assert escape("a\udcff\ud800").encode("utf-8") == b"a\\xff\\ud800"
