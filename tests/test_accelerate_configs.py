"""Every shipped accelerate config, read by accelerate 1.15's own code, and what its child processes see.

Run: pytest -q tests/test_accelerate_configs.py      (seconds; no process is launched)

Each config is loaded with ``load_config_from_file`` (the class `accelerate launch` uses) and turned
into the environment `accelerate launch` would give its children (its own ``_validate_launch_command``
and ``prepare_*_env``). From that environment we build accelerate's FSDP / DeepSpeed plugins and
run :func:`grpo.training.launch.check_launch` as a child would on a machine without CUDA: the GPU configs must
stop there with one clear line, the CPU config must pass. tests/test_accelerate_launch.py (slow)
launches them for real.
"""

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.training.launch import CPU_CONFIG, accelerate_mode, check_launch

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "grpo" / "configs" / "accelerate"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))

# name -> (distributed_type, mixed_precision, the child's mode as grpo.training.launch reads it)
EXPECTED = {
    "cpu_2proc": ("MULTI_CPU", "no", "MULTI_CPU"),
    "ddp": ("MULTI_GPU", "bf16", "MULTI_GPU"),
    "fsdp": ("FSDP", "bf16", "FSDP"),
    "deepspeed_zero2": ("DEEPSPEED", "bf16", "DEEPSPEED"),
    "deepspeed_zero3": ("DEEPSPEED", "bf16", "DEEPSPEED"),
}


def _load(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    return config


def child_env(path: Path, *extra: str) -> dict:
    """The variables `accelerate launch --config_file PATH [extra] train.py` adds for its children."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    args = launch_command_parser().parse_args(["--config_file", str(path), *extra, "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's launch_command does before its DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    elif args.use_fsdp or args.multi_gpu:
        env = prepare_multi_gpu_env(args)
        # torch's elastic launcher adds the ranks itself
        env.update(WORLD_SIZE=str(args.num_processes), LOCAL_RANK="0", RANK="0")
    else:
        cmd, env = prepare_simple_launcher_cmd_env(args)
        assert cmd[:2] == ["mpirun", "-f"] or cmd[:2] == ["mpirun", "--hostfile"], cmd
        env["PMI_SIZE"] = str(args.num_processes)  # what mpirun gives each child
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables from the test runner's own environment."""
    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "FSDP_", "PMI_", "OMPI_", "MV2_")) or key in {
                "WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"}:
            monkeypatch.delenv(key)
    return monkeypatch


def test_every_config_is_covered():
    assert {p.stem for p in CONFIGS} == set(EXPECTED)
    assert (ROOT / CPU_CONFIG).exists()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_accelerates_classes(path):
    config = _load(path)
    dist_type, precision, _ = EXPECTED[path.stem]
    assert config.distributed_type.value == dist_type
    assert config.mixed_precision == precision
    assert config.num_machines == 1 and config.machine_rank == 0 and config.num_processes >= 2
    assert config.use_cpu == (path.stem == "cpu_2proc")
    # the header gives the command that uses this very file, and an override
    header = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    rel = path.relative_to(ROOT).as_posix()
    assert any(f"--config_file {rel}" in line and "grpo.cli train" in line for line in header), header
    assert any(re.search(r"--num_processes|Override", line) for line in header)


def test_fsdp_config_fields():
    fsdp = _load(CONFIG_DIR / "fsdp.yaml").fsdp_config
    assert fsdp["fsdp_version"] == 2  # accelerate 1.15's default (`accelerate config` offers FSDP2 first)
    assert fsdp["fsdp_reshard_after_forward"] is True  # FSDP2's full shard
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_config_fields(name, stage):
    ds = _load(CONFIG_DIR / f"{name}.yaml").deepspeed_config
    assert ds["zero_stage"] == stage
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    assert ds["zero3_init_flag"] is (stage == 3)
    assert ds.get("zero3_save_16bit_model", False) is (stage == 3)


def test_cpu_hostfile_is_shipped_and_local():
    config = _load(CONFIG_DIR / "cpu_2proc.yaml")
    hostfile = ROOT / config.mpirun_config["mpirun_hostfile"]
    assert hostfile.read_text().split() == ["localhost"]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (pip install mpich)")
