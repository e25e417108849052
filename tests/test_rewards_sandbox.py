"""What the sandbox isolates (rewards/sandbox.py, rewards/isolation.py), probed as a hostile program would.

Each promise is asserted on the layer this machine gives (``sandbox_features()``); a test that
needs a layer the machine lacks (bubblewrap, a PID namespace) is skipped and says so. The
fail-closed tests run everywhere: they take the isolation tools away (``isolation._which``
returns None) and check that the program is refused, never run as root.

Run: pytest tests/test_rewards_sandbox.py -q
"""

import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import venv

import pytest

import rewards
from rewards import isolation
from rewards.code_execution import CodeExecution
from rewards.sandbox import SandboxUnavailable, _launch_for, run_python, sandbox_features

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
FEATURES = sandbox_features()
needs_isolation = pytest.mark.skipif(not FEATURES["isolated"], reason=f"no isolation layer here: {FEATURES['missing']}")
needs_pid_namespace = pytest.mark.skipif(not FEATURES["pid_namespace"],
                                         reason=f"no PID namespace here (layer {FEATURES['layer']})")
needs_bwrap = pytest.mark.skipif(FEATURES["layer"] != "bwrap",
                                 reason=f"bubblewrap is not installed or refused here (layer {FEATURES['layer']}); "
                                        "apt-get install bubblewrap")


@pytest.fixture
def no_tools(monkeypatch):
    """This machine without bubblewrap and unshare; the probe cache cleared before and after."""
    monkeypatch.setattr(isolation, "_which", lambda tool: None)
    _launch_for.cache_clear()
    yield
    _launch_for.cache_clear()


@pytest.fixture(scope="module")
def venv_in_private_home(tmp_path_factory):
    """A virtualenv under a 0700 home, as `python -m venv ~/.venvs/x` makes for root."""
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home / "venv")
    return str(home / "venv" / "bin" / "python")


