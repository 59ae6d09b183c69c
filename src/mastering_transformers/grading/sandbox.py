"""Starting, talking to and killing the sandboxed worker (the trusted side of ``worker.py``).

The worker runs under bubblewrap (Debian's ``bubblewrap``): new PID, network, IPC and UTS namespaces (no
network, no other process visible), a read-only view of the Python installation and of this package, an
empty writable /tmp and nothing else: not the course repository, the solutions, the hidden checks, the
gradebook, other students or the output folder. Resource limits (address space, CPU time, processes,
open files, file size) are set before any student code runs; as root it also becomes an unprivileged
user (a uid leased for the worker's life, never shared by two live workers on the machine). Killing it
kills its whole PID namespace and every process of its uid: nothing survives.

``SandboxConfig(enabled=False)`` runs the worker as a plain subprocess with the same protocol and limits,
for machines without bubblewrap; the grading CLI allows it only with ``--unsafe-no-sandbox``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .errors import CourseError

WORKER = Path(__file__).with_name("worker.py")
PACKAGE = Path(__file__).resolve().parents[1]  # src/mastering_transformers: public course code


class SandboxError(CourseError):
    """The sandbox cannot be started on this machine (a course-side problem, not the student's)."""


class WorkerDied(Exception):
    """The worker exited or was killed while the trusted side waited for it."""


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline; it has been killed."""


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed reply (its pipe was written to by student code)."""


@dataclass
class SandboxConfig:
    enabled: bool = True
    memory_mb: int = 2048  # address space: torch itself takes about 0.8 GB of it
    cpu_seconds: int = 600  # CPU time over the worker's whole life (parent-side timeouts act first)
    max_processes: int = 256  # threads count too
    max_open_files: int = 256
    max_file_mb: int = 64
    tmp_mb: int = 256
    output_bytes: int = 16_000  # what is kept of the student's printed output, per segment
    uid: int = 61000  # as root: the first unprivileged uid to try for the worker (see lease_uid)

    def limits(self) -> dict:
        mb = 2**20
        return {"uid": self.uid if self.enabled else None, "rlimits": {
            "RLIMIT_AS": self.memory_mb * mb, "RLIMIT_CPU": self.cpu_seconds, "RLIMIT_CORE": 0,
            "RLIMIT_NOFILE": self.max_open_files, "RLIMIT_FSIZE": self.max_file_mb * mb,
            **({"RLIMIT_NPROC": self.max_processes} if self.enabled and os.geteuid() == 0 else {}),
        }}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _readonly_roots() -> list[Path]:
    """What the worker may read: the Python installation, its site-packages and this package."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PACKAGE}
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path.is_dir() and path.name in ("site-packages", "dist-packages"):
            roots.add(path)
    roots = sorted(r for r in roots if r.is_dir() and not str(r).startswith("/usr/"))
    return [r for r in roots if not any(other in r.parents for other in roots)]  # outermost only


def bwrap_command(config: SandboxConfig, python: str, limits: dict) -> list[str]:
    cmd = [bwrap_path(), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # only to drop root, first thing
    else:
        cmd += ["--unshare-user"]
    cmd += ["--size", str(config.tmp_mb * 2**20), "--perms", "1777", "--tmpfs", "/tmp",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/" + link).is_symlink():
            cmd += ["--symlink", os.readlink("/" + link), "/" + link]
    made = set()
    for root in [*_readonly_roots(), WORKER.parent]:
        for parent in reversed(root.parents):
            if str(parent) not in ("/", "/tmp") and parent not in made:
                cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += ["--ro-bind", str(root), str(root)]
    cmd += ["--ro-bind-try", "/etc/fonts", "/etc/fonts"]  # matplotlib, if a student imports it, finds fonts
    cmd += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--clearenv",
            "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "MPLBACKEND", "Agg",
            "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "LANG", "C.UTF-8"]
    return cmd + [python, "-I", str(WORKER), json.dumps(limits)]


def _python() -> str:
    """The interpreter of this environment (the venv's, so that torch is importable)."""
    venv_python = Path(sys.prefix) / "bin" / "python"
    return str(venv_python if venv_python.exists() else sys.executable)


UID_RANGE = 2000
LEASES = Path("/tmp/mt-sandbox-uids")


def lease_uid(first: int) -> tuple[int, int]:
    """(uid, lock fd): a sandbox uid no other live worker on this machine holds, from ``first`` on.

    Each uid is guarded by an exclusive flock on ``/tmp/mt-sandbox-uids/<uid>``, held while the worker
    lives, so parallel grading runs never share a uid (and so never kill or limit each other's workers).
    Leftover processes of an earlier holder of the uid are killed before it is used.
    """
    LEASES.mkdir(mode=0o700, exist_ok=True)
    for uid in range(first, first + UID_RANGE):
        fd = os.open(LEASES / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        kill_uid(uid)
        return uid, fd
    raise SandboxError(f"no free sandbox uid in {first}..{first + UID_RANGE - 1}")


def kill_uid(uid: int) -> int:
    """Kill every process of ``uid`` (only as root): the backstop that nothing of a student survives."""
    if os.geteuid() != 0 or uid == 0:
        return 0
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uids = next((line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")), [])
        if str(uid) in uids:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


class Output:
    """What the student's code printed, kept up to a cap per segment; the rest is counted and dropped."""

    def __init__(self, fd: int, cap: int):
        self.fd, self.cap = fd, cap
        self.kept: list[bytes] = []
        self.size = 0
        self.dropped = 0
        os.set_blocking(fd, False)
        try:
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: a 1 MB pipe, fewer wake-ups for chatty code
        except OSError:
            pass

    def drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            room = self.cap - self.size
            if room > 0:
                self.kept.append(chunk[:room])
                self.size += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - max(room, 0))

    def take(self) -> str:
        """The text since the last ``take`` (capped), noting how much was left out."""
        self.drain()
        text = b"".join(self.kept).decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[... {self.dropped:,} more bytes of output not shown]"
        self.kept, self.size, self.dropped = [], 0, 0
        return text


class WorkerProcess:
    """One sandboxed worker, from start to kill."""

    def __init__(self, config: SandboxConfig, start_timeout: float = 60.0):
        self.config = config
        if config.enabled and bwrap_path() is None:
            raise SandboxError("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`, "
                               "or grade with --unsafe-no-sandbox on a machine you do not mind students owning")
        self.lease = None
        uid = None
        if config.enabled and os.geteuid() == 0:
            uid, self.lease = lease_uid(config.uid)
        self.uid = uid
        replies_r, replies_w = os.pipe()
        limits = {**config.limits(), "uid": uid, "reply_fd": replies_w}
        python = _python()
        cmd = bwrap_command(config, python, limits) if config.enabled else [python, "-I", str(WORKER), json.dumps(limits)]
        env = None if config.enabled else {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "MPLBACKEND": "Agg",
                                           "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(replies_w,), start_new_session=True, env=env, cwd="/tmp",
            )
        finally:
            os.close(replies_w)
        self.replies = replies_r
        self.requests = self.proc.stdin.fileno()
        self.output = Output(self.proc.stdout.fileno(), config.output_bytes)
        self.alive = True
        try:
            header, _ = self.receive(time.monotonic() + start_timeout)
        except (WorkerDied, WorkerTimeout, ProtocolError) as exc:
            text = self.output.take()
            self.kill()
            raise SandboxError(f"the sandboxed worker did not start ({type(exc).__name__}): {text[-800:]}") from None
        if header.get("kind") != "ready":
            self.kill()
            raise SandboxError("the sandboxed worker did not start")
        if uid is not None and header.get("uid") != uid:
            self.kill()
            raise SandboxError("the sandboxed worker did not drop root")

    def send(self, header: dict, buffers: list[bytes] = (), deadline: float | None = None) -> None:
        try:
            wire.write_all(self.requests, wire.pack(header, buffers), deadline)
        except wire.Timeout:
            self.kill()
            raise WorkerTimeout from None
        except (wire.Closed, OSError):
            reason = self.exit_reason()
            self.kill()
            raise WorkerDied(reason) from None

    def receive(self, deadline: float | None) -> tuple[dict, list[bytes]]:
        try:
            header, buffers = wire.read_message(self.replies, deadline, on_idle=self.output.drain,
                                                watch=self.output.fd)
        except wire.Timeout:
            self.kill()
            raise WorkerTimeout from None
        except wire.Closed:
            reason = self.exit_reason()  # before kill(), which would make every death look like SIGKILL
            self.kill()
            raise WorkerDied(reason) from None
        except wire.WireError as exc:
            self.kill()
            raise ProtocolError(str(exc)) from None
        if type(header.get("kind")) is not str:
            self.kill()
            raise ProtocolError("a reply without a kind")
        return header, buffers

    def exit_reason(self) -> str:
        if not self.alive:
            return "it was stopped"
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code is None:
            return "it stopped answering"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (memory or CPU limit?)" if name in ("SIGKILL", "SIGXCPU", "SIGSEGV") else ""
            return f"killed by {name}{hint}"
        # bwrap passes the exit status of the sandboxed process through
        return f"exited with status {code}"

    def kill(self) -> None:
        if not self.alive:
            return
        self.alive = False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.output.drain()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.close(self.replies)
        except OSError:
            pass
        if self.lease is not None:
            kill_uid(self.uid)
            os.close(self.lease)  # releases the flock: the uid is free again
            self.lease = None
