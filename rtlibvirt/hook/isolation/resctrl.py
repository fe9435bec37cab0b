"""Cache ways: exclusive L3 ways (Intel RDT / AMD PQoS, through resctrl) per VM.

For a VM with ``isolation.cache_ways: N`` the hook makes a resctrl control
group ``/sys/fs/resctrl/rtlibvirt-NAME`` whose L3 capacity bit mask holds N
contiguous ways that no other group keeps: every other group (the default one
included) is narrowed so that it no longer covers them. The VM's CPUs go into
the group's ``cpus_list`` and its vCPU thread ids into ``tasks``. Several VMs
get disjoint ways. When a VM stops its group is removed, and each other group
gets back what it had, less the ways of VMs still running; when the last one
stops every group has its original mask again (and resctrl is unmounted if the
hook mounted it).

Ways are allocated per L3 cache (``L3:<cache id>=<mask>``): on the caches the
VM's CPUs use the group gets its exclusive ways, elsewhere it shares what the
default group has. Ways in ``info/L3/shareable_bits`` (used by other
hardware) and ways of other groups in ``exclusive`` mode are never taken.
Masks must be contiguous unless ``info/L3/sparse_masks`` says otherwise; a
narrowed group keeps its largest contiguous run.

Only plain L3 allocation is handled; with CDP (``L3CODE``/``L3DATA``) the step
reports that it cannot apply.
"""

from __future__ import annotations

import errno
import zlib

from rtlibvirt.hook.isolation.base import Host, Step, ValuePlan, converge, owned, verify_values
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import mounts
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.kernel.resctrl import (
    RESCTRL,
    Info,
    cache_ids,
    ctrl_groups,
    group_dir,
    l3_line,
    last_status,
    mode,
    mounted,
    owns,
    parse_l3,
    read_info,
    read_l3_line,
    same_l3,
    show_l3,
)

NAME = "cache_ways"
GROUP_PREFIX = "rtlibvirt-"
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def group_name(domain: str) -> str:
    """The resctrl group of a VM: ``rtlibvirt-`` and its name, encoded.

    Every byte of the (UTF-8) name outside ``A-Z a-z 0-9 _ . -`` is written as
    ``+XX``, so that no domain name can make the group a path of its own
    (``/``, ``..``, control characters); a name too long for a directory is
    cut and ends in its checksum. Distinct names give distinct groups.
    """
    encoded = "".join(
        chr(b) if b in _PLAIN else f"+{b:02x}" for b in domain.encode("utf-8", "surrogatepass")
    )
    name = GROUP_PREFIX + encoded
    if len(name) > 200:
        name = f"{name[:190]}+{zlib.crc32(encoded.encode()):08x}"
    return name


def _same_cpus(a: str, b: str) -> bool:
    try:
        return set(parse_cpulist(a)) == set(parse_cpulist(b))
    except CpuListError:
        return a.strip() == b.strip()


def _read_cpus(fs: HostFS, path: str) -> str | None:
    try:
        return fs.read(path)
    except OSError:
        return None


def popcount(mask: int) -> int:
    return bin(mask).count("1")


def narrow(mask: int, taken: int, sparse: bool) -> int:
    """``mask`` without the ``taken`` ways; its largest contiguous run unless sparse."""
    rest = mask & ~taken
    if sparse or rest == 0:
        return rest
    best_start = best_len = 0
    bit, top = 0, rest.bit_length()
    while bit < top:
        if rest >> bit & 1:
            end = bit
            while end < top and rest >> end & 1:
                end += 1
            if end - bit > best_len:
                best_start, best_len = bit, end - bit
            bit = end
        else:
            bit += 1
    return ((1 << best_len) - 1) << best_start


# ---- the allocation ----------------------------------------------------------------


def ensure_mounted(host: Host) -> str | None:
    """Mount resctrl if the kernel supports it and it is not mounted; why not, else None."""
    fs, _state = host.fs, host.state
    if mounted(fs):
        return None
    if "resctrl" not in mounts.filesystems(fs):
        return (
            "resctrl is not available: the kernel or CPU has no cache allocation "
            "(no 'resctrl' in /proc/filesystems)"
        )
    host.set_mounted(True)  # recorded before the change, so it is undone
    host.save()
    try:
        fs.mount("resctrl", RESCTRL)
    except OSError as exc:
        host.set_mounted(False)
        return f"cannot mount resctrl on {RESCTRL}: {exc.strerror or exc}"
    host.log.info(f"mounted resctrl on {RESCTRL}")
    return None