# ---------------------------------------------------------------- fail closed
def test_without_any_isolation_a_program_is_refused_with_the_fix(no_tools):
    """drop_privileges=False: a root trainer may not fall back on running the program as nobody either."""
    features = sandbox_features(drop_privileges=False)
    assert not features["isolated"] and features["layer"] == "none"
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap.*allow_unisolated=True") as caught:
        run_python("open('/tmp/should-not-run', 'w')", drop_privileges=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(rewards.RewardConfigError, match="refusing to run"):
        CodeExecution(timeout_seconds=2)(["```python\nprint(1)\n```"], test_cases=[[{"input": "", "output": "1"}]])


def test_opting_in_runs_unisolated_and_says_so(no_tools, caplog):
    caplog.set_level(logging.WARNING, logger="rewards.sandbox")
    result = run_python("print(6 * 7)", drop_privileges=False, allow_unisolated=True, timeout_seconds=5)
    assert result.ok and result.stdout == "42\n"
    fn = rewards.get("code_execution", allow_unisolated=True, timeout_seconds=5)
    assert fn(["```python\nprint(input())\n```"], test_cases=[[{"input": "7", "output": "7"}]]) == [1.0]


@pytest.mark.skipif(not ROOT, reason="the trainer-as-root case needs root")
def test_root_trainer_with_a_venv_under_a_0700_home_never_runs_programs_as_root(venv_in_private_home):
    """The issue's setup: refused, or isolated as another user -- the program never runs as root."""
    _launch_for.cache_clear()
    probe = ("import os\nprint(os.getuid())\n"
             "try:\n    open('/etc/shadow').read()\n    print('read shadow')\nexcept OSError as e:\n    print(type(e).__name__)")
    try:
        result = run_python(probe, python=venv_in_private_home, timeout_seconds=5)
    except SandboxUnavailable as err:
        assert "bubblewrap" in str(err)
        return
    features = sandbox_features(venv_in_private_home)
    assert features["isolated"] and features["user"] == isolation.NOBODY
    assert result.ok and "read shadow" not in result.stdout, result


@needs_bwrap
@pytest.mark.skipif(not ROOT, reason="the trainer-as-root case needs root")
def test_bwrap_runs_a_venv_under_a_0700_home_as_nobody(venv_in_private_home, tmp_path):
    _launch_for.cache_clear()
    target = tmp_path / "written_by_program"
    result = run_python(f"import os, json\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
                        f"open({str(target)!r}, 'w').write('x')", python=venv_in_private_home, timeout_seconds=5)
    assert sandbox_features(venv_in_private_home)["layer"] == "bwrap"
    assert result.stdout.split("\n")[0] == "65534 65534 []" and not target.exists()


# ---------------------------------------------------------------- processes
def _sleepers(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                            found.append(pid)
        except OSError:
            continue
    return found


@needs_pid_namespace
@pytest.mark.parametrize("how", ["Popen(start_new_session=True)", "fork + os.setsid()", "fork + os.setpgid(0, 0)"])
@pytest.mark.parametrize("ends", ["exits", "times out"])
def test_a_child_that_leaves_the_process_group_dies_with_the_sandbox(how, ends):
    marker = f"60.{random.randrange(10 ** 8):08d}"
    spawn = {"Popen(start_new_session=True)": f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)",
             "fork + os.setsid()": f"os.fork() or (os.setsid(), os.execvp('sleep', ['sleep', '{marker}']))",
             "fork + os.setpgid(0, 0)": f"os.fork() or (os.setpgid(0, 0), os.execvp('sleep', ['sleep', '{marker}']))"}
    code = f"import os, subprocess, time\n{spawn[how]}\ntime.sleep(0.3)\nprint('spawned', flush=True)\n"
    if ends == "times out":
        code += "time.sleep(60)\n"
    result = run_python(code, timeout_seconds=2.0)
    assert "spawned" in result.stdout and result.timed_out == (ends == "times out")
    deadline = time.monotonic() + 2.0
    while _sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleepers(marker) == []


@needs_isolation
def test_the_trainer_cannot_be_signalled_or_read(monkeypatch):
    """The trainer's pid: not there (PID namespace) or not ours (another user); its environment unreadable."""
    monkeypatch.setenv("GRPO_TEST_SECRET", "tok-do-not-leak")
    trainer = os.getpid()
    code = (f"import os\nfor pid in ({trainer}, os.getppid()):\n"
            "    try:\n        os.kill(pid, 0)\n        print('signal', pid, 'ok')\n"
            "    except OSError as e:\n        print('signal', pid, type(e).__name__)\n"
            "    try:\n        print('environ', pid, open(f'/proc/{pid}/environ', 'rb').read())\n"
            "    except OSError as e:\n        print('environ', pid, type(e).__name__)\n")
    result = run_python(code, timeout_seconds=5)
    assert result.ok, result.stderr
    assert "tok-do-not-leak" not in result.stdout
    if trainer > 10:  # inside a PID namespace a small number may be one of the sandbox's own processes
        assert f"signal {trainer} ok" not in result.stdout and f"environ {trainer} b" not in result.stdout


# ---------------------------------------------------------------- files and sockets
@pytest.fixture
def host_socket(tmp_path):
    """A listening AF_UNIX socket in the host's /tmp that any user may connect to."""
    tmp_path.chmod(0o755)
    path = str(tmp_path / "service.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(1)
    server.settimeout(0.1)
    yield path, server
    server.close()


def _accepted(server) -> bool:
    try:
        server.accept()[0].close()
        return True
    except OSError:
        return False


@needs_isolation
def test_af_unix_is_the_sandboxs_error_not_a_name_error(host_socket):
    """socket.socket(AF_UNIX) works (multiprocessing needs it); connecting out of the run's directory is refused."""
    path, server = host_socket
    code = ("import socket\ns = socket.socket(socket.AF_UNIX)\nprint('made')\n"
            f"try:\n    s.connect({path!r})\n    print('connected')\nexcept OSError as e:\n    print(e)\n"
            "a, b = socket.socketpair()\na.sendall(b'hi')\nprint(b.recv(2).decode())\n"
            "from multiprocessing.connection import Listener, Client\n"
            "with Listener(family='AF_UNIX') as listener:\n    print('listener ok')\n")
    result = run_python(code, timeout_seconds=5)
    assert "NameError" not in result.stderr and result.ok, result.stderr
    made, refused, pair, listener = result.stdout.splitlines()
    assert made == "made" and "disabled in the grpo sandbox" in refused and pair == "hi" and listener == "listener ok"
    assert not _accepted(server)


@needs_bwrap
def test_a_path_socket_in_the_hosts_tmp_is_unreachable_even_bypassing_python(host_socket):
    path, server = host_socket
    code = (f"import _socket\ns = _socket.socket(_socket.AF_UNIX)\n"
            f"try:\n    s.connect({path!r})\n    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)")
    result = run_python(code, timeout_seconds=5)
    assert result.stdout.strip() == "FileNotFoundError" and not _accepted(server)


@needs_bwrap
def test_the_filesystem_is_read_only_and_the_trainers_files_are_not_there(tmp_path):
    """Only system directories and the interpreter are visible, read-only; the checkout, home and /tmp are not."""
    tmp_path.chmod(0o777)
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    home = os.path.expanduser("~")
    # the home only holds the way to the interpreter when that lives there (pyenv), never its other files
    probes = {"checkout": os.path.join(checkout, "rewards", "sandbox.py"), "host tmp": str(tmp_path), "run": "/run",
              "home cache": os.path.join(home, ".cache"), "home bashrc": os.path.join(home, ".bashrc")}
    code = (f"import os, sys\nfor name, path in {probes!r}.items():\n    print(name + '|' + str(os.path.exists(path)))\n"
            "for path in ('/usr/owned', '/etc/owned', sys.prefix + '/owned', '/tmp/owned', 'owned'):\n"
            "    try:\n        open(path, 'w').write('x')\n        print(path + '|written')\n"
            "    except OSError as e:\n        print(path + '|' + type(e).__name__)\n")
    result = run_python(code, timeout_seconds=5)
    lines = dict(line.split("|", 1) for line in result.stdout.splitlines())
    assert all(lines[name] == "False" for name in probes), result.stdout
    for path in ("/usr/owned", "/etc/owned", sys.prefix + "/owned"):
        assert lines[path] in ("OSError", "PermissionError"), lines  # EROFS, or EACCES as nobody
        assert not os.path.exists(path)
    assert lines["owned"] == "written" and lines["/tmp/owned"] == "written"  # its own directory, its own /tmp
    assert os.listdir(tmp_path) == []


@needs_bwrap
def test_features_name_the_layer():
    assert FEATURES == {**FEATURES, "layer": "bwrap", "isolated": True, "pid_namespace": True,
                        "network_namespace": True, "filesystem_hidden": True, "missing": ""}
    assert FEATURES["user"] == (isolation.NOBODY if ROOT else None)


@pytest.mark.skipif(not ROOT, reason="switching to a non-root trainer needs root")
def test_a_non_root_trainer_gets_bwrap_with_a_user_namespace():
    """The same package run by a trainer that is uid 65534, with the system interpreter."""
    python = "/usr/bin/python3"
    if not os.path.exists(python) or not isolation._which("bwrap"):
        pytest.skip("needs /usr/bin/python3 and bubblewrap")
    copy = tempfile.mkdtemp()  # pytest's tmp_path sits in a 0700 directory that uid 65534 cannot enter
    try:
        shutil.copytree(os.path.dirname(rewards.__file__), os.path.join(copy, "rewards"))
        subprocess.run(["chmod", "-R", "a+rX", copy], check=True)
        script = ("from rewards.sandbox import run_python, sandbox_features\n"
                  "print(sandbox_features()['layer'])\n"
                  "print(run_python('import os; print(os.getuid(), sum(p.isdigit() for p in os.listdir(\"/proc\")) < 10)', "
                  "timeout_seconds=5).stdout)")
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": copy}, user=65534, group=65534,
                              extra_groups=[])
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    if "bwrap" not in done.stdout:
        pytest.skip(f"unprivileged bubblewrap is refused here (user namespaces?): {done.stdout} {done.stderr[-300:]}")
    assert done.stdout.split() == ["bwrap", "65534", "True"], done.stderr
