"""A fake host for the hook's tests: the kernel's files, in the kernel's formats.

:func:`build_host` writes plain files shaped like the real ones (enough for a
hook run as a separate process, e.g. by the benchmark). :class:`FakeKernel`
is a :class:`HostFS` over such a tree that also behaves like the kernel when
the hook writes (for in-process tests):

- IRQ affinities and the global workqueue cpumask take a hex mask, refuse one
  without an online CPU (EINVAL) and read back in the kernel's width; chosen
  IRQs refuse every write (EIO), as managed and per-CPU interrupts do;
- the sysfs workqueues (``WQ_SYSFS``) are devices of the ``workqueue`` bus, as
  on Linux 6.18: ``/sys/bus/workqueue/devices/NAME`` links to
  ``/sys/devices/virtual/workqueue/NAME``, whose files are an unbound
  workqueue's (``affinity_scope``, ``affinity_strict``, ``cpumask``,
  ``max_active``, ``nice``, ``per_cpu`` 0, ``uevent``) or a per-CPU one's
  (``max_active``, ``per_cpu`` 1, ``uevent``: no cpumask); a workqueue's cpumask
  takes any mask of possible CPUs, even an empty one (its workers use the global
  mask then), and reads it back as written; a mask with a CPU past the possible
  ones is EOVERFLOW and one that does not parse EINVAL, for the global mask too
  (what this machine's Linux 6.18 answers); chosen workqueues refuse every write
  with a chosen errno (EINVAL: an ordered workqueue on kernels that forbid it);
- resctrl is mounted by ``mount`` (when the kernel "supports" it), a group is
  made by ``mkdir`` (ENOSPC once every CLOS id is used) and removed by
  ``rmdir`` (its CPUs and tasks go back to the default group); ``schemata``
  takes ``L3:<id>=<mask>;...`` lines (only the named caches change), checks
  masks like the kernel (within cbm_mask, at least min_cbm_bits, contiguous
  unless sparse_masks) and reports errors in info/last_cmd_status;
  ``cpus_list`` moves CPUs between groups (the default group cannot drop any),
  ``tasks`` takes one thread id per write (the default group lists only the
  threads moved back to it, not every task of the system).

A write can also be made to "kill" the hook (raise :class:`Killed`, which is
not an Exception, so nothing in the hook catches it) to test a hook that dies
half-way.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from rtlibvirt.kernel import mounts
from rtlibvirt.kernel.cpuset import format_cpulist, format_mask, parse_cpulist, parse_mask
from rtlibvirt.kernel.fs import HostFS

RESCTRL = "/sys/fs/resctrl"
IRQ_DEFAULT = "/proc/irq/default_smp_affinity"
WQ_UNBOUND = "/sys/devices/virtual/workqueue/cpumask"
WQ_WRITEBACK = "/sys/bus/workqueue/devices/writeback/cpumask"
WQ_DIR = "/sys/devices/virtual/workqueue"
WQ_BUS = "/sys/bus/workqueue/devices"
# The sysfs workqueues of the fake host: name -> (affinity_scope, affinity_strict), or
# None for a per-CPU one. writeback and blkcg_punt_bio are what this machine's kernel
# has; nvme-wq is an NVMe host's; kcryptd-253:0 a dm-crypt volume's, set to a strict
# "cpu" scope by an admin; ib-comp-wq (RDMA completions) is per-CPU: no cpumask.
WORKQUEUES: dict[str, tuple[str, int] | None] = {
    "blkcg_punt_bio": ("default (cache)", 0),
    "ib-comp-wq": None,
    "kcryptd-253:0": ("cpu", 1),
    "nvme-wq": ("default (cache)", 0),
    "writeback": ("default (cache)", 0),
}
MC_DIR = "/sys/devices/system/machinecheck"
BTIME = 1_700_000_000


class Killed(BaseException):
    """The hook process dies here (as if by SIGKILL)."""


def _put(root: Path, host_path: str, text: str) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") or text == "" else text + "\n")


def build_host(
    root: Path,
    *,
    cpus: int = 4,
    irqs: Iterable[int] = (0, 1, 8, 9, 24, 25, 26, 27),
    machinecheck: bool = True,
    resctrl_supported: bool = False,
) -> None:
    """Write a fake /proc + /sys tree of a ``cpus``-CPU host under ``root``."""
    everything = frozenset(range(cpus))
    full = format_mask(everything, cpus)
    listing = format_cpulist(everything)
    for name in ("possible", "present", "online"):
        _put(root, f"/sys/devices/system/cpu/{name}", listing)
    _put(root, "/sys/devices/system/cpu/isolated", "")
    for cpu in range(cpus):
        base = f"/sys/devices/system/cpu/cpu{cpu}/cache"
        for index, level in enumerate(("1", "1", "2", "3")):
            _put(root, f"{base}/index{index}/level", level)
        # two L3 caches: the first half of the CPUs shares cache 0, the rest cache 1
        _put(root, f"{base}/index3/id", "0" if cpu < max(cpus // 2, 1) else "1")
    _put(root, IRQ_DEFAULT, full)
    for irq in irqs:
        _put(root, f"/proc/irq/{irq}/smp_affinity", full)
        _put(root, f"/proc/irq/{irq}/smp_affinity_list", listing)
        _put(root, f"/proc/irq/{irq}/effective_affinity_list", "0")
    _put(root, WQ_UNBOUND, full)
    for name, scope in WORKQUEUES.items():
        add_workqueue(root, name, full, scope)
    if machinecheck:
        for cpu in range(cpus):
            _put(root, f"{MC_DIR}/machinecheck{cpu}/check_interval", "300")
    filesystems = ["nodev\tsysfs", "nodev\tproc", "nodev\tcgroup2", "\text4"]
    if resctrl_supported:
        filesystems.append("nodev\tresctrl")
    _put(root, "/proc/filesystems", "\n".join(filesystems))
    _put(root, "/proc/mounts", "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n")
    _put(root, "/proc/stat", f"cpu  1 2 3 4\nbtime {BTIME}\n")
    _put(root, "/proc/sys/kernel/sched_rt_runtime_us", "950000")
    (root / "sys/fs/resctrl").mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(exist_ok=True)


def add_workqueue(root: Path, name: str, mask: str, scope: tuple[str, int] | None) -> None:
    """A WQ_SYSFS workqueue: its device folder and its link on the workqueue bus;
    ``scope`` (affinity_scope, affinity_strict) for an unbound one, None per-CPU."""
    base = f"{WQ_DIR}/{name}"
    _put(root, f"{base}/uevent", "")
    _put(root, f"{base}/max_active", "1024" if scope is not None else "256")
    _put(root, f"{base}/per_cpu", "0" if scope is not None else "1")
    if scope is not None:
        _put(root, f"{base}/affinity_scope", scope[0])
        _put(root, f"{base}/affinity_strict", str(scope[1]))
        _put(root, f"{base}/cpumask", mask)
        _put(root, f"{base}/nice", "0")
    link = root / WQ_BUS.lstrip("/") / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(f"../../../devices/virtual/workqueue/{name}")


def remove_workqueue(root: Path, name: str) -> None:
    """``destroy_workqueue()``: the device and its bus link go."""
    (root / WQ_BUS.lstrip("/") / name).unlink(missing_ok=True)
    shutil.rmtree(root / f"{WQ_DIR.lstrip('/')}/{name}", ignore_errors=True)


def add_vm(
    root: Path,
    name: str,
    pid: int,
    vcpus: dict[int, tuple[int, frozenset[int], str, int]],
) -> None:
    """A running QEMU for ``name``: vCPU id -> (thread id, CPUs, policy, priority)."""
    _put(root, f"/run/libvirt/qemu/{name}.pid", str(pid))
    cmdline = f"/usr/bin/qemu-system-x86_64\0-name\0guest={name},debug-threads=on\0-S\0"
    (root / f"proc/{pid}").mkdir(parents=True, exist_ok=True)
    (root / f"proc/{pid}/cmdline").write_bytes(cmdline.encode())
    _put(root, f"/proc/{pid}/comm", "qemu-system-x86")
    threads = {pid: ("qemu-system-x86", frozenset(range(64)), "other", 0)}
    for vcpu, (tid, cpus, policy, prio) in vcpus.items():
        threads[tid] = (f"CPU {vcpu}/KVM", cpus, policy, prio)
    for tid, (comm, cpus, policy, prio) in threads.items():
        base = f"/proc/{pid}/task/{tid}"
        _put(root, f"{base}/comm", comm)
        _put(root, f"{base}/status", f"Name:\t{comm}\nCpus_allowed_list:\t{format_cpulist(cpus)}\n")
        number = {"other": 0, "fifo": 1, "rr": 2}[policy]
        # fields 3..52 after "(comm)"; rt_priority is field 40, policy field 41
        fields = ["S"] + ["0"] * 49
        fields[40 - 3] = str(prio)
        fields[41 - 3] = str(number)
        _put(root, f"{base}/stat", f"{tid} ({comm}) " + " ".join(fields))


def remove_vm(root: Path, name: str, pid: int) -> None:
    """QEMU exits: its /proc entry and libvirt's pid file go away."""
    shutil.rmtree(root / f"proc/{pid}", ignore_errors=True)
    (root / f"run/libvirt/qemu/{name}.pid").unlink(missing_ok=True)