class _Group:
    __slots__ = ("directory", "masks", "mode")

    def __init__(self, directory: str, masks: dict[str, int], mode: str) -> None:
        self.directory = directory
        self.masks = masks
        self.mode = mode


def _foreign_groups(host: Host) -> list[_Group]:
    """Every control group the hook did not create, with its original L3 masks."""
    groups = []
    for directory in ctrl_groups(host.fs):
        if directory in host.state.groups:
            continue
        key = f"{directory}/schemata"
        text = host.state.originals.get(key) or host.fs.read_or(key, "")
        masks = parse_l3(text) or {}
        groups.append(_Group(directory, masks, mode(host.fs, directory)))
    return groups


def allocate(host: Host, info: Info, claim: Claim, others: list[Claim]) -> dict[str, int] | str:
    """Choose ``claim``'s ways on each of its caches; a reason when there are not enough."""
    fs = host.fs
    want = claim.settings.cache_ways
    if want < info.min_bits:
        return f"cache_ways {want} is below this CPU's minimum of {info.min_bits} (min_cbm_bits)"
    if want > info.nbits:
        return f"cache_ways {want} is more than the {info.nbits} ways of the L3 cache"
    groups = _foreign_groups(host)
    default = next((g for g in groups if g.directory == RESCTRL), None)
    all_domains = sorted(default.masks) if default else []
    if not all_domains:
        return f"cannot read the L3 line of {RESCTRL}/schemata"
    mine = cache_ids(fs, claim.cpus)
    domains = sorted(mine & set(all_domains)) if mine else all_domains
    chosen: dict[str, int] = {}
    for domain in domains:
        reserved = 0
        for other in others:
            reserved |= other.cache.get(domain, 0)
        blocked = info.shareable | reserved
        for group in groups:
            if group.mode != "shareable":
                blocked |= group.masks.get(domain, 0)
        free = info.cbm_mask & ~blocked
        window = (1 << want) - 1
        for start in range(info.nbits - want, -1, -1):
            ways = window << start
            if ways & ~free:
                continue
            if all(
                popcount(narrow(g.masks.get(domain, 0), reserved | ways, info.sparse))
                >= info.min_bits
                for g in groups
                if g.mode == "shareable" and g.masks.get(domain, 0)
            ):
                chosen[domain] = ways
                break
        else:
            return (
                f"not enough free cache ways on L3 cache {domain}: {want} wanted, "
                f"{popcount(free)} of {info.nbits} free (reserved by other VMs "
                f"{format(reserved, 'x') or '0'}, shareable_bits {info.shareable:x}), and every "
                f"other group must keep at least {info.min_bits}"
            )
    return chosen


def _closid_problem(host: Host, info: Info, claim: Claim) -> str | None:
    groups = ctrl_groups(host.fs)
    if group_dir(group_name(claim.name)) in groups:
        return None
    if len(groups) >= info.closids:
        return (
            f"no free CLOS id: the CPU has {info.closids} (num_closids) and "
            f"{len(groups)} resctrl groups exist"
        )
    return None


def reserve(host: Host, claim: Claim, others: list[Claim]) -> str | None:
    """Allocate ``claim``'s ways now (at ``prepare``); why it cannot, else None."""
    problem = ensure_mounted(host)
    if problem:
        return problem
    info = read_info(host.fs)
    if isinstance(info, str):
        return info
    problem = _closid_problem(host, info, claim)
    if problem:
        return problem
    if claim.cache:
        return None
    chosen = allocate(host, info, claim, [c for c in others if c.cache])
    if isinstance(chosen, str):
        return chosen
    claim.cache = chosen
    return None


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    problem = reserve(host, claim, others)
    return [problem] if problem else []


# ---- plan, apply, verify, undo -----------------------------------------------------


class Plan:
    """What resctrl should look like for the running claims."""

    __slots__ = ("cpus", "foreign", "groups", "info", "remove", "umount")

    def __init__(self) -> None:
        self.info: Info | None = None
        self.remove: list[str] = []  # our groups to remove (first)
        self.foreign: ValuePlan | None = None  # other groups' L3 lines
        self.cpus: ValuePlan | None = None  # other groups' cpus_list, given back
        self.groups: dict[str, tuple[Claim, str]] = {}  # our group dir -> (claim, L3 line)
        self.umount = False


