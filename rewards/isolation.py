"""The isolation layers the sandbox can put around a model-written program, strongest first.

:mod:`rewards.sandbox` probes these candidates once per interpreter and uses the first that
starts a program here (:func:`candidates`). Each is a :class:`Launch`: a command prefix, the user
the program ends up as, and which kernel namespaces it gets.

* ``bwrap`` -- bubblewrap (https://github.com/containers/bubblewrap, the Debian/Ubuntu/Fedora
  package ``bubblewrap``, used by Flatpak): new PID, network, IPC, UTS and mount namespaces
  (``--die-with-parent``, so the program dies with the trainer), and a filesystem of its own:
  read-only ``/usr``, ``/etc`` and the interpreter's prefixes, a fresh ``/proc``, ``/dev`` and
  ``/tmp``, the run's directory the only writable place; ``/home``, ``/root``, ``/work``,
  ``/run``, ``/var`` and the host's ``/tmp`` are simply not there. A root trainer runs bwrap
  itself (no user namespace needed) and the program drops to uid/gid 65534 before its first
  line; anyone else runs it unprivileged, with a user namespace.
* ``unshare`` -- util-linux ``unshare``: user, network, PID and mount namespaces with a fresh
  ``/proc``; the filesystem is the host's (as the program's user sees it). A root trainer runs
  it as uid 65534.
* ``user`` -- no namespace; a root trainer runs the program as uid 65534 (``subprocess``'s ``user=``).
* ``none`` -- only the process limits. Not isolation: :func:`rewards.sandbox.run_python` refuses
  it unless the caller opts in (``allow_unisolated=True``); so are ``unshare --net`` alone and a
  root trainer's program running as root inside a namespace (which keeps root's file access).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile

NOBODY = 65534
# Read-only system directories the program sees under bwrap (a symlink such as /bin -> usr/bin
# on a merged-/usr system is recreated as a symlink).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclasses.dataclass(frozen=True)
class Launch:
    """One way to start the sandboxed interpreter.

    Attributes:
        layer: ``"bwrap"``, ``"unshare"``, ``"user"`` or ``"none"``.
        prefix: the command before the interpreter; ``{root}`` and ``{work}`` are replaced by the
            run's directory and its working directory.
        popen_user: uid (= gid) that ``subprocess`` switches to before running ``prefix``, or None.
        drop_to: uid (= gid) the prelude switches to inside the sandbox, or -1 (bwrap as root).
        program_user: the program's uid on the host (None: the trainer's own).
        pid_namespace, network_namespace, filesystem_hidden: what the layer isolates.
    """

    layer: str
    prefix: tuple[str, ...] = ()
    popen_user: int | None = None
    drop_to: int = -1
    program_user: int | None = None
    pid_namespace: bool = False
    network_namespace: bool = False
    filesystem_hidden: bool = False

    @property
    def isolated(self) -> bool:
        """Meets the fail-closed bar: a user other than root, or (for a non-root trainer) PID + mount namespaces."""
        if _is_root():
            return self.program_user is not None and self.program_user != 0
        return self.pid_namespace

    def argv(self, root: str, work: str) -> list[str]:
        return [part.format(root=root, work=work) for part in self.prefix]


def _which(tool: str) -> str | None:
    """The tool's path on ``PATH``, or None (tests replace this to take a tool away)."""
    return shutil.which(tool)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def interpreter_paths(python: str) -> list[str]:
    """The directories ``python`` needs to start and import its packages (prefixes, real binary dir)."""
    code = ("import json, os, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
            "sys.base_exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]))")
    try:
        done = subprocess.run([python, "-I", "-c", code], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        paths = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        paths = []
    link = os.path.abspath(python)  # the path we exec (a venv's bin/python symlink) must resolve inside
    paths += [os.path.dirname(link), os.path.dirname(os.path.realpath(link))]
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if p} | {p for p in paths if p}, key=len):
        if path == "/" or any(path == k or path.startswith(k.rstrip("/") + "/") for k in (*_SYSTEM_DIRS, *kept)):
            continue
        kept.append(path)
    return kept


def bwrap_prefix(bwrap: str, python: str, as_root: bool) -> tuple[str, ...]:
    """bubblewrap's command line: namespaces, the read-only view, a fresh /proc, /dev, /tmp, the run dir."""
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        args.append("--unshare-user")
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # before binds under /tmp
    made: set[str] = {"/tmp"}

    def parents_of(path: str) -> None:
        # bwrap would create missing parents (/root, /root/.venvs) mode 0700; the program, maybe
        # uid 65534 by then, must traverse them to reach its standard library and its directory.
        missing = []
        parent = os.path.dirname(path)
        while parent not in ("/", "") and parent not in made:
            missing.append(parent)
            parent = os.path.dirname(parent)
        for parent in reversed(missing):
            args.extend(["--perms", "0755", "--dir", parent])
            made.add(parent)

    for path in interpreter_paths(python):
        parents_of(path)
        args += ["--ro-bind", path, path]
    parents_of(os.path.join(tempfile.gettempdir(), "run"))  # where the run's directory is bound
    args += ["--bind", "{root}", "{root}", "--chdir", "{work}", "--"]
    return tuple(args)


def candidates(python: str, drop_privileges: bool = True) -> list[Launch]:
    """Every launch worth probing here, strongest first; the isolated ones come before the rest."""
    root = _is_root()
    drop = root and drop_privileges
    bwrap, unshare = _which("bwrap"), _which("unshare")
    found: list[Launch] = []
    if bwrap and (drop or not root):
        found.append(Launch("bwrap", bwrap_prefix(bwrap, python, root), drop_to=NOBODY if root else -1,
                            program_user=NOBODY if root else None, pid_namespace=True, network_namespace=True,
                            filesystem_hidden=True))
    user = NOBODY if drop else None
    if unshare:
        found.append(Launch("unshare", (unshare, "--user", "--map-root-user", "--net", "--pid", "--fork",
                                        "--kill-child", "--mount-proc"),
                            popen_user=user, program_user=user, pid_namespace=True, network_namespace=True))
    if drop:
        found.append(Launch("user", popen_user=NOBODY, program_user=NOBODY))
    # Not isolation (refused unless the caller opts in): today's network namespace, then nothing.
    if unshare:
        found.append(Launch("unshare", (unshare, "--net", "--map-root-user"), network_namespace=True))
    found.append(Launch("none"))
    return found


def missing(python: str, drop_privileges: bool = True) -> str:
    """What this machine lacks for isolation, and how to get it (one line, for the refusal error)."""
    if _is_root() and not drop_privileges:
        need = "drop_privileges=False keeps programs running as root"
    elif _is_root():
        need = (f"the trainer runs as root and no layer could run {python} as uid {NOBODY}: "
                "bubblewrap is missing or refused, and nobody cannot read the interpreter")
    else:
        need = "neither bubblewrap nor unshare could create PID and mount namespaces (user namespaces refused?)"
    other = "pass python=<an interpreter every user can run, e.g. /usr/bin/python3>, or " if _is_root() else ""
    return (f"{need}; install bubblewrap (apt-get install bubblewrap / dnf install bubblewrap), or {other}accept "
            "running unisolated with allow_unisolated=True (grpo: --reward_kwargs "
            "'{\"code_execution\": {\"allow_unisolated\": true}}')")
