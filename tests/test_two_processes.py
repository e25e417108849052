"""Two real CPU processes (gloo) through the `grpo train` CLI: both backends, every stage that runs around GRPO.

Run: pytest -q tests/test_two_processes.py     (~3 min on 2 cores: three launches of a tiny random Llama)

Each run goes through `grpo train` on a 2-layer random Llama with SmolLM2's tokenizer (tests/tiny_llama.py),
with LoRA, the warm-start SFT, the base evaluation on the main process (which used to move rank 0's RNG
before the adapter was made) and the periodic evaluation with ``logging_steps`` not dividing
``periodic_eval_steps`` (which used to leave rank 0 alone in an all-reduce: a hang, caught by the timeout).
A driver script records, per rank, the trainable weights when training starts and the weights it ends with.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_llama import tiny_llama_dir

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 420  # seconds per launch; a rank waiting alone in a collective would otherwise hang until gloo's 30 min

# Records each rank's trainable weights at the start of training (`start`) and the weights it returns (`end`).
DRIVER = textwrap.dedent("""
    import importlib, os, sys
    import torch
    torch.set_num_threads(1)
    out, module_name, start_hook, *argv = sys.argv[1:]
    module = importlib.import_module(module_name)
    rank = lambda: int(os.environ.get("RANK", "0"))

    def trainable(model):
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def save(tag, model):
        torch.save(trainable(model), f"{out}/{tag}_rank{rank()}.pt")

    train = module.train
    def spy_train(model, *args, **kwargs):
        if start_hook == "entry":
            save("start", model)
        result = train(model, *args, **kwargs)
        save("end", result)
        return result
    module.train = spy_train

    if start_hook == "optimizer":  # native: the weights the optimizer starts from (after any synchronisation)
        loop = importlib.import_module(module_name + ".loop")
        make_optimizer = loop.make_optimizer
        def spy_optimizer(groups, args, model):
            save("start", model)
            return make_optimizer(groups, args, model)
        loop.make_optimizer = spy_optimizer

    from grpo.cli.commands import main
    sys.exit(main(argv))
""")

SPREAD_REWARD = textwrap.dedent('''
    import zlib

    def checksum_reward(completions, **kwargs):
        """A reward in [0, 1) that differs between completion texts, so every group has spread."""
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny") / "llama")


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _argv(tiny, tmp_path, out, backend, per_device, *extra):
    (tmp_path / "reward.py").write_text(SPREAD_REWARD)
    return ["train", "--model_name_or_path", str(tiny), "--dataset_name", "gsm8k", "--backend", backend,
            "--output_dir", str(out), "--reward_funcs", f"{tmp_path / 'reward.py'}:checksum_reward",
            "--reward_weights", "1.0", "--reward_kwargs", "{}",
            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0",
            "--num_generations", "2", "--per_device_train_batch_size", str(per_device),
            "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--max_steps", "2",
            "--learning_rate", "0.01", "--loss_type", "dapo", "--bf16", "false", "--use_cpu", "true",
            "--report_to", "none", "--disable_tqdm", "true", "--save_steps", "0", "--seed", "11",
            "--eval_base", "true", "--eval_size", "2", "--eval_max_new_tokens", "8", "--eval_batch_size", "2",
            "--periodic_eval_steps", "1", "--periodic_eval_size", "4", "--logging_steps", "2", *extra]


def _run(launcher: list[str], tmp_path, module: str, start_hook: str, argv: list[str]):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run([*launcher, str(driver), str(tmp_path), module, start_hook, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ONE_PROCESS = [sys.executable]


def _weights(tmp_path, tag, rank):
    return torch.load(tmp_path / f"{tag}_rank{rank}.pt")


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _assert_logged(out: Path, steps: int):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evaluated] == list(range(steps + 1))  # before training, then every step
    assert all(r["eval/n"] == 4 for r in evaluated)  # every problem answered once, across the processes
    assert max(r["step"] for r in rows if "reward" in r) == steps


WARM_START = ["--warm_start", "true", "--sft_examples", "4", "--sft_batch_size", "2", "--sft_micro_batch_size", "1",
              "--sft_learning_rate", "0.01"]


def _checkpoint(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_native_two_processes_equal_one_process_with_the_same_global_batch(tiny, tmp_path):
    """torchrun, 2 processes x 1 prompt per step, against 1 process x 2 prompts, both with the warm start and the
    evaluations: the same SFT model, the same LoRA init on every rank, the same completions (the sampler's per-row
    streams), the same advantages, gradients averaged: the same LoRA weights after 2 steps."""
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    _run(TORCHRUN, two, "grpo.training.native", "optimizer", _argv(tiny, two, two / "run", "native", 2, *WARM_START))
    _run(ONE_PROCESS, one, "grpo.training.native", "optimizer", _argv(tiny, one, one / "run", "native", 4, *WARM_START))
    sft_two, sft_one, base = (_checkpoint(p) for p in (two / "run" / "sft_checkpoint", one / "run" / "sft_checkpoint", tiny))
    assert _max_difference(sft_two, base) > 0, "the warm start changed nothing: the comparison would prove little"
    assert _max_difference(sft_two, sft_one) < 1e-6
    for tag in ("start", "end"):
        assert _max_difference(_weights(two, tag, 0), _weights(two, tag, 1)) == 0.0, tag  # the ranks agree
    assert _max_difference(_weights(two, "start", 0), _weights(one, "start", 0)) < 1e-6
    moved = _max_difference(_weights(one, "start", 0), _weights(one, "end", 0))
    gap = _max_difference(_weights(two, "end", 0), _weights(one, "end", 0))
    print(f"\nLoRA weights moved by up to {moved:.3g}; two processes vs one: max |difference| {gap:.3g}")
    assert moved > 1e-3 and gap < 1e-5
    completions = [[json.loads(line)["completion"] for line in (d / "run" / "samples.jsonl").read_text().splitlines()]
                   for d in (two, one)]
    # rank 0 records its own share: each of its completions was drawn by the one-process run too
    assert completions[0] and set(completions[0]) <= set(completions[1]) and len(completions[1]) == 2 * len(completions[0])
    assert (two / "run" / "eval_before.json").exists() and (two / "run" / "eval_after_sft.json").exists()
    _assert_logged(two / "run", 2)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="accelerate's multi-CPU launch needs mpirun: pip install "
                    "mpich (part of the dev extra)")
def test_trl_backend_under_accelerate_launch_two_processes(tiny, tmp_path):
    out = tmp_path / "run"
    config = ROOT / "grpo" / "configs" / "accelerate" / "cpu_2proc.yaml"
    _run([shutil.which("accelerate"), "launch", "--config_file", str(config)], tmp_path, "grpo.training.trl_backend",
         "entry", _argv(tiny, tmp_path, out, "trl", 2, *WARM_START))
    for tag in ("start", "end"):
        assert _max_difference(_weights(tmp_path, tag, 0), _weights(tmp_path, tag, 1)) == 0.0, tag
    assert _max_difference(_weights(tmp_path, "start", 0), _weights(tmp_path, "end", 0)) > 0
    _assert_logged(out, 2)