def snapshot(fs: HostFS) -> dict[str, str]:
    """Every value the hook may change (for before/after comparisons)."""
    values: dict[str, str] = {}
    for path in sorted(fs.root.rglob("*")):
        host = "/" + str(path.relative_to(fs.root))
        if path.is_file() and (
            host.endswith(("smp_affinity", "/cpumask", "check_interval", "schemata", "cpus_list"))
            or host.endswith(("/tasks", "/mode", "/mounts", "/affinity_scope", "/affinity_strict"))
        ):
            values[host] = path.read_text()
        elif path.is_dir() and host.startswith(RESCTRL + "/") and "/info" not in host:
            values[host] = "<dir>"
    return values


class _Group:
    def __init__(self, masks: dict[str, int], mode: str = "shareable") -> None:
        self.masks = masks
        self.cpus: set[int] = set()
        self.tasks: list[int] = []
        self.mode = mode


class FakeKernel(HostFS):
    """A HostFS over a fake tree whose writes behave like the kernel's."""

    def __init__(
        self,
        root: Path,
        *,
        cpus: int = 4,
        irqs: Iterable[int] = (0, 1, 8, 9, 24, 25, 26, 27),
        refuse_irqs: Iterable[int] = (),
        refuse_workqueues: dict[str, int] | None = None,
        machinecheck: bool = True,
        resctrl: bool = False,
        resctrl_mounted: bool = False,
        cbm_mask: int = 0xFFFFF,
        min_cbm_bits: int = 1,
        num_closids: int = 16,
        shareable_bits: int = 0,
        sparse_masks: bool = False,
    ) -> None:
        super().__init__(root)
        build_host(root, cpus=cpus, irqs=irqs, machinecheck=machinecheck, resctrl_supported=resctrl)
        self.ncpus = cpus
        self.refused = {f"/proc/irq/{irq}/smp_affinity" for irq in refuse_irqs}
        self.refuse_workqueues = dict(refuse_workqueues or {})  # name -> errno
        self.writes: list[tuple[str, str]] = []
        self.kill: tuple[str, int] | None = None  # (path prefix, writes to let through)
        self.cbm_mask = cbm_mask
        self.min_cbm_bits = min_cbm_bits
        self.num_closids = num_closids
        self.shareable_bits = shareable_bits
        self.sparse_masks = sparse_masks
        self.cache_ids = ["0", "1"]
        self.groups: dict[str, _Group] = {}
        self.mount_calls = 0
        if resctrl and resctrl_mounted:
            self.mount("resctrl", RESCTRL)
            self.mount_calls = 0

    # ---- helpers for tests ---------------------------------------------------------

    def kill_after(self, prefix: str, allowed: int) -> None:
        """Let ``allowed`` more writes under ``prefix`` through, then 'kill' the hook."""
        self.kill = (prefix, allowed)

    def value(self, host_path: str) -> str:
        return self.read(host_path)

    def add_group(self, name: str, l3: dict[str, int], mode: str = "shareable") -> None:
        """A resctrl group the admin made (before the hook runs)."""
        self.mkdir(f"{RESCTRL}/{name}")
        group = self.groups[name]
        group.masks = dict(l3)
        group.mode = mode
        self._render_group(name)

    # ---- the kernel's behaviour ------------------------------------------------------

    def _kill_point(self, host_path: str) -> None:
        """Raise Killed at the write that :meth:`kill_after` chose."""
        if self.kill is not None and host_path.startswith(self.kill[0]):
            prefix, allowed = self.kill
            if allowed <= 0:
                self.kill = None
                raise Killed(host_path)
            self.kill = (prefix, allowed - 1)

    def write(self, host_path: str, value: str) -> None:
        self._kill_point(host_path)
        text = value.rstrip("\n")
        if host_path in self.refused:
            raise OSError(errno.EIO, os.strerror(errno.EIO), host_path)
        if host_path.endswith(("smp_affinity", "/cpumask")):
            self._write_mask(host_path, text)
        elif host_path.endswith("check_interval"):
            int(text)  # ValueError on garbage, as EINVAL
            super().write(host_path, text)
        elif host_path.startswith(RESCTRL + "/"):
            self._write_resctrl(host_path, text)
        else:
            super().write(host_path, text)
        self.writes.append((host_path, text))

    def _write_mask(self, host_path: str, text: str) -> None:
        name = _workqueue_of(host_path)
        if name is not None and name in self.refuse_workqueues:
            code = self.refuse_workqueues[name]
            raise OSError(code, os.strerror(code), host_path)
        try:
            cpus = parse_mask(text)
        except ValueError:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path) from None
        if host_path.endswith("/cpumask") and cpus and max(cpus) >= self.ncpus:
            # cpumask_parse(): a bit past nr_cpu_ids (Linux 6.18 answers so here)
            raise OSError(errno.EOVERFLOW, os.strerror(errno.EOVERFLOW), host_path)
        # a workqueue's own mask may even be empty (wq_cpumask_store(): its workers use the
        # global one then); the global mask and an IRQ's need an online CPU
        if name is None and not cpus & self.cpus_online():
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)
        super().write(host_path, format_mask(cpus, self.ncpus))

    # ---- resctrl -----------------------------------------------------------------------

    def mount(self, fstype: str, target: str) -> None:
        self.mount_calls += 1
        if fstype != "resctrl" or target != RESCTRL:
            raise OSError(errno.ENODEV, f"no {fstype} here")
        if "resctrl" not in mounts.filesystems(self):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        if mounts.is_mounted(self, RESCTRL, "resctrl"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        info = f"{RESCTRL}/info/L3"
        width = (self.cbm_mask.bit_length() + 3) // 4
        _put(self.root, f"{info}/cbm_mask", f"{self.cbm_mask:x}")
        _put(self.root, f"{info}/min_cbm_bits", str(self.min_cbm_bits))
        _put(self.root, f"{info}/num_closids", str(self.num_closids))
        _put(self.root, f"{info}/shareable_bits", f"{self.shareable_bits:0{width}x}")
        _put(self.root, f"{info}/sparse_masks", "1" if self.sparse_masks else "0")
        _put(self.root, f"{RESCTRL}/info/last_cmd_status", "ok")
        default = _Group({c: self.cbm_mask for c in self.cache_ids})
        default.cpus = set(range(self.ncpus))
        self.groups = {"": default}
        self._render_group("")
        table = self.read_or("/proc/mounts", "")
        _put(self.root, "/proc/mounts", table + "\nresctrl /sys/fs/resctrl resctrl rw 0 0")

    def umount(self, target: str) -> None:
        if not mounts.is_mounted(self, target, "resctrl"):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        base = self.path(RESCTRL)
        for entry in base.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.groups = {}
        lines = [ln for ln in self.read("/proc/mounts").splitlines() if " resctrl " not in ln]
        _put(self.root, "/proc/mounts", "\n".join(lines))

    def mkdir(self, host_path: str, mode: int = 0o755) -> None:
        parent, _, name = host_path.rpartition("/")
        if parent != RESCTRL or not self.groups:
            super().mkdir(host_path, mode)
            return
        if name in self.groups or name in ("info", "mon_groups", "mon_data"):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), host_path)
        if len(self.groups) >= self.num_closids:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), host_path)
        # rdtgroup_init_cat(): what shareable groups use plus what nobody uses,
        # cut to its first contiguous run
        masks = {}
        for cache in self.cache_ids:
            used = self.shareable_bits
            new = 0
            for group in self.groups.values():
                used |= group.masks.get(cache, 0)
                if group.mode == "shareable":
                    new |= group.masks.get(cache, 0)
            new |= self.cbm_mask & ~used
            masks[cache] = _first_run(new)
        super().mkdir(host_path, mode)
        self.groups[name] = _Group(masks)
        self._render_group(name)

    def rmdir(self, host_path: str) -> None:
        parent, _, name = host_path.rpartition("/")
        if parent != RESCTRL or name not in self.groups or name == "":
            super().rmdir(host_path)
            return
        group = self.groups.pop(name)
        default = self.groups[""]
        default.cpus |= group.cpus
        default.tasks += [t for t in group.tasks if self._task_exists(t)]
        shutil.rmtree(self.path(host_path))
        self._render_group("")

    def _status(self, text: str) -> None:
        _put(self.root, f"{RESCTRL}/info/last_cmd_status", text)

    def _fail(self, host_path: str, message: str) -> OSError:
        self._status(message)
        return OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)

    def _write_resctrl(self, host_path: str, text: str) -> None:
        directory, _, leaf = host_path.rpartition("/")
        name = "" if directory == RESCTRL else directory.rpartition("/")[2]
        if name not in self.groups or directory.rpartition("/")[0] not in ("/sys/fs", RESCTRL):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), host_path)
        group = self.groups[name]
        self._status("ok")
        if leaf == "schemata":
            self._write_schemata(host_path, group, text)
        elif leaf == "cpus_list":
            try:
                cpus = set(parse_cpulist(text))
            except ValueError:
                raise self._fail(host_path, "Bad CPU list/mask") from None
            if not cpus <= set(range(self.ncpus)):
                raise self._fail(host_path, "Can only assign online CPUs")
            if name == "" and group.cpus - cpus:
                raise self._fail(host_path, "Can't drop CPUs from default group")
            self.groups[""].cpus |= group.cpus - cpus
            for other_name, other in self.groups.items():
                if other_name != name:
                    other.cpus -= cpus
            group.cpus = cpus
        elif leaf == "tasks":
            tid = int(text)
            if not self._task_exists(tid):
                raise OSError(errno.ESRCH, os.strerror(errno.ESRCH), host_path)
            for other in self.groups.values():
                if tid in other.tasks:
                    other.tasks.remove(tid)
            group.tasks.append(tid)
        elif leaf == "mode":
            if text not in ("shareable", "exclusive"):
                raise self._fail(host_path, "Unknown or unsupported mode")
            group.mode = text
        else:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), host_path)
        for group_name in self.groups:
            self._render_group(group_name)

    def _write_schemata(self, host_path: str, group: _Group, text: str) -> None:
        new = dict(group.masks)
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            resource, _, domains = line.partition(":")
            if resource == "MB":
                continue  # memory bandwidth: accepted, not modelled
            if resource != "L3":
                raise self._fail(host_path, f"Unknown or unsupported resource name '{resource}'")
            for part in domains.split(";"):
                cache, _, mask_text = part.partition("=")
                cache = cache.strip()
                if cache not in self.cache_ids:
                    raise self._fail(host_path, f"Unknown domain ID {cache}")
                try:
                    mask = int(mask_text, 16)
                except ValueError:
                    message = f"Non-hex character in the mask {mask_text}"
                    raise self._fail(host_path, message) from None
                if mask & ~self.cbm_mask:
                    raise self._fail(host_path, f"Mask out of range {mask_text}")
                if not self.sparse_masks and mask != _first_run(mask):
                    raise self._fail(host_path, f"The mask {mask_text} has non-consecutive 1-bits")
                if bin(mask).count("1") < self.min_cbm_bits:
                    message = f"Need at least {self.min_cbm_bits} bits in the mask"
                    raise self._fail(host_path, message)
                new[cache] = mask
        group.masks = new

    def _task_exists(self, tid: int) -> bool:
        return any(self.root.glob(f"proc/*/task/{tid}"))

    def _render_group(self, name: str) -> None:
        group = self.groups[name]
        group.tasks = [t for t in group.tasks if self._task_exists(t)]  # exited threads vanish
        directory = RESCTRL if name == "" else f"{RESCTRL}/{name}"
        width = (self.cbm_mask.bit_length() + 3) // 4
        l3 = ";".join(f"{c}={group.masks[c]:0{width}x}" for c in self.cache_ids)
        mb = ";".join(f"{c}=100" for c in self.cache_ids)
        _put(self.root, f"{directory}/schemata", f"L3:{l3}\nMB:{mb}")
        _put(self.root, f"{directory}/cpus", format_mask(group.cpus, self.ncpus))
        _put(self.root, f"{directory}/cpus_list", format_cpulist(group.cpus))
        _put(self.root, f"{directory}/tasks", "".join(f"{t}\n" for t in group.tasks))
        _put(self.root, f"{directory}/mode", group.mode)


def _workqueue_of(host_path: str) -> str | None:
    """The workqueue whose own cpumask ``host_path`` is (by either of its paths)."""
    for base in (WQ_BUS, WQ_DIR):
        head, _, leaf = host_path.removeprefix(base + "/").partition("/")
        if host_path.startswith(base + "/") and leaf == "cpumask" and head:
            return head
    return None


def _first_run(mask: int) -> int:
    """The lowest contiguous run of 1-bits of ``mask`` (the kernel's cbm_ensure_valid)."""
    if mask == 0:
        return 0
    low = (mask & -mask).bit_length() - 1
    run = 0
    while mask >> (low + run) & 1:
        run += 1
    return ((1 << run) - 1) << low