def test_cpu_config_passes_the_launch_check(clean_env):
    env = child_env(CONFIG_DIR / "cpu_2proc.yaml")
    assert env["ACCELERATE_USE_CPU"] == "True" and env["MASTER_ADDR"] == "127.0.0.1"
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert accelerate_mode() == "MULTI_CPU"
    check_launch(cuda_available=False)  # no error


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_gpu_configs_stop_clearly_without_cuda(name, clean_env):
    for key, value in child_env(CONFIG_DIR / f"{name}.yaml", "--num_processes", "2").items():
        clean_env.setenv(key, value)
    assert accelerate_mode() == EXPECTED[name][2]
    with pytest.raises(UserError) as err:
        check_launch(cuda_available=False)
    message = str(err.value)
    assert "needs CUDA GPUs" in message and CPU_CONFIG in message and "\n" not in message
    check_launch(cuda_available=True)  # the same launch on a GPU machine goes ahead


def test_torchrun_on_cpu_is_made_a_gloo_run(clean_env):
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "1")
    clean_env.setenv("TORCHELASTIC_RUN_ID", "x")
    check_launch(cuda_available=False)
    assert os.environ["ACCELERATE_USE_CPU"] == "true"  # transformers then takes MULTI_CPU + gloo, not "NO"


def test_fsdp_plugin_wraps_each_decoder_layer(clean_env):
    """The FSDP2 plugin accelerate builds from fsdp.yaml wraps exactly the decoder layers of Llama and Qwen2."""
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    for key, value in child_env(CONFIG_DIR / "fsdp.yaml", "--num_processes", "2").items():
        clean_env.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    tiny = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2)
    for config, layer in [(LlamaConfig(**tiny), "LlamaDecoderLayer"), (Qwen2Config(**tiny), "Qwen2DecoderLayer")]:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        wrapped = [type(m).__name__ for m in model.modules() if policy(m)]
        assert wrapped == [layer, layer], wrapped


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_plugin_from_config(name, stage, clean_env):
    pytest.importorskip("deepspeed", reason="deepspeed is in the gpu extra")
    from accelerate.utils import DeepSpeedPlugin

    for key, value in child_env(CONFIG_DIR / f"{name}.yaml", "--num_processes", "2").items():
        clean_env.setenv(key, value)
    plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert plugin.zero_stage == zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    # batch size, accumulation and clipping are left to the training config
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"


@pytest.mark.parametrize("name, refused", [("ddp", False), ("fsdp", True), ("deepspeed_zero2", True),
                                           ("deepspeed_zero3", True)])
def test_native_backend_refuses_sharding_configs(name, refused, clean_env):
    from grpo.training.launch import check_native_launch

    for key, value in child_env(CONFIG_DIR / f"{name}.yaml", "--num_processes", "2").items():
        clean_env.setenv(key, value)
    if not refused:
        check_native_launch()
        return
    with pytest.raises(UserError, match="--backend trl") as err:
        check_native_launch()
    assert "ddp.yaml" in str(err.value)


def test_slurm_script_builds_a_valid_multi_node_launch(tmp_path):
    """scripts/slurm_grpo.sbatch run with stand-ins for srun/scontrol/accelerate (node 1 of 2): accelerate's own
    launch parser accepts what it passes, and torch's launcher would get 2 nodes x 8 processes, rank 1, node 0's IP."""
    import subprocess

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    stand_ins = textwrap.dedent("""
        srun() { while [[ $1 == --* ]]; do shift; done; "$@"; }
        scontrol() { printf 'node-a\\nnode-b\\n'; }
        accelerate() { printf '%s\\n' "$@" > "$CAPTURE"; }
        export -f srun scontrol accelerate
    """)
    env = {**os.environ, "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2",
           "SLURM_NODEID": "1", "CAPTURE": str(tmp_path / "args")}
    subprocess.run(["bash", "-c", stand_ins + 'bash scripts/slurm_grpo.sbatch --backend native --max_steps 5'],
                   cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    argv = (tmp_path / "args").read_text().splitlines()
    assert argv[0] == "launch"
    args = launch_command_parser().parse_args(argv[1:])
    assert args.training_script == "grpo.cli" and args.module
    assert args.training_script_args == ["train", "--config", "grpo/configs/gsm8k_hub.yaml", "--output_dir",
                                         "runs/slurm-7", "--backend", "native", "--max_steps", "5"]
    assert (ROOT / args.config_file).exists() and (ROOT / args.training_script_args[2]).exists()
    args, _, _ = _validate_launch_command(args)
    prepare_multi_gpu_env(args)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert args.rdzv_endpoint == "node-a:29500"  # every node meets at the first node of the allocation
