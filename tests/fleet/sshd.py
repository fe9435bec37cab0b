"""A second "host" on this machine: Debian's sshd on 127.0.0.2, for the fleet tests.

openssh-server is never installed (its postinst would start sshd on every
address): its .deb (and libwrap0's, which sshd links) is fetched with
``apt-get download`` and unpacked with ``dpkg -x``. sshd then runs

- in a private mount namespace (``unshare --mount``), where a copy of
  /etc/passwd with the privilege-separation user ``sshd`` is bind-mounted over
  the real one: nothing of the host's /etc changes;
- on 127.0.0.2 and one port only (checked from /proc/net/tcp after it starts);
- with a throw-away ed25519 host key and one authorized key made here, root
  login by key only, no forwarding of any kind;
- in the foreground (``-D``), stopped by its own pid, and the session
  processes it forked by theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ADDRESS = "127.0.0.2"
PACKAGES = ("openssh-server", "libwrap0")
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd
TCP_LISTEN = "0A"


@dataclass
class Sshd:
    """A running sshd and what a client needs to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    key: Path  # the client's private key
    known_hosts: Path
    log: Path
    made_privsep_dir: bool

    @property
    def pid(self) -> int:
        return self.process.pid

    def inventory_host(self) -> dict[str, object]:
        """Ansible's connection variables for this sshd (root, its key, piped transfers:
        Debian's sftp-server is not unpacked)."""
        return {
            "ansible_host": ADDRESS,
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": " ".join(self.ssh_args()),
            "ansible_ssh_transfer_method": "piped",
        }

    def ssh_args(self) -> list[str]:
        """Options for ssh (and for Ansible's ansible_ssh_common_args)."""
        return [
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ]

    def stop(self) -> None:
        """Stop sshd by its pid, then the session processes it forked (by theirs)."""
        children = _children(self.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.made_privsep_dir:
            with contextlib.suppress(OSError):
                PRIVSEP_DIR.rmdir()


def unpack(cache: Path) -> Path:
    """The unpacked packages (cached in ``cache``): ``cache/root/usr/sbin/sshd``."""
    root = cache / "root"
    sshd = root / "usr/sbin/sshd"
    if sshd.exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)  # apt's _apt user writes the download here
    for package in PACKAGES:
        if not list(cache.glob(f"{package}_*.deb")):
            _download(package, cache)
    staging = cache / "root.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(cache.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, timeout=120)
    staging.rename(root)
    return root


def _download(package: str, cache: Path) -> None:
    argv = ["apt-get", "download", "-q", package]
    done = subprocess.run(argv, cwd=cache, capture_output=True, timeout=300)
    if done.returncode != 0:  # no package lists yet (a fresh machine): read them once
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)
        subprocess.run(argv, cwd=cache, check=True, capture_output=True, timeout=300)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((ADDRESS, 0))
        return int(probe.getsockname()[1])


def _listening(pid: int) -> list[tuple[str, int]]:
    """The TCP (v4 and v6) sockets that ``pid`` listens on, as (address hex, port)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in inodes:
                address, port = local.split(":")
                found.append((address, int(port, 16)))
    return found


def _children(pid: int) -> list[int]:
    result = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            result.append(int(entry.name))
    return result


def start(unpacked: Path, work: Path) -> Sshd:
    """Start sshd on 127.0.0.2 with keys made in ``work``; wait until it answers."""
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    host_key = work / "ssh_host_ed25519_key"
    client_key = work / "id_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rtlibvirt-fleet-test",
                "-f",
                str(key),
            ],
            check=True,
        )
    authorized = work / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    known_hosts = work / "known_hosts"
    host_pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[{ADDRESS}]:{port} {host_pub[0]} {host_pub[1]}\n")

    config = work / "sshd_config"
    config.write_text(
        f"ListenAddress {ADDRESS}:{port}\n"
        f"HostKey {host_key}\n"
        f"PidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "AllowUsers root\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        # The key files live in a 0700 directory of the test, not in root's home.
        "StrictModes no\n"
        "AllowTcpForwarding no\n"
        "AllowStreamLocalForwarding no\n"
        "AllowAgentForwarding no\n"
        "X11Forwarding no\n"
        "PermitTunnel no\n"
        "PermitUserEnvironment no\n"
        "PrintMotd no\n"
        "LogLevel VERBOSE\n"
    )
    passwd = work / "passwd"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + "sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin\n"
    )
    made = not PRIVSEP_DIR.exists()
    if made:
        PRIVSEP_DIR.mkdir(mode=0o755)
    sshd_bin = unpacked / "usr/sbin/sshd"
    libs = ":".join(str(unpacked / d) for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"))
    log = work / "sshd.log"
    script = 'mount --bind "$1" /etc/passwd && shift && exec "$@"'
    process = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(passwd),
            str(sshd_bin),
            "-D",
            "-e",
            "-f",
            str(config),
        ],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": libs},
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Sshd(process, port, client_key, known_hosts, log, made)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection((ADDRESS, port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(
                    f"sshd does not answer on {ADDRESS}:{port}: {log.read_text()}"
                ) from None
            time.sleep(0.1)
    listening = _listening(process.pid)
    wanted = [(f"{0x0200007F:08X}", port)]  # 127.0.0.2, as /proc/net/tcp writes it
    if listening != wanted:
        server.stop()
        raise RuntimeError(f"sshd listens on {listening}, not only on {ADDRESS}:{port}")
    return server
