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
* a wall-clock limit: on expiry the whole process group (``start_new_session``) gets SIGKILL,
  and with a PID namespace every process in it dies, ``setsid`` escapees included;
* resource limits the child sets on itself before the program's first line (a prelude run with
  ``-c``; not ``preexec_fn``, which the ``subprocess`` docs call unsafe in a threaded parent):
  ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_CORE`` = 0;
  soft = hard, so the program cannot raise them back;
* at most ``max_output_bytes`` read from stdout and from stderr: past that the process group is
  killed, so infinite output costs neither time nor memory;
* a stripped environment: ``PATH``, ``LANG``, ``HOME``/``TMPDIR`` = the work directory, and
  thread counts of 1 for BLAS/OpenMP; nothing of the trainer's (tokens, proxies) is passed;
* no network: the prelude makes ``socket`` refuse internet sockets, name lookups and AF_UNIX
  connections outside the run's directory (Python-level only: ``_socket`` or ``ctypes`` get
  round it), and every isolating layer adds a network namespace (kernel-level);
* an isolation layer, the strongest that works here (:mod:`rewards.isolation`, reported by
  :func:`sandbox_features`): ``bwrap`` (bubblewrap: PID, network, IPC and mount namespaces, a
  read-only view of the system and the interpreter only, uid 65534 for a root trainer),
  ``unshare`` (user, network, PID and mount namespaces; the host's files), ``user`` (a root
  trainer's program runs as uid 65534, no namespaces).

**It fails closed**: where no layer isolates the program (a root trainer whose program would
run as root, or a non-root trainer without PID and mount namespaces), :func:`run_python`
raises :class:`SandboxUnavailable`, naming what is missing, unless the caller passes
``allow_unisolated=True``.

What it does not do: limit the number of processes (a fork bomb is cut at the timeout, with
its whole PID namespace where there is one, but may fill the process table first), cap total
disk use (only each file's size), or, below ``bwrap``, hide the filesystem (under ``unshare``
and ``user`` a program reads what its user may read by absolute path, and under ``unshare``
as a non-root trainer it writes where the trainer may). The per-layer table is in
``rewards/README.md``.
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

from rewards import isolation
from rewards.errors import RewardConfigError, log_once
from rewards.isolation import Launch, candidates

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "SandboxUnavailable", "run_python", "sandbox_features"]

