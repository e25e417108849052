"""The local sandbox (rewards.sandbox) and the code_execution reward on hostile programs.

Each test keeps its limits at 1-2 s, so the file runs in a few seconds. What the sandbox
guarantees, and what it does not, is listed in rewards/sandbox.py and rewards/README.md.

Run: pytest tests/test_rewards_code.py -q
"""

import os
import pickle
import random
import shutil
import socket
import subprocess
import time

import pytest

import rewards
from rewards import code_execution, sandbox
from rewards.code_execution import outputs_match, read_test_cases
from rewards.sandbox import sandbox_features
from rewards.text import extract_code_block

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CASES = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4", "output": "6"}, {"input": "0 0", "output": "0"}]


# These tests check the per-run limits and the reward, which hold on every isolation layer, so they
# opt in to running unisolated where the machine has no layer at all (a root trainer without
# bubblewrap); what each layer isolates is tests/test_rewards_sandbox.py. Where a layer
# works, allow_unisolated changes nothing.
def run_python(code, stdin="", **kwargs):
    return sandbox.run_python(code, stdin, allow_unisolated=True, **kwargs)


def CodeExecution(**kwargs):
    return code_execution.CodeExecution(allow_unisolated=True, **kwargs)


def fenced(code, language="python"):
    return f"<think>\nadd them\n</think>\n<answer>\n```{language}\n{code}```\n</answer>"


# ---------------------------------------------------------------- the sandbox itself
def test_correct_program_in_another_process():
    result = run_python("import os\nprint(os.getpid())", timeout_seconds=2)
    assert result.ok and int(result.stdout) != os.getpid()


def test_timeout_kills_an_infinite_loop():
    start = time.monotonic()
    result = run_python("while True:\n    pass", timeout_seconds=1.0)
    assert result.timed_out and not result.ok and result.returncode == -9
    assert time.monotonic() - start < 4.0  # 1 s limit plus interpreter start on a loaded machine


def test_timeout_kills_a_sleeping_program_and_its_children():
    marker = _marker()
    code = f"import subprocess, time\np = subprocess.Popen(['sleep', '{marker}'])\nprint(p.pid, flush=True)\ntime.sleep(60)"
    result = run_python(code, timeout_seconds=1.0)
    assert result.timed_out and result.stdout.strip()  # the child had started
    assert _gone(marker)


def test_background_child_of_a_finished_program_is_killed():
    marker = _marker()
    code = f"import subprocess\nprint(subprocess.Popen(['sleep', '{marker}']).pid)"
    start = time.monotonic()
    result = run_python(code, timeout_seconds=10.0)
    assert result.ok and time.monotonic() - start < 5.0  # does not wait 10 s on the child's open pipes
    assert _gone(marker)


def _marker():
    """A ``sleep`` argument no other process has: 60.<random digits> seconds."""
    return f"60.{random.randrange(10 ** 8):08d}"


