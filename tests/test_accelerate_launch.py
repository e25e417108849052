"""`accelerate launch` end to end on this CPU box: two gloo processes, one checkpoint, equal weights.

Run: pytest tests/test_accelerate_launch.py -m slow      (~6 min: each run starts two Python processes)

The CPU config (grpo/configs/accelerate/cpu_2proc.yaml) makes accelerate wrap the command in mpirun
(the `mpich` wheel ships it). Each run goes through the real `grpo` CLI; a small driver script only
records, per rank, which rank scored completions and the parameters the trainer returned, so the
test can see that both processes trained and ended with the same weights while rank 0 alone wrote
the run directory. The GPU configs are launched too, to the point where they need CUDA.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "grpo" / "configs" / "accelerate"
ACCELERATE = shutil.which("accelerate")

# Wraps one function so each rank saves the parameters of the model it returns (or of its trainer).
DRIVER = textwrap.dedent("""
    import importlib, sys
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    out, module_name, attr, what, *argv = sys.argv[1:]
    module = importlib.import_module(module_name)
    original = getattr(module, attr)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        model = result if what == "result" else args[0].model
        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        torch.save({"world": world, "params": {n: p.detach().clone() for n, p in model.named_parameters()}},
                   f"{out}/params_rank{rank}.pt")
        return result

    setattr(module, attr, spy)
    from grpo.cli.commands import main
    sys.exit(main(argv))
""")

# A reward with spread (character length) that also notes which rank scored completions.
REWARD = textwrap.dedent("""
    import os
    def length_and_rank(completions, **kwargs):
        rank = os.environ.get("RANK", "?")
        with open(os.path.join(os.path.dirname(__file__), f"scored_by_rank{rank}"), "a") as f:
            f.write(f"{len(completions)}\\n")
        return [len(c if isinstance(c, str) else c[-1]["content"]) / 50.0 for c in completions]
""")

TINY_GRPO = ["--config", "grpo/configs/gsm8k.yaml", "--max_steps", "2", "--eval_size", "0", "--warm_start", "false",
             "--periodic_eval_steps", "0",
             "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "16",
             "--save_steps", "2", "--disable_tqdm", "true", "--learning_rate", "1e-3"]


# the config's reward weights and parameters are for its own reward list
OWN_REWARDS = ["--reward_weights", "1.0", "1.0", "--reward_kwargs", "{}"]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _launch(config: str, args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file CONFIG ARGS`, from the repo root (the hostfile path is relative)."""
    return subprocess.run([ACCELERATE, "launch", "--config_file", str(CONFIGS / config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=_env())


def _driven(tmp_path, module: str, attr: str, what: str, argv: list[str], launcher: str = "accelerate"):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = [str(driver), str(tmp_path), module, attr, what, *argv]
    if launcher == "torchrun":  # no accelerate: grpo.training.launch must still make it one gloo run, not two rank-0 runs
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=_env())
    return _launch("cpu_2proc.yaml", args)


def _assert_same_weights_on_both_ranks(tmp_path) -> dict:
    r0, r1 = (torch.load(tmp_path / f"params_rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["params"].keys() == r1["params"].keys()
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
    return r0["params"]


needs_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None, reason="accelerate's multi-CPU launch needs "
                                  "mpirun: pip install mpich (part of the dev extra)")


@pytest.mark.slow
@pytest.mark.parametrize("launcher, backend, module", [
    pytest.param("accelerate", "trl", "grpo.training.trl_backend", marks=needs_mpirun),
    pytest.param("accelerate", "native", "grpo.training.native", marks=needs_mpirun),
    ("torchrun", "trl", "grpo.training.trl_backend"),  # without grpo.training.launch both ranks thought they were rank 0
])
def test_grpo_train_two_cpu_processes(launcher, backend, module, tmp_path):
    (tmp_path / "reward.py").write_text(REWARD)
    out = tmp_path / "run"
    proc = _driven(tmp_path, module, "train", "result",
                   ["train", *TINY_GRPO, "--backend", backend, "--output_dir", str(out),
                    "--reward_funcs", f"correctness,{tmp_path / 'reward.py'}:length_and_rank", *OWN_REWARDS], launcher)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # both processes generated and scored their own completions
    for rank in (0, 1):
        assert (tmp_path / f"scored_by_rank{rank}").read_text().split() == ["2", "2"]
    params = _assert_same_weights_on_both_ranks(tmp_path)
    assert any(v.abs().sum() > 0 for n, v in params.items() if "lora_B" in n), "LoRA weights did not move"
    # rank 0 alone wrote the run directory: one final checkpoint, one metrics line per step
    assert (out / "checkpoint" / "model.safetensors").exists() and (out / "checkpoint" / "adapter").is_dir()
    assert sorted(p.name for p in out.glob("checkpoint*")) == ["checkpoint", "checkpoint-2"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_warm_start_two_cpu_processes_one_writer(tmp_path):
    """The SFT warm-start under two processes: rank 0 alone merges and writes sft_checkpoint, rank 1
    loads it, and GRPO then trains the same weights on both."""
    (tmp_path / "reward.py").write_text(REWARD)
    out = tmp_path / "run"
    argv = [a for a in TINY_GRPO]
    argv[argv.index("--warm_start") + 1] = "true"
    proc = _driven(tmp_path, "grpo.training.trl_backend", "train", "result",
                   ["train", *argv, "--sft_examples", "4", "--sft_batch_size", "2", "--output_dir", str(out),
                    "--reward_funcs", f"correctness,{tmp_path / 'reward.py'}:length_and_rank", *OWN_REWARDS], "torchrun")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "sft_checkpoint" / "model.safetensors").exists()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name], "a writer left a temporary directory behind"
    _assert_same_weights_on_both_ranks(tmp_path)


@pytest.mark.slow
@needs_mpirun
def test_recipe_two_cpu_processes(tmp_path):
    out = tmp_path / "ner"
    proc = _driven(tmp_path, "recipes._common", "finish", "trainer",
                   ["recipe", "token_classification", "--config", "recipes/configs/token_classification.yaml",
                    "--output_dir", str(out), "--max_steps", "2", "--max_train_samples", "32",
                    "--max_eval_samples", "16", "--per_device_train_batch_size", "4", "--warmup_steps", "0"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    _assert_same_weights_on_both_ranks(tmp_path)
    assert (out / "model.safetensors").exists() and (out / "metrics.json").exists()
    assert not list(out.parent.glob("ner.tmp*")) and not list(out.parent.glob(".ner*"))


@pytest.mark.slow
def test_ddp_config_on_cpu_stops_with_a_clear_error(tmp_path):
    proc = _launch("ddp.yaml", ["--num_processes", "2", "-m", "grpo.cli", "train", *TINY_GRPO,
                                "--output_dir", str(tmp_path / "run")], timeout=300)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert proc.returncode != 0
    first = proc.stderr.lstrip().splitlines()[0]
    assert first.startswith("error: accelerate launch started this run with a multi-GPU (DDP) config"), proc.stderr
    assert "cpu_2proc.yaml" in first and "needs CUDA" in first
    # no stack trace from our code: the only traceback is the launcher's own report that a child failed
    assert f'File "{ROOT / "grpo"}' not in proc.stderr and "ChildFailedError" in proc.stderr
    assert not (tmp_path / "run").exists()