def plan(host: Host, claims: list[Claim]) -> Plan:
    fs, state = host.fs, host.state
    result = Plan()
    active = [c for c in claims if c.cache]
    result.remove = sorted(
        d for d, owner in state.groups.items() if owner not in {c.name for c in active}
    )
    if not mounted(fs):
        return result
    info = read_info(fs)
    if isinstance(info, str):
        return result
    result.info = info
    reserved: dict[str, int] = {}
    for claim in active:
        for domain, mask in claim.cache.items():
            reserved[domain] = reserved.get(domain, 0) | mask
    wanted: dict[str, str | None] = {}
    default_masks: dict[str, int] = {}
    for group in _foreign_groups(host):
        key = f"{group.directory}/schemata"
        if group.mode != "shareable" or not group.masks:
            continue
        if not reserved:
            wanted[key] = None
            continue
        masks = {
            d: narrow(m, reserved.get(d, 0), info.sparse) if reserved.get(d) else m
            for d, m in group.masks.items()
        }
        wanted[key] = l3_line(masks, info.width)
        if group.directory == RESCTRL:
            default_masks = masks
    for key in owned(state, owns):
        if key.endswith("/schemata"):
            wanted.setdefault(key, None)
    result.foreign = ValuePlan(
        NAME,
        wanted,
        same=same_l3,
        describe=lambda p: f"resctrl group {_group_name(p)} L3 ways",
        show=show_l3,
        read=read_l3_line,
    )
    taken: set[int] = set()
    for claim in active:
        taken |= claim.cpus
    cpus: dict[str, str | None] = {}
    for key in owned(state, owns):
        if key.endswith("/cpus_list"):
            original = frozenset(parse_cpulist(state.originals[key]))
            cpus[key] = format_cpulist(original - taken) if original & taken else None
    result.cpus = ValuePlan(
        NAME,
        cpus,
        same=_same_cpus,
        describe=lambda p: f"resctrl group {_group_name(p)} CPUs",
        read=_read_cpus,
    )
    for claim in active:
        masks = dict(default_masks)
        masks.update(claim.cache)
        result.groups[group_dir(group_name(claim.name))] = (claim, l3_line(masks, info.width))
    result.umount = (
        not active
        and state.resctrl_mounted
        and len([g for g in ctrl_groups(fs) if g not in result.remove]) == 1
    )
    return result


def _group_name(path: str) -> str:
    directory = path.rsplit("/", 1)[0]
    return "(default)" if directory == RESCTRL else directory.rsplit("/", 1)[1]