def _gone(marker, wait=2.0):
    """No running process on the host has ``marker`` in its command line (zombies count as gone).

    Found by command line, not pid: inside a PID namespace the program sees its own pid numbers.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _running_with(marker):
            return True
        time.sleep(0.05)
    return False


def _running_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() not in cmdline.read():
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    found.append(int(pid))
        except OSError:  # exited meanwhile
            continue
    return found


def test_crash_is_a_failed_run():
    result = run_python("raise ValueError('boom')", timeout_seconds=2)
    assert result.returncode == 1 and "ValueError: boom" in result.stderr and not result.timed_out


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_infinite_output_is_bounded(stream):
    result = run_python(f"import sys\nwhile True:\n    sys.{stream}.write('x' * 4096)", timeout_seconds=2.0,
                        max_output_bytes=10_000)
    assert result.output_capped and not result.ok and not result.timed_out  # stopped before the 2 s limit
    assert len(getattr(result, stream)) <= 10_000


def test_memory_blow_up_fails_fast():
    result = run_python("x = bytearray(4 * 1024 ** 3)", timeout_seconds=2.0, memory_mb=256)
    assert result.returncode == 1 and "MemoryError" in result.stderr and not result.timed_out


def test_limits_cannot_be_raised_back():
    code = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))"
    assert "ValueError" in run_python(code, timeout_seconds=2).stderr


def test_file_size_limit():
    result = run_python("open('big', 'wb').write(b'x' * 3 * 1024 * 1024)", timeout_seconds=2, max_file_mb=1)
    assert not result.ok


def test_huge_stdin_to_a_program_that_does_not_read_it():
    result = run_python("print('done')", stdin="x" * 5_000_000, timeout_seconds=2.0)
    assert result.ok and result.stdout == "done\n"


def test_relative_paths_stay_in_a_fresh_empty_directory(tmp_path, monkeypatch):
    """A '../secret' next to the trainer's working directory is out of reach; the work dir is deleted after."""
    (tmp_path / "secret").write_text("s3cr3t")
    (tmp_path / "trainer").mkdir()
    monkeypatch.chdir(tmp_path / "trainer")
    code = ("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n"
            "open('stray.txt', 'w').write('x')\n"
            "try:\n    print(open('../secret').read())\nexcept OSError as e:\n    print(type(e).__name__)")
    result = run_python(code, timeout_seconds=2)
    cwd, listing, secret = result.stdout.splitlines()
    assert result.ok and listing == "[]" and secret == "FileNotFoundError"
    assert not cwd.startswith(str(tmp_path)) and not os.path.exists(cwd)
    assert os.listdir(tmp_path / "trainer") == []  # the stray write did not land in the trainer's directory


def test_directory_is_deleted_even_if_the_program_locks_it():
    code = ("import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\nos.chmod('a/b', 0)\nos.chmod('a', 0)\n"
            "print(os.getcwd())")
    result = run_python(code, timeout_seconds=2)
    assert result.ok and not os.path.exists(os.path.dirname(result.stdout.strip()))


def test_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("GRPO_TEST_TOKEN", "do-not-leak")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    result = run_python("import os\nprint(sorted(os.environ))", timeout_seconds=2)
    assert "GRPO_TEST_TOKEN" not in result.stdout and "HTTPS_PROXY" not in result.stdout and "PATH" in result.stdout


def test_no_network_to_a_listening_local_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    print('connected')\n"
                "except OSError as e:\n    print('refused', e.errno)")
        result = run_python(code, timeout_seconds=2)
    assert result.stdout.split()[0] == "refused"


