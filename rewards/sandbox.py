"""A local sandbox for programs a model wrote: a child process with limits, never ``exec`` in ours.

Used by the ``code_execution`` reward (:mod:`rewards.code_execution`). It guards a training run
against *accidents* -- infinite loops, memory blow-ups, runaway output, stray file writes, a
``pip install`` or HTTP call in generated code -- not against a determined attacker: it is not a
security boundary. Run untrusted code you fear in a container or VM of its own.

What every run gets (:func:`run_python`):

* a separate process, ``python -I`` (isolated mode: no ``PYTHON*`` variables, no user site
  directory, the script's and the current directory not on ``sys.path``);
* a fresh empty temporary directory as its working directory (the program file sits one level
  up), deleted afterwards with everything the program wrote there;
* a wall-clock limit: on expiry the whole process group (``start_new_session``) gets SIGKILL;
* resource limits the child sets on itself before the program's first line (a prelude run with
  ``-c``; not ``preexec_fn``, which the ``subprocess`` docs call unsafe in a threaded parent):
  ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_CORE`` = 0;
  soft = hard, so the program cannot raise them back;
* at most ``max_output_bytes`` read from stdout and from stderr: past that the process group is
  killed, so infinite output costs neither time nor memory;
* a stripped environment: ``PATH``, ``LANG``, ``HOME``/``TMPDIR`` = the work directory, and
  thread counts of 1 for BLAS/OpenMP; nothing of the trainer's (tokens, proxies) is passed;
* no network, in two layers: the prelude makes ``socket`` refuse internet sockets and name
  lookups (Python-level only: ``_socket`` or ``ctypes`` get round it), and where the kernel
  allows unprivileged user namespaces the child runs under ``unshare --net --map-root-user``,
  in a network namespace with no interfaces (kernel-level: nothing gets round it);
* when the trainer runs as root and the interpreter is usable by ``nobody``, the program runs as
  uid/gid 65534, so it cannot write outside world-writable places.

What it does not do: hide the rest of the filesystem (a program can read any file its user may
read by absolute path, and, running as the trainer's user, write where that user may write;
only relative paths are confined to the empty work directory), limit the total of all
processes or their number (each child inherits the limits; a fork bomb is cut by the group
kill on timeout, unless a process leaves the group with ``setsid``, but may fill the process
table first), or cap total disk use (only each file's size). :func:`sandbox_features` says which of the optional layers are active on this machine.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from rewards.errors import log_once

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "run_python", "sandbox_features"]

NOBODY = 65534
# Runs in the child before the program: limits, then the network guard, then the program as __main__.
_PRELUDE = r"""
import resource, sys
program, memory, cpu, fsize = sys.argv[1], *map(int, sys.argv[2:5])
for kind, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu),
                    (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)):
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))
import socket
def _refuse(*args, **kwargs):
    raise OSError(101, "network access is disabled in the grpo sandbox")
