"""Whether the kernel is a real-time (PREEMPT_RT) kernel, and the memory features
a real-time host turns off: transparent hugepages and KSM.

``/sys/kernel/realtime`` holds ``1`` on kernels with the RT patch set; a
kernel built with ``CONFIG_PREEMPT_RT`` says ``PREEMPT_RT`` in its version
string (``uname -v``, the same text as ``/proc/sys/kernel/version``), which
mainline kernels since 6.12 do without the sysfs file. Both are read under a
root, so a tree is judged by its own files.

Standard library only.
"""

from __future__ import annotations

from rtlibvirt.kernel.cpufreq import read_small

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

REALTIME = "/sys/kernel/realtime"
VERSION = "/proc/sys/kernel/version"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
KSM_RUN = "/sys/kernel/mm/ksm/run"
RT_KERNEL_HINT = (
    "boot a PREEMPT_RT kernel (Debian: linux-image-rt-amd64; RHEL: kernel-rt; "
    "Ubuntu Pro: the realtime kernel): without it a vCPU can wait behind "
    "non-preemptible kernel sections of milliseconds"
)


def preempt_rt(fs: HostFS) -> tuple[bool | None, str]:
    """(is PREEMPT_RT, the evidence); None when neither file exists under the root."""
    flag = read_small(fs, REALTIME)
    if flag is not None:
        return flag == "1", f"{REALTIME} is {flag!r}"
    version = read_small(fs, VERSION)
    if version is None:
        return None, f"neither {REALTIME} nor {VERSION} exists"
    shown = version[:120]
    return "PREEMPT_RT" in version.split(), f"kernel version {shown!r} ({VERSION}, uname -v)"


def selected(text: str) -> str:
    """The chosen word of a sysfs selector (``always [madvise] never`` -> ``madvise``)."""
    words = text.split()
    for word in words:
        if len(word) > 2 and word[0] == "[" and word[-1] == "]":
            return word[1:-1]
    return text.strip()


def thp_mode(fs: HostFS) -> str | None:
    text = read_small(fs, THP_ENABLED)
    return None if text is None else selected(text)
