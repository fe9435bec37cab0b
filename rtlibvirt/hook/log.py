"""The hook's log: syslog (the journal) where ``/dev/log`` exists, else a file.

Every line names the domain and the operation (``plc started begin: ...``), so
``journalctl -t rtlibvirt-hook`` or ``grep plc /var/log/rtlibvirt/hook.log``
tells what the hook did to the host for one VM. The lines are also kept in
memory, for the caller (and tests) to look at.

Each step logs one line (how many values it changed, restored or could not);
the value of each file (``IRQ 24 affinity: 0-3 -> 0,2-3``) is a debug line,
written only while ``/run/rtlibvirt/debug`` exists (``touch`` it to see them),
since thousands of IRQs would otherwise mean thousands of lines per start.

Control characters in a line (from a domain name, a value read from the
host, an error message) are written escaped (``\n`` as ``\x0a``): nothing a
domain carries can forge a log line. So are lone surrogates: a domain name
that is not UTF-8 reaches the hook in ``argv`` with its bytes as
``surrogateescape`` surrogates, which no UTF-8 log (nor syslog) can encode;
each is written as the byte it stands for (``\xff``).

Standard library only, and cheap: the hook logs on every libvirt event.
"""

from __future__ import annotations

import os
import re
import time

from rtlibvirt.kernel.fs import HostFS

IDENT = "rtlibvirt-hook"
LOG_FILE = "/var/log/rtlibvirt/hook.log"
DEBUG_FLAG = "/run/rtlibvirt/debug"
LEVELS = ("debug", "info", "warning", "error")
# C0 and C1 control characters, DEL, the Unicode line and paragraph separators, and
# lone surrogates (the bytes of a non-UTF-8 name, decoded with surrogateescape)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


MAX_LINE = 2000  # characters of one log line (a quoted value may be megabytes)


def clip(text: str, limit: int = MAX_LINE) -> str:
    """``text`` cut to ``limit`` characters, saying how much more there was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text) - limit + 40} more characters)"


def escape(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (``\\uNNNN``)."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte it stands for
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def uses_syslog(fs: HostFS) -> bool:
    """The hook logs to syslog on the live host when it has one, else to LOG_FILE."""
    return fs.is_live and os.path.exists("/dev/log")


def destination(fs: HostFS) -> str:
    """Where the hook's lines go, for people (``rtlibvirt hook status``)."""
    return "syslog (journalctl -t rtlibvirt-hook)" if uses_syslog(fs) else fs.real(LOG_FILE)


class HookLog:
    """Log lines of one hook call, prefixed with the domain and operation."""

    def __init__(self, fs: HostFS, prefix: str) -> None:
        self.fs = fs
        self.prefix = prefix
        self.lines: list[tuple[str, str]] = []
        self._syslog = uses_syslog(fs)
        self._file_fd: int | None = None
        self._failed = False
        self._debug: bool | None = None  # written out? (DEBUG_FLAG, looked up once)
        if self._syslog:
            import syslog

            syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)

    def debug(self, message: str) -> None:
        self._emit("debug", message)

    def info(self, message: str) -> None:
        self._emit("info", message)

    def warning(self, message: str) -> None:
        self._emit("warning", message)

    def error(self, message: str) -> None:
        self._emit("error", message)

    def messages(self, level: str | None = None) -> list[str]:
        return [text for lvl, text in self.lines if level is None or lvl == level]

    def _emit(self, level: str, message: str) -> None:
        self.lines.append((level, message))
        if level == "debug":
            if self._debug is None:
                self._debug = self.fs.exists(DEBUG_FLAG)
            if not self._debug:
                return
        text = escape(clip(f"{self.prefix}: {message}" if self.prefix else message))
        if self._syslog:
            import syslog

            priority = {
                "debug": syslog.LOG_DEBUG,
                "info": syslog.LOG_INFO,
                "warning": syslog.LOG_WARNING,
                "error": syslog.LOG_ERR,
            }[level]
            syslog.syslog(priority, text)
            return
        self._append(level, text)

    def _append(self, level: str, text: str) -> None:
        if self._failed:
            return
        try:
            if self._file_fd is None:
                path = self.fs.real(LOG_FILE)
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                self._file_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            line = f"{stamp} {IDENT}[{os.getpid()}] {level}: {text}\n"
            os.write(self._file_fd, line.encode("utf-8", "replace"))
        except OSError:
            # Logging must never break the hook (a full or read-only /var/log).
            self._failed = True

    def close(self) -> None:
        if self._file_fd is not None:
            os.close(self._file_fd)
            self._file_fd = None


TAIL_BYTES = 1 << 20  # of the log file read for `hook status --domain` (its last MiB)


def recent(fs: HostFS, domain: str, limit: int = 50) -> list[str]:
    """The last ``limit`` lines the hook logged about ``domain`` (for ``hook status --json``).

    From the journal (``journalctl -t rtlibvirt-hook``) where the hook logs to
    syslog, else from the last MiB of LOG_FILE. A line is about the domain when
    its message starts with the domain's name (as the hook writes it, escaped)
    and an operation. Not used by the hook itself. Never raises.
    """
    prefix = escape(domain) + " "
    if uses_syslog(fs):
        import subprocess

        try:
            done = subprocess.run(
                ["journalctl", "-t", IDENT, "-n", "5000", "-o", "short-iso", "--no-pager", "-q"],
                capture_output=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        text = done.stdout[-TAIL_BYTES:].decode("utf-8", "replace")
    else:
        try:
            with open(fs.real(LOG_FILE), "rb") as log:
                size = os.fstat(log.fileno()).st_size
                log.seek(max(0, size - TAIL_BYTES))
                text = log.read(TAIL_BYTES).decode("utf-8", "replace")
        except OSError:
            return []
    found = []
    for line in text.splitlines():
        # "STAMP IDENT[PID] LEVEL: DOMAIN OP PHASE: message" (the file),
        # "STAMP HOST IDENT[PID]: DOMAIN OP PHASE: message" (the journal)
        head, sep, message = line.partition(": ")
        if sep and IDENT in head and message.startswith(prefix):
            found.append(line)
    return found[-limit:]