class _NoInternet(socket.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
            _refuse()
        super().__init__(family, type, proto, fileno)
socket.socket = socket.SocketType = _NoInternet
socket.getaddrinfo = socket.gethostbyname = socket.gethostbyname_ex = socket.create_connection = _refuse
del resource, socket, program, memory, cpu, fsize, kind, value, hard
sys.argv = sys.argv[1:2]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one sandboxed run produced.

    Attributes:
        stdout, stderr: decoded output (UTF-8, invalid bytes replaced), each at most
            ``max_output_bytes`` bytes long before decoding.
        returncode: the exit status; negative = killed by that signal (-9 after a timeout or
            the output cap, -24 at the CPU limit, -25 at the file-size limit).
        timed_out: the wall-clock limit expired.
        output_capped: stdout or stderr exceeded ``max_output_bytes``.
        seconds: wall-clock duration.
    """

    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    output_capped: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """Exited by itself with status 0, within the time and output limits."""
        return self.returncode == 0 and not self.timed_out and not self.output_capped


@dataclasses.dataclass(frozen=True)
class _Launch:
    prefix: tuple[str, ...]  # ("unshare", ...) or ()
    user: int | None  # uid/gid to run as, or None for the trainer's own


def _probe(python: str, launch: _Launch) -> bool:
    """Whether ``python`` starts and prints under ``launch`` (once per configuration and process)."""
    try:
        done = subprocess.run([*launch.prefix, python, "-I", "-c", "print('ok')"], capture_output=True,
                              timeout=30, stdin=subprocess.DEVNULL, **_user_kwargs(launch.user))
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"ok"


def _user_kwargs(user: int | None) -> dict:
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


@functools.lru_cache(maxsize=8)
def _launch_for(python: str, drop_privileges: bool) -> _Launch:
    """The strongest launch configuration that works here: network namespace and/or ``nobody``."""
    unshare = shutil.which("unshare")
    prefixes = [(unshare, "--net", "--map-root-user"), ()] if unshare else [()]
    users = [NOBODY, None] if drop_privileges and hasattr(os, "geteuid") and os.geteuid() == 0 else [None]
    for user in users:
        for prefix in prefixes:
            launch = _Launch(tuple(prefix), user)
            if _probe(python, launch):
                if users[0] is not None and user is None:
                    log_once(logger, "root", "sandbox: the trainer runs as root but %s cannot be run as nobody; "
                             "sandboxed programs run as root", python)
                if not prefix:
                    log_once(logger, "netns", "sandbox: no network namespace here (unshare unavailable or "
                             "refused); network is blocked at the Python socket level only")
                return launch
    return _Launch((), None)


def sandbox_features(python: str | None = None, drop_privileges: bool = True) -> dict:
    """Which optional isolation layers :func:`run_python` uses on this machine.

    Returns:
        ``{"network_namespace": bool, "user": uid or None}`` (None: the trainer's own user).
    """
    launch = _launch_for(python or sys.executable, drop_privileges)
    return {"network_namespace": bool(launch.prefix), "user": launch.user}


def _remove_tree(root: str) -> None:
    """Delete the run's directory even if the program made parts of it unreadable (chmod 000)."""
    for path, dirs, _ in os.walk(root):
        for name in dirs:
            try:
                os.chmod(os.path.join(path, name), 0o700, follow_symlinks=False)
            except (OSError, NotImplementedError):
                pass
    shutil.rmtree(root, ignore_errors=True)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone
        pass


def _exchange(process: subprocess.Popen, data: bytes, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin and read stdout/stderr until the program ends, the deadline passes or output exceeds ``cap``."""
    selector = selectors.DefaultSelector()
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    for fd in buffers:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    stdin_fd, sent = process.stdin.fileno(), 0
    if data:
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        process.stdin.close()
    timed_out = capped = False
    drain_until = None
    try:
        while selector.get_map() and not capped:
            now = time.monotonic()
            if now >= deadline:
                timed_out = process.poll() is None
                break
            if process.poll() is not None:  # ended: take what is buffered, don't wait on its background children
                drain_until = drain_until or now + 0.2
                if now >= drain_until:
                    break
            for key, _ in selector.select(min(deadline - now, 0.05)):
                if key.fd == stdin_fd:
                    try:
                        sent += os.write(stdin_fd, data[sent:sent + 65536])
                    except BlockingIOError:
                        continue
                    except OSError:  # BrokenPipeError: the program stopped reading
                        sent = len(data)
                    if sent >= len(data):
                        selector.unregister(stdin_fd)
                        process.stdin.close()
                    continue
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                room = cap - len(buffer)
                buffer += chunk[:room]
                if len(chunk) > room:
                    capped = True
                    break
    finally:
        selector.close()
    return bytes(buffers[process.stdout.fileno()]), bytes(buffers[process.stderr.fileno()]), timed_out, capped


def run_python(code: str, stdin: str = "", *, timeout_seconds: float = 2.0, memory_mb: int = 512,
               cpu_seconds: int | None = None, max_output_bytes: int = 65536, max_file_mb: int = 16,
               python: str | None = None, drop_privileges: bool = True) -> RunResult:
    """Run a Python program in the sandbox (see the module docstring for what is and is not enforced).

    Args:
        code: the program's source.
        stdin: text fed to its standard input.
        timeout_seconds: wall-clock limit, seconds (the process group is killed after it).
        memory_mb: address-space limit (``RLIMIT_AS``), MiB.
        cpu_seconds: CPU-time limit; default ``ceil(timeout_seconds) + 1``.
        max_output_bytes: most bytes kept from stdout and from stderr; more kills the program.
        max_file_mb: largest file the program may write (``RLIMIT_FSIZE``), MiB.
        python: interpreter path (default: this one, so the same packages are importable).
        drop_privileges: when running as root, run the program as ``nobody`` if that works here.

    Returns:
        A :class:`RunResult`.

    Raises:
        OSError: the interpreter could not be started at all (missing, no processes left).

    >>> result = run_python("print(sum(map(int, input().split())))", stdin="2 3")
    >>> result.ok, result.stdout
    (True, '5\\n')
    >>> run_python("while True: pass", timeout_seconds=0.5).timed_out
    True
    """
    python = python or sys.executable
    launch = _launch_for(python, bool(drop_privileges))
    cpu = cpu_seconds if cpu_seconds is not None else math.ceil(timeout_seconds) + 1
    root = tempfile.mkdtemp(prefix="grpo-sandbox-")
    try:
        work, program = os.path.join(root, "work"), os.path.join(root, "program.py")
        os.mkdir(work)
        with open(program, "w", encoding="utf-8", errors="replace") as file:
            file.write(code)
        if launch.user is not None:
            for path in (root, work, program):
                os.chown(path, launch.user, launch.user)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": work,
               "TMPDIR": work, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [*launch.prefix, python, "-I", "-c", _PRELUDE, program, str(int(memory_mb) << 20), str(int(cpu)),
                str(int(max_file_mb) << 20)]
        start = time.monotonic()
        process = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True, **_user_kwargs(launch.user))
        try:
            out, err, timed_out, capped = _exchange(process, stdin.encode("utf-8", errors="replace"),
                                                    start + timeout_seconds, max_output_bytes)
        finally:
            _kill_group(process)  # also its background children, whatever happened
            process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                pipe.close()
        return RunResult(out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace"),
                         process.returncode, timed_out, capped, time.monotonic() - start)
    finally:
        _remove_tree(root)