# Runs in the child before the program: limits, the drop to ``nobody`` (bwrap as root), the
# socket guard, then the program as __main__. Everything lives in a function so the program's
# namespace stays clean and nothing the guard needs can be deleted from under it.
_PRELUDE = r"""
def _grpo_sandbox(argv):
    import os, resource, socket
    memory, cpu, fsize, drop_to = map(int, argv[2:6])
    for kind, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu),
                        (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(kind)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (value, value))
    if drop_to >= 0:
        os.setgroups([])
        os.setgid(drop_to)
        os.setuid(drop_to)
        if os.getuid() != drop_to or os.geteuid() != drop_to:
            raise SystemExit("grpo sandbox: could not drop privileges")
    inet, unix = (-1, socket.AF_INET, socket.AF_INET6), getattr(socket, "AF_UNIX", None)
    own = os.path.dirname(os.getcwd()) + os.sep

    def refuse(*args, **kwargs):
        raise OSError(101, "network access is disabled in the grpo sandbox")

    def check(sock, address):
        if sock.family == unix:
            path = os.fsdecode(address) if isinstance(address, (str, bytes)) else ""
            if not path or path[0] == "\0" or not os.path.realpath(path).startswith(own):
                raise OSError(13, "sockets outside the program's directory are disabled in the grpo sandbox")

    class Socket(socket.socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family in inet:
                refuse()
            super().__init__(family, type, proto, fileno)

        def connect(self, address):
            check(self, address)
            return super().connect(address)

        def connect_ex(self, address):
            check(self, address)
            return super().connect_ex(address)

        def sendto(self, data, *rest):
            check(self, rest[-1])
            return super().sendto(data, *rest)

    socket.socket = socket.SocketType = Socket
    socket.getaddrinfo = socket.gethostbyname = socket.gethostbyname_ex = socket.create_connection = refuse
    return argv[1]


import sys
sys.argv = [_grpo_sandbox(sys.argv)]
del _grpo_sandbox
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class SandboxUnavailable(RewardConfigError):
    """No isolation layer works here and the caller did not opt in (``allow_unisolated=True``)."""


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


def _user_kwargs(user: int | None) -> dict:
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


@functools.lru_cache(maxsize=8)
def _launch_for(python: str, drop_privileges: bool) -> Launch:
    """The strongest layer that runs a program here (probed once per interpreter and process)."""
    for launch in candidates(python, drop_privileges):
        try:
            result = _run(launch, python, "print('ok')", "", timeout_seconds=30, memory_mb=1024, cpu=30,
                          max_output_bytes=1024, max_file_mb=1)
        except OSError:
            continue
        if result.ok and result.stdout.strip() == "ok":
            logger.info("sandbox: %s layer for %s (program uid %s)", launch.layer, python,
                        "trainer's" if launch.program_user is None else launch.program_user)
            return launch
        logger.debug("sandbox: the %s layer does not work here: %s", launch.layer, result.stderr[-300:])
    return Launch("none")


def sandbox_features(python: str | None = None, drop_privileges: bool = True) -> dict:
    """Which isolation layer :func:`run_python` uses on this machine, and what it isolates.

    Returns:
        ``{"layer": "bwrap" | "unshare" | "user" | "none", "isolated": bool, "user": uid or None,
        "pid_namespace": bool, "network_namespace": bool, "filesystem_hidden": bool, "missing": str}``:
        ``user`` is the program's uid on the host (None: the trainer's own); ``isolated`` False
        means :func:`run_python` refuses to run programs unless ``allow_unisolated=True``;
        ``missing`` says what to install then ("" when isolated).
    """
    python = python or sys.executable
    launch = _launch_for(python, bool(drop_privileges))
    return {"layer": launch.layer, "isolated": launch.isolated, "user": launch.program_user,
            "pid_namespace": launch.pid_namespace, "network_namespace": launch.network_namespace,
            "filesystem_hidden": launch.filesystem_hidden,
            "missing": "" if launch.isolated else isolation.missing(python, bool(drop_privileges))}


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
               python: str | None = None, drop_privileges: bool = True, allow_unisolated: bool = False) -> RunResult:
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
        drop_privileges: when running as root, run the program as ``nobody`` (False keeps root,
            which then needs ``allow_unisolated``).
        allow_unisolated: run even where no isolation layer works (:func:`sandbox_features`
            ``isolated`` False): the program then runs as the trainer's user, root included,
            with only the process limits. Off by default.

    Returns:
        A :class:`RunResult`.

    Raises:
        SandboxUnavailable: no isolation layer works here and ``allow_unisolated`` is False; the
            message says what is missing and how to get it.
        OSError: the interpreter could not be started at all (missing, no processes left).

    Examples (not run as doctests: where no layer isolates, they raise :class:`SandboxUnavailable`;
    ``tests/test_rewards_code.py`` runs them):

    >>> result = run_python("print(sum(map(int, input().split())))", stdin="2 3")  # doctest: +SKIP
    >>> result.ok, result.stdout  # doctest: +SKIP
    (True, '5\\n')
    >>> run_python("while True: pass", timeout_seconds=0.5).timed_out  # doctest: +SKIP
    True
    """
    python = python or sys.executable
    launch = _launch_for(python, bool(drop_privileges))
    if not launch.isolated:
        if not allow_unisolated:
            raise SandboxUnavailable("sandbox: refusing to run a model-written program without isolation: "
                                     + isolation.missing(python, bool(drop_privileges)))
        log_once(logger, "unisolated", "sandbox: running programs WITHOUT isolation (allow_unisolated=True): "
                 "layer %s, as %s", launch.layer, "root" if isolation._is_root() else "the trainer's user")
    cpu = cpu_seconds if cpu_seconds is not None else math.ceil(timeout_seconds) + 1
    return _run(launch, python, code, stdin, timeout_seconds=timeout_seconds, memory_mb=memory_mb, cpu=cpu,
                max_output_bytes=max_output_bytes, max_file_mb=max_file_mb)


def _run(launch: Launch, python: str, code: str, stdin: str, *, timeout_seconds: float, memory_mb: int, cpu: int,
         max_output_bytes: int, max_file_mb: int) -> RunResult:
    """One run under ``launch``: a fresh directory, the prelude, the limits, the output cap, the group kill."""
    root = tempfile.mkdtemp(prefix="grpo-sandbox-")
    try:
        work, program = os.path.join(root, "work"), os.path.join(root, "program.py")
        os.mkdir(work)
        with open(program, "w", encoding="utf-8", errors="replace") as file:
            file.write(code)
        owner = launch.popen_user if launch.popen_user is not None else launch.drop_to
        if owner >= 0:
            for path in (root, work, program):
                os.chown(path, owner, owner)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": work,
               "TMPDIR": work, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [*launch.argv(root, work), python, "-I", "-c", _PRELUDE, program, str(int(memory_mb) << 20),
                str(int(cpu)), str(int(max_file_mb) << 20), str(launch.drop_to)]
        start = time.monotonic()
        process = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True, **_user_kwargs(launch.popen_user))
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