def test_raw_socket_bypass_is_stopped_only_by_a_network_namespace():
    """``_socket`` skips the Python-level guard; only the namespace (own loopback or none) stops it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        code = ("import _socket\ns = _socket.socket()\ns.settimeout(1)\n"
                f"print(s.connect_ex(('127.0.0.1', {server.getsockname()[1]})))")
        result = run_python(code, timeout_seconds=2)
    if not sandbox_features()["network_namespace"]:
        pytest.skip("no network namespace on this machine: raw sockets are not blocked (documented)")
    # 101 ENETUNREACH (unshare: no interface up) or 111 ECONNREFUSED (bwrap: its own empty loopback)
    assert result.stdout.strip() in ("101", "111")


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0), reason="drops privileges only as root")
def test_runs_as_nobody_when_root_and_the_interpreter_allows(tmp_path):
    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python or subprocess.run([python, "-c", "0"], user=65534, group=65534, extra_groups=[],
                                    capture_output=True).returncode != 0:
        pytest.skip("no interpreter usable by nobody here")
    target = tmp_path / "root_owned_file"
    result = run_python(f"open({str(target)!r}, 'w').write('x')", python=python, timeout_seconds=3)
    assert sandbox_features(python)["user"] == 65534
    # PermissionError as nobody; FileNotFoundError under bwrap, where the host's /tmp is not there at all
    assert ("PermissionError" in result.stderr or "FileNotFoundError" in result.stderr) and not target.exists()


# ---------------------------------------------------------------- the reward
def test_reward_correct_partial_crash_and_missing():
    fn = rewards.get("code_execution", timeout_seconds=2, allow_unisolated=True)
    completions = [fenced(ADD),                                  # all pass
                   fenced("print(5)\n"),                         # 1 of 3
                   fenced("a, b = map(int, input().split())\nprint(a // b)\n"),  # crashes on 0 0, wrong others
                   "I would add the numbers.",                   # no program
                   fenced(ADD, "javascript"),                    # not a python block
                   fenced(ADD)]                                  # row without tests
    out = fn(completions, test_cases=[CASES] * 5 + [None])
    assert out == [1.0, pytest.approx(1 / 3), 0.0, 0.0, 0.0, None]
    assert fn.__name__ == "code_reward" and pickle.loads(pickle.dumps(fn))([fenced(ADD)], test_cases=[CASES]) == [1.0]


def test_reward_timeout_and_infinite_output_cases_fail_quickly():
    fn = CodeExecution(timeout_seconds=1.0, max_output_bytes=10_000)
    code = ("a, b = map(int, input().split())\nif a == 0:\n    while True: pass\nif a == 10:\n    while True: print(1)\n"
            "print(a + b)\n")
    start = time.monotonic()
    assert fn([fenced(code)], test_cases=[CASES]) == [pytest.approx(1 / 3)]
    assert time.monotonic() - start < 5.0  # two 1 s timeouts on 2 workers, plus interpreter starts


def test_reward_accepts_open_r1_verification_info_and_json():
    fn = CodeExecution(column="verification_info", timeout_seconds=2)
    infos = [{"language": "python", "test_cases": CASES}, {"language": "cpp", "test_cases": CASES}]
    assert fn([fenced(ADD)] * 2, verification_info=infos) == [1.0, None]
    import json

    assert CodeExecution(timeout_seconds=2)([fenced(ADD)], test_cases=[json.dumps(CASES)]) == [1.0]


def test_reward_missing_column_is_a_clear_error():
    with pytest.raises(rewards.RewardError, match="needs the column 'test_cases'.*columns passed: answer"):
        CodeExecution()(["x"], answer=["1"])


@pytest.mark.parametrize("kwargs", [{"timeout_seconds": 0}, {"memory_mb": 10}, {"max_workers": 0}])
def test_reward_bad_config(kwargs):
    with pytest.raises(rewards.RewardConfigError):
        CodeExecution(**kwargs)


@pytest.mark.parametrize("value", [None, [], "not json", '{"a": 1}', [{"input": "1"}], 42, {"test_cases": None}])
def test_odd_test_case_values_are_not_applicable(value):
    assert read_test_cases(value) is None


def test_helpers():
    assert outputs_match("5\n", "5") and not outputs_match("", "5") and outputs_match("", "")
    assert extract_code_block("```Python3 extra\nx\n```") == "x\n"
    assert extract_code_block("```python\n" + "x = 1\n" * 100_000) is None  # unclosed: no program
    start = time.monotonic()
    assert extract_code_block("```python\n" * 50_001) == ""  # fences pair up in order; linear time
    assert time.monotonic() - start < 1.0


def test_empty_batch_and_odd_completions():
    fn = CodeExecution(timeout_seconds=2)
    assert fn([], test_cases=[]) == []
    assert fn([None, "", "```python\n```", [{"role": "assistant", "content": fenced(ADD)}]], test_cases=[CASES] * 4) \
        == [0.0, 0.0, 0.0, 1.0]


def _deep_list(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("row", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"test_cases": ' + "[" * 100_000,
                                 "deep list", "deep input"], ids=["unclosed", "closed", "in-dict", "list", "input"])
def test_deeply_nested_test_cases_score_none_not_raise(row):
    """One bad row is not applicable (None); the other rows of the call still score."""
    if row == "deep list":
        row = _deep_list(100_000)
    elif row == "deep input":
        row = [{"input": _deep_list(100_000), "output": "1"}]
    start = time.monotonic()
    assert read_test_cases(row) is None
    assert CodeExecution(timeout_seconds=2)([fenced(ADD)] * 2, test_cases=[row, CASES]) == [None, 1.0]
    assert time.monotonic() - start < 10.0
