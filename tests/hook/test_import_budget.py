"""The hook's import budget, enforced: what each path may load.

libvirt runs the hook for every domain at every step of its life, and the
start of a VM waits for it: every module the hook imports is paid on each
`virsh start`. Each test runs the hook in a fresh interpreter the way the
installed hook runs it (``python -I -S``, the package on sys.path, the domain
XML on stdin, a fake host under RTLIBVIRT_HOST_ROOT) and inspects
``sys.modules`` when it is done.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.hook import PLAIN_XML, domain_xml
from tests.fakes.host import add_vm, build_host

REPO = Path(__file__).resolve().parents[2]

# Never, on any path: what the rest of rtlibvirt uses and the hook must not pay for.
FORBIDDEN = ("click", "jinja2", "lxml", "ruamel", "libvirt", "yaml", "pydantic")
# Standard-library modules that cost milliseconds and that no hook path needs.
HEAVY_STDLIB = (
    "tempfile",
    "subprocess",
    "inspect",
    "asyncio",
    "email",
    "http",
    "logging",
    "pathlib",  # ~2.5 ms with urllib.parse and ipaddress: the hook works on strings
)

NO_METADATA = {"rtlibvirt", "rtlibvirt.hook"}
ISOLATION = NO_METADATA | {
    "rtlibvirt.domain",
    "rtlibvirt.domain.facts",
    "rtlibvirt.domain.metadata",
    "rtlibvirt.hook.domain",
    "rtlibvirt.hook.isolation",
    "rtlibvirt.hook.isolation.base",
    "rtlibvirt.hook.isolation.irq",
    "rtlibvirt.hook.isolation.machinecheck",
    "rtlibvirt.hook.isolation.resctrl",
    "rtlibvirt.hook.isolation.tasks",
    "rtlibvirt.hook.isolation.kthreads",
    "rtlibvirt.hook.isolation.workqueue",
    "rtlibvirt.hook.log",
    "rtlibvirt.hook.ops",
    "rtlibvirt.hook.state",
    "rtlibvirt.hook.threads",
    "rtlibvirt.kernel",
    "rtlibvirt.kernel.cgroup",
    "rtlibvirt.kernel.cpuset",
    "rtlibvirt.kernel.files",
    "rtlibvirt.kernel.fs",
    "rtlibvirt.kernel.irq",
    "rtlibvirt.kernel.machinecheck",
    "rtlibvirt.kernel.mounts",
    "rtlibvirt.kernel.procs",
    "rtlibvirt.kernel.resctrl",
    "rtlibvirt.kernel.rtgroup",
    "rtlibvirt.kernel.workqueue",
}

# prepare validates the metadata with vm.yaml's own model (stdlib only, ~15 ms)
VALIDATION = ISOLATION | {
    "rtlibvirt.config",
    "rtlibvirt.config.document",
    "rtlibvirt.config.model",
    "rtlibvirt.config.sysvalues",
    "rtlibvirt.config.units",
    "rtlibvirt.config.vm",
    "rtlibvirt.errors",
}
CONFIG = VALIDATION - ISOLATION

DRIVER = """
import sys
sys.path.insert(0, {repo!r})
sys.argv = ["50-rtlibvirt", *{args!r}]
from rtlibvirt.hook import run
code = run()
loaded = sorted(sys.modules)
sys.stdout.write("\\n".join(loaded) + "\\n")
sys.exit(code)
"""


def loaded_by(root: Path, args: list[str], xml: str) -> set[str]:
    """The modules in sys.modules after one hook call, as libvirt makes it."""
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", DRIVER.format(repo=str(REPO), args=args)],
        input=xml,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr, done.stderr
    return set(done.stdout.split())


def over_budget(modules: set[str], allowed: set[str]) -> list[str]:
    ours = {m for m in modules if m == "rtlibvirt" or m.startswith("rtlibvirt.")}
    bad = sorted(ours - allowed)
    bad += sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    # the models are dataclasses, and dataclasses imports inspect; config's loaders
    # take paths (only a first validation of some metadata text pays for these)
    validating = "rtlibvirt.config.vm" in allowed
    heavy = set(HEAVY_STDLIB) - ({"inspect", "pathlib"} if validating else set())
    bad += sorted(m for m in modules if m.split(".")[0] in heavy)
    return bad


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    build_host(root, cpus=4, irqs=range(16))
    return root


@pytest.mark.parametrize("op", ["prepare", "start", "started", "stopped", "release", "reconnect"])
def test_a_domain_without_metadata_imports_only_the_entry(host: Path, op: str) -> None:
    modules = loaded_by(host, ["plain", op, "begin", "-"], PLAIN_XML)
    assert over_budget(modules, NO_METADATA) == []
    assert "rtlibvirt.hook.ops" not in modules


def test_the_isolation_path_imports_only_the_hook_and_kernel_modules(host: Path) -> None:
    xml = domain_xml("budget", [0, 1], [1])
    prepare = loaded_by(host, ["budget", "prepare", "begin", "-"], xml)
    assert over_budget(prepare, VALIDATION) == []
    assert "rtlibvirt.config.vm" in prepare  # the metadata was validated
    add_vm(host, "budget", 900, {1: (901, frozenset({1}), "fifo", 1)})
    started = loaded_by(host, ["budget", "started", "begin", "-"], xml)
    # the claim holds what prepare validated: started pays for no model
    assert over_budget(started, ISOLATION) == []
    assert not started & CONFIG
    assert "dataclasses" not in started
    assert "rtlibvirt.hook.isolation.irq" in started  # the path really isolated
    assert (host / "proc/irq/5/smp_affinity").read_text().strip() == "d"
    os.unlink(host / "run/libvirt/qemu/budget.pid")
    stopped = loaded_by(host, ["budget", "release", "end", "-"], xml)
    assert over_budget(stopped, ISOLATION) == []
    assert "dataclasses" not in stopped
    assert (host / "proc/irq/5/smp_affinity").read_text().strip() == "f"


def test_a_start_without_a_claim_validates(host: Path) -> None:
    """reconnect (or started without prepare, e.g. the hook was installed meanwhile)."""
    xml = domain_xml("budget", [0, 1], [1])
    add_vm(host, "budget", 900, {1: (901, frozenset({1}), "fifo", 1)})
    reconnect = loaded_by(host, ["budget", "reconnect", "begin", "-"], xml)
    assert over_budget(reconnect, VALIDATION) == []
    assert "rtlibvirt.config.vm" in reconnect
    edited = xml.replace('"irqs": true', '"irqs": false', 1)
    assert edited != xml
    again = loaded_by(host, ["budget", "started", "begin", "-"], edited)
    assert "rtlibvirt.config.vm" in again  # other metadata than the claim's: validated again


def test_a_vm_that_starts_again_with_the_same_metadata_pays_for_no_model(host: Path) -> None:
    xml = domain_xml("budget", [0, 1], [1])
    first = loaded_by(host, ["budget", "prepare", "begin", "-"], xml)
    assert "rtlibvirt.config.vm" in first
    loaded_by(host, ["budget", "release", "end", "-"], xml)  # the start failed: no claim
    again = loaded_by(host, ["budget", "prepare", "begin", "-"], xml)
    assert not again & CONFIG and "dataclasses" not in again  # remembered by its SHA-256
    other = loaded_by(host, ["other", "prepare", "begin", "-"], domain_xml("other", [0, 2], [1]))
    assert "rtlibvirt.config.vm" in other  # another text: validated


def test_over_budget_names_what_is_too_much() -> None:
    modules = {"rtlibvirt", "rtlibvirt.hook", "rtlibvirt.cli", "click", "lxml.etree", "os"}
    assert over_budget(modules, NO_METADATA) == ["rtlibvirt.cli", "click", "lxml.etree"]


def _module_imports(path: Path, name: str) -> set[str]:
    """The rtlibvirt modules ``path`` imports, at import time or later in a function
    (a lazy import closes a cycle just the same); not those under ``if TYPE_CHECKING``."""
    import ast

    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("rtlibvirt"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                if base.startswith("rtlibvirt"):
                    for alias in node.names:
                        candidate = f"{base}.{alias.name}"
                        found.add(candidate if candidate in MODULES else base)
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    elif isinstance(child, ast.ExceptHandler):
                        visit(child.body)

    visit(tree.body)
    return found


def _all_modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / "rtlibvirt").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _all_modules()


def test_no_import_cycles_in_the_hook_and_kernel_packages() -> None:
    graph = {
        name: _module_imports(path, name)
        for name, path in MODULES.items()
        if name.startswith(("rtlibvirt.hook", "rtlibvirt.kernel"))
    }
    cycles = []

    def walk(node: str, stack: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep in graph:
                walk(dep, [*stack, dep])

    for name in sorted(graph):
        walk(name, [name])
    assert cycles == []
