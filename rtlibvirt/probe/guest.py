"""What runs inside the probe guest: its init, its kernel command line, its cyclictest.

The init (a busybox shell script) reads its parameters from the kernel
command line (``rtlprobe.*``), runs cyclictest as the real-time community
runs it, writes the results between marker lines to the second serial port
(``ttyS1``; the first one is the guest's console) and powers the guest off.

The same guest command line isolates the realtime vCPUs inside the guest:
:func:`isolation_args` is guest-prep's command line (the guest profile, one
definition), which ``rtlibvirt render`` points to for the user's own guest, so
the probe measures what the user's guest runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# cyclictest as OSADL, rteval and the rt-tests documentation run it
PRIORITY = 95
INTERVAL_US = 200
POLICY = "fifo"

# Marker lines of the results on ttyS1 (see INIT); the parser looks for them.
BEGIN = "RTLPROBE BEGIN"
END = "RTLPROBE END"

INIT = r"""#!/bin/busybox sh
# rtlibvirt probe guest: run cyclictest as the kernel command line says (rtlprobe.*),
# write the results to the second serial port, power off. Made by rtlibvirt.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /tmp
mount -t tmpfs -o mode=1777 shm /dev/shm     # cyclictest needs /dev/shm
mount -t tmpfs tmp /tmp
say() { echo "rtlprobe: $*" > /dev/console; }
stop() { sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
param() {  # rtlprobe.NAME=VALUE of the kernel command line, when VALUE is safe
    for word in $(cat /proc/cmdline); do
        case "$word" in
        rtlprobe.$1=*)
            value="${word#*=}"
            case "$value" in
            *[!0-9,-]*|"") say "bad value of rtlprobe.$1: $value"; stop ;;
            esac
            echo "$value"; return ;;
        esac
    done
    say "rtlprobe.$1 is missing from the kernel command line"; stop
}
out=/dev/ttyS1
stty -F "$out" raw -echo 2>/dev/null
duration=$(param duration); cpus=$(param cpus); threads=$(param threads)
main=$(param main); interval=$(param interval); priority=$(param priority)
histogram=$(param histogram)
{
    echo "RTLPROBE BEGIN"
    echo "online $(cat /sys/devices/system/cpu/online)"
    echo "isolated $(cat /sys/devices/system/cpu/isolated)"
    echo "kernel $(uname -r) $(cat /sys/kernel/realtime 2>/dev/null)"
} > "$out"
say "cyclictest on vCPUs $cpus for ${duration}s"
cyclictest -m -q --policy=fifo -p"$priority" -i"$interval" -t"$threads" -a"$cpus" \
    --mainaffinity="$main" -h"$histogram" -D"$duration" --json=/tmp/result.json \
    > /tmp/histogram.txt 2> /tmp/stderr.txt
rc=$?
{
    echo "RTLPROBE RC $rc"
    echo "RTLPROBE JSON"
    cat /tmp/result.json 2>/dev/null
    echo "RTLPROBE HISTOGRAM"
    # the summary lines and the rows that count something (the rest are all zero)
    awk '/^#/ { print; next } { for (i = 2; i <= NF; i++) if ($i + 0) { print; next } }' \
        /tmp/histogram.txt
    echo "RTLPROBE STDERR"
    head -c 4096 /tmp/stderr.txt
    echo "RTLPROBE END"
} > "$out"
say "done (cyclictest exit status $rc)"
stop
"""


@dataclass(frozen=True)
class Measurement:
    """One cyclictest run: where its threads run and for how long."""

    cpus: tuple[int, ...]  # one measuring thread on each, in this order
    main: int  # the main thread's CPU (a housekeeping CPU)
    duration_s: int
    histogram_us: int
    interval_us: int = INTERVAL_US
    priority: int = PRIORITY

    def argv(self) -> list[str]:
        """cyclictest's options (without the program and the output files)."""
        return [
            "-m",
            "-q",
            f"--policy={POLICY}",
            f"-p{self.priority}",
            f"-i{self.interval_us}",
            f"-t{len(self.cpus)}",
            f"-a{','.join(str(c) for c in self.cpus)}",
            f"--mainaffinity={self.main}",
            f"-h{self.histogram_us}",
            f"-D{self.duration_s}",
        ]

    def kernel_params(self) -> list[str]:
        """The ``rtlprobe.*`` words of the guest command line that INIT reads."""
        return [
            f"rtlprobe.duration={self.duration_s}",
            f"rtlprobe.cpus={','.join(str(c) for c in self.cpus)}",
            f"rtlprobe.threads={len(self.cpus)}",
            f"rtlprobe.main={self.main}",
            f"rtlprobe.interval={self.interval_us}",
            f"rtlprobe.priority={self.priority}",
            f"rtlprobe.histogram={self.histogram_us}",
        ]


def isolation_args(vcpus: int, realtime: Sequence[int]) -> list[str]:
    """The guest kernel arguments that keep the kernel off the realtime vCPUs: guest-prep's
    (``hostprep.profiles.guest``), the one definition of the guest half.

    Empty when no vCPU is left for housekeeping: a Linux guest with every vCPU
    isolated has nowhere to run its own work.
    """
    from rtlibvirt.hostprep.profiles.guest import kernel_args

    return kernel_args(vcpus, realtime)


def housekeeping_vcpu(vcpus: int, realtime: Sequence[int]) -> int:
    """The first vCPU that is not real-time (vCPU 0 when all are)."""
    rt = set(realtime)
    return next((v for v in range(vcpus) if v not in rt), 0)


def kernel_cmdline(measurement: Measurement, isolation: Sequence[str]) -> str:
    """The probe guest's whole command line."""
    words = [
        "console=ttyS0,115200",
        "panic=-1",  # a panic reboots at once, and on_reboot destroys the domain
        "loglevel=4",
        *isolation,
        *measurement.kernel_params(),
    ]
    return " ".join(words)