def apply(host: Host, the_plan: Plan) -> None:
    fs, _state, log = host.fs, host.state, host.log
    for directory in the_plan.remove:
        try:
            fs.rmdir(directory)
            log.info(f"removed resctrl group {directory}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error(f"cannot remove resctrl group {directory}: {exc.strerror or exc}")
            continue
        host.remove_group(directory)
    if the_plan.cpus is not None:
        converge(host, the_plan.cpus)
    if the_plan.foreign is not None:
        converge(host, the_plan.foreign)
    for directory, (claim, line) in sorted(the_plan.groups.items()):
        _make_group(host, directory, claim, line)
    if the_plan.umount:
        try:
            fs.umount(RESCTRL)
        except OSError as exc:
            log.error(f"cannot unmount {RESCTRL}: {exc.strerror or exc}")
            return
        log.info(f"unmounted {RESCTRL} (rtlibvirt had mounted it)")
        host.set_mounted(False)


def _make_group(host: Host, directory: str, claim: Claim, line: str) -> None:
    fs, state, log = host.fs, host.state, host.log
    if not fs.exists(directory):
        host.add_group(directory, claim.name)  # recorded before the change
        host.save()
        try:
            fs.mkdir(directory)
        except OSError as exc:
            reason = "no free CLOS id" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            log.error(f"{claim.name}: cannot create resctrl group {directory}: {reason}")
            host.remove_group(directory)
            return
        log.info(f"{claim.name}: created resctrl group {directory}")
    if directory not in state.groups:
        host.add_group(directory, claim.name)
    if not same_l3(fs.read_or(f"{directory}/schemata", ""), line):
        _write(host, f"{directory}/schemata", line, f"{claim.name}: L3 ways {show_l3(line)}")
    # The VM's CPUs: save the CPU lists of other groups they are taken from.
    cpus = format_cpulist(claim.cpus)
    if not _same_cpus(fs.read_or(f"{directory}/cpus_list", ""), cpus):
        for other in ctrl_groups(fs):
            if other in (RESCTRL, directory) or other in state.groups:
                continue
            key = f"{other}/cpus_list"
            text = fs.read_or(key, "")
            try:
                held = frozenset(parse_cpulist(text))
            except CpuListError:
                continue
            if held & claim.cpus and key not in state.originals:
                host.keep_original(key, text)
        host.save()
        _write(host, f"{directory}/cpus_list", cpus, f"{claim.name}: CPUs {cpus} into {directory}")
    present = set(fs.read_or(f"{directory}/tasks", "").split())
    for tid in claim.tids:
        if str(tid) not in present:
            _write(host, f"{directory}/tasks", str(tid), f"{claim.name}: vCPU thread {tid} added")


def _write(host: Host, path: str, value: str, done: str) -> bool:
    try:
        host.fs.write(path, value)
    except OSError as exc:
        status = last_status(host.fs)
        detail = f" ({status})" if status else ""
        host.log.error(f"cannot write {value!r} to {path}: {exc.strerror or exc}{detail}")
        return False
    host.log.info(done)
    return True


def reconcile(host: Host, claims: list[Claim]) -> None:
    state = host.state
    if not claims and not state.groups and not state.resctrl_mounted and not owned(state, owns):
        return
    if not mounted(host.fs):
        if state.resctrl_mounted and not claims:
            host.set_mounted(False)  # the mount never happened (a kill), or someone else undid it
        # Every file of resctrl went with its unmount (ours, whose record a kill lost, or
        # anyone's): nothing to restore, as for any other file that is gone.
        for key in owned(state, owns):
            if key.endswith(("/schemata", "/cpus_list")) and host.drop_original(key):
                host.log.debug(f"{key}: gone with resctrl's unmount; nothing to restore")
    if claims:
        info: Info | None = None
        problem = ensure_mounted(host)
        if problem is None:
            found = read_info(host.fs)
            if isinstance(found, str):
                problem = found
            else:
                info = found
        if info is None:
            for claim in claims:
                if claim.cache_error != problem:
                    claim.cache_error = problem
                    host.put_claim(claim)
                    host.log.warning(f"{claim.name}: no exclusive cache ways: {problem}")
        else:
            taken = [c for c in state.claims.values() if c.cache]
            for claim in claims:
                if claim.cache:
                    continue
                chosen = allocate(host, info, claim, [c for c in taken if c is not claim])
                if isinstance(chosen, str):
                    if claim.cache_error != chosen:
                        host.log.warning(f"{claim.name}: no exclusive cache ways: {chosen}")
                    claim.cache_error = chosen
                else:
                    claim.cache, claim.cache_error = chosen, None
                    taken.append(claim)
                host.put_claim(claim)
    apply(host, plan(host, claims))


def undo(host: Host) -> None:
    reconcile(host, [])


def verify(host: Host, claims: list[Claim]) -> list[str]:
    fs = host.fs
    problems = []
    the_plan = plan(host, claims)
    if the_plan.foreign is not None:
        problems += verify_values(host, the_plan.foreign)
    for directory, (claim, _line) in sorted(the_plan.groups.items()):
        if not fs.exists(directory):
            problems.append(f"{claim.name}: resctrl group {directory} is missing")
            continue
        have = parse_l3(fs.read_or(f"{directory}/schemata", "")) or {}
        for domain, mask in claim.cache.items():
            if have.get(domain) != mask:
                problems.append(
                    f"{claim.name}: L3 cache {domain} has ways {have.get(domain, 0):x}, "
                    f"expected {mask:x}"
                )
        if not _same_cpus(fs.read_or(f"{directory}/cpus_list", ""), format_cpulist(claim.cpus)):
            problems.append(
                f"{claim.name}: {directory}/cpus_list is not {format_cpulist(claim.cpus)}"
            )
        present = set(fs.read_or(f"{directory}/tasks", "").split())
        missing = [t for t in claim.tids if str(t) not in present]
        if missing:
            problems.append(f"{claim.name}: vCPU threads {missing} are not in {directory}/tasks")
    return problems


STEP = Step(
    NAME,
    wants=lambda settings: settings.cache_ways > 0,
    check=check,
    reconcile=reconcile,
    verify=verify,
)
