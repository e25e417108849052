"""Probe the code-execution sandbox's promises on this machine, as a hostile program would; one line each.

    python scripts/probe_sandbox.py                         # the interpreter running this script
    python scripts/probe_sandbox.py --python /usr/bin/python3
    python scripts/probe_sandbox.py --without bwrap         # as if bubblewrap were not installed

Prints ``sandbox_features()`` and, per promise, ``held`` or ``BROKEN`` with what the program saw;
a program the sandbox refuses to run (no isolation layer) counts as held. Run it as the trainer's
user (root included) to see what a training run would get. It writes one file per probe into
the current directory, ``~`` and ``/tmp`` when a promise is broken, and deletes it again.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", help="interpreter for the programs (default: this one)")
    parser.add_argument("--without", action="append", default=[], choices=["bwrap", "unshare"],
                        help="probe as if this tool were missing (repeatable)")
    args = parser.parse_args()
    real_which = shutil.which
    shutil.which = lambda name, *a, **k: None if name in args.without else real_which(name, *a, **k)

    from rewards.code_execution import CodeExecution
    from rewards.correctness import _math_verify, answers_match
    from rewards.sandbox import SandboxUnavailable, run_python, sandbox_features

    print("features:", sandbox_features(args.python))
    os.environ["GRPO_PROBE_TOKEN"] = "tok-probe-secret"
    rows: list[tuple[str, bool, str]] = []

    def run(code: str):
        try:
            return run_python(code, timeout_seconds=5, python=args.python)
        except SandboxUnavailable:
            return None

    def seen(result) -> str:
        if result is None:
            return "refused"
        lines = (result.stdout.strip() or result.stderr.strip()).splitlines()
        return lines[-1][:60] if lines else f"exit status {result.returncode}"

    # the program's uid on the host: its own uid mapped through its user namespace's uid_map
    r = run("import os\nuid = os.getuid()\nfor line in open('/proc/self/uid_map'):\n"
            "    inside, outside, count = map(int, line.split())\n"
            "    if inside <= uid < inside + count:\n        print('host uid', outside + uid - inside)")
    rows.append(("program never runs as root", r is None or r.stdout.strip() != "host uid 0", seen(r)))
    r = run("print(len(open('/etc/shadow').read()))")
    rows.append(("/etc/shadow unreadable", r is None or not r.ok, seen(r)))
    for name, folder in (("the current directory", os.getcwd()), ("the home", os.path.expanduser("~")),
                         ("the host's /tmp", "/tmp")):
        path = os.path.join(folder, f"grpo-probe-{random.randrange(10 ** 8)}")
        r = run(f"open({path!r}, 'w').write('x')")
        rows.append((f"no write into {name}", not os.path.exists(path), seen(r)))
        if os.path.exists(path):
            os.remove(path)
    marker = f"61.{random.randrange(10 ** 8):08d}"
    r = run(f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{marker}'])\n"
            "time.sleep(0.3)\nprint('spawned')")
    time.sleep(1.0)
    alive = [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]
    rows.append(("a setsid escapee dies with the run", not alive, f"{len(alive)} still running"))
    for pid in alive:
        os.kill(pid, 9)
    me = os.getpid()
    r = run(f"import os\ntry:\n    os.kill({me}, 0)\n    print('signalled')\nexcept OSError as e:\n    print(type(e).__name__)")
    rows.append(("the trainer cannot be signalled", r is None or "signalled" not in r.stdout, seen(r)))
    r = run(f"import os\nfor pid in (os.getppid(), {me}):\n    try:\n        print(open(f'/proc/{{pid}}/environ', 'rb').read())\n"
            "    except OSError as e:\n        print(type(e).__name__)")
    rows.append(("/proc/$PPID and /proc/<trainer> environ do not leak",
                 r is None or "tok-probe-secret" not in r.stdout, "" if r is None else "checked"))
    folder = tempfile.mkdtemp(dir="/tmp")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "service.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen(1)
        r = run(f"import _socket\ns = _socket.socket(_socket.AF_UNIX)\ntry:\n    s.connect({path!r})\n"
                "    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)")
    shutil.rmtree(folder, ignore_errors=True)
    rows.append(("a path socket in the host's /tmp is unreachable (raw _socket)",
                 r is None or "connected" not in r.stdout, seen(r)))
    r = run("import socket\nsocket.socket(socket.AF_UNIX)\nprint('made')")
    rows.append(("socket.socket(AF_UNIX) is not a NameError", r is None or "NameError" not in r.stderr, seen(r)))
    try:
        scores = CodeExecution(timeout_seconds=2, python=args.python, allow_unisolated=True)(
            ["```python\nprint(1)\n```"], test_cases=["[" * 100_000])
        rows.append(("a nested-JSON test-case row scores", True, str(scores)))
    except RecursionError:
        rows.append(("a nested-JSON test-case row scores", False, "RecursionError"))
    _math_verify()
    answer, out = "(" * 45 + "5" + ")" * 45, {}

    def compare():
        start = time.monotonic()
        out["verdict"] = answers_match(answer, "5", 0.5)
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=compare)
    thread.start()
    thread.join()
    rows.append(("45 nested parentheses, other thread: within 0.5 s (+0.5)", out["seconds"] < 1.0,
                 f"{out['seconds']:.2f} s, verdict {out['verdict']}"))
    start = time.monotonic()
    verdict = answers_match("(" * 20 + "5" + ")" * 20, "5", 0.5)
    seconds = time.monotonic() - start
    rows.append(("20 nested parentheses, main thread: within 0.5 s (+0.2)", seconds < 0.7,
                 f"{seconds:.2f} s, verdict {verdict}"))
    for name, held, detail in rows:
        print(f"{'held  ' if held else 'BROKEN'}  {name}  ({detail})")
    return 0 if all(held for _, held, _ in rows) else 1


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return marker.encode() in cmdline.read()
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
