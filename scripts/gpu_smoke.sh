#!/usr/bin/env bash
# GPU smoke test: every GPU path that one GPU can check, each step a 2-step run on the embedded
# SmolLM2-135M (offline), printing PASS/FAIL and its time; meant to take under 10 minutes in all
# (an estimate: this script has never run on a GPU).
#
#   bash scripts/gpu_smoke.sh                          # one CUDA GPU, after `make install TORCH_SPEC=torch EXTRAS=dev,gpu LOCK=`
#   bash scripts/gpu_smoke.sh native_gpu qlora_trl     # only these steps
#   bash scripts/gpu_smoke.sh --dry-run                # anywhere, no GPU: print the commands, check the configs parse
#   SMOKE_MODEL=Qwen/Qwen2.5-0.5B-Instruct bash scripts/gpu_smoke.sh    # another model (the hub)
#
# Steps:
#   versions           torch sees CUDA; package versions; TRL's own vLLM support check (0.22.0-0.31.0) passes
#   vllm_engine        colocated vLLM engine vs the built-in sampler (tests/test_vllm_engine.py, its GPU test)
#   native_gpu         native backend on the GPU without vLLM (checked: the trained model is on CUDA)
#   native_vllm_sleep  native backend + colocated vLLM with sleep mode
#   trl_vllm           TRL backend + colocated vLLM
#   qlora_trl          QLoRA (4-bit NF4, paged 8-bit AdamW) on the TRL backend
#   zero3_1proc        DeepSpeed ZeRO-3 (zero3_init_flag) in one process, with the warm start: an eval before
#                      training skips the partitioned weights, the warm start and the end-of-run merge build full copies
#   fsdp2_1proc        FSDP2 in one process
# What needs two GPUs is printed at the end (server-mode weight sync, ZeRO-3 end of run, native DDP).
# Environment: SMOKE_MODEL, SMOKE_OUT (run dirs and logs; default a new /tmp dir), SMOKE_STEP_TIMEOUT
# (seconds per step, default 300), PYTHON (default python).
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
MODEL=${SMOKE_MODEL:-embedded:smollm2-135m-instruct}
STEP_TIMEOUT=${SMOKE_STEP_TIMEOUT:-300}
ALL_STEPS=(versions vllm_engine native_gpu native_vllm_sleep trl_vllm qlora_trl zero3_1proc fsdp2_1proc)
ACCELERATE=("$PYTHON" -m accelerate.commands.launch)

dry_run=0
steps=()
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) if [[ " ${ALL_STEPS[*]} " == *" $arg "* ]]; then steps+=("$arg")
           else echo "unknown step '$arg'; steps: ${ALL_STEPS[*]}" >&2; exit 2; fi ;;
    esac
done
[ ${#steps[@]} -eq 0 ] && steps=("${ALL_STEPS[@]}")
if [ $dry_run = 1 ]; then
    OUT=${SMOKE_OUT:-${TMPDIR:-/tmp}/gpu_smoke}  # only named in the printed commands
    ARGV_DIR=$(mktemp -d) && trap 'rm -rf "$ARGV_DIR"' EXIT
else
    OUT=${SMOKE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")}
    mkdir -p "$OUT/logs"
fi

# Every GRPO step: the offline GSM8K config, shrunk to 2 optimizer steps of 4 completions x 32 tokens, bf16.
COMMON=(--config grpo/configs/gsm8k.yaml --model_name_or_path "$MODEL" --dataset_name synthetic:gsm8k --train_limit 32
        --periodic_eval_steps 0
        --eval_size 8 --eval_max_new_tokens 32 --eval_batch_size 8 --max_steps 2 --num_generations 4
        --per_device_train_batch_size 4 --gradient_accumulation_steps 1 --max_completion_length 32
        --logging_steps 1 --save_strategy no --report_to none --disable_tqdm true --bf16 true)
VLLM=(--use_vllm true --vllm_mode colocate --vllm_gpu_memory_utilization 0.3 --vllm_max_model_length 512)

# `grpo train` in this process, then: did anything run on the GPU, and did the native backend train its model there?
ON_GPU_PY='
import sys, torch
import grpo.training.native
from grpo.cli.commands import main

devices, train = [], grpo.training.native.train

def recording_train(*args, **kwargs):
    model = train(*args, **kwargs)
    devices.append(next(model.parameters()).device)
    return model

grpo.training.native.train = recording_train  # the pipeline imports it when the run starts
code = main(sys.argv[1:])
peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
print(f"gpu_smoke: peak CUDA memory allocated by this process: {peak / 2**20:.0f} MiB; native backend trained on: {devices}")
if code == 0 and (peak == 0 or any(d.type != "cuda" for d in devices)):
    print("gpu_smoke: the run finished, but not on the GPU", file=sys.stderr)
    code = 3
sys.exit(code)
'
VERSIONS_PY='
import importlib, importlib.metadata as md, warnings, torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
for name in ("transformers", "trl", "accelerate", "peft", "vllm", "deepspeed", "bitsandbytes"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "NOT INSTALLED")
from trl.import_utils import is_vllm_available
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ok = is_vllm_available()
unsupported = [str(w.message) for w in caught if "vLLM" in str(w.message)]
assert torch.cuda.is_available(), "torch sees no CUDA device"
assert ok, "TRL cannot find vllm"
assert not unsupported, unsupported[0]
for name in ("vllm", "deepspeed", "bitsandbytes"):
    importlib.import_module(name)
print("TRL vLLM support check: ok")
'

# The grpo train arguments of a step (ARGS), and its command (CMD).
set_step() {
    ARGS=("${COMMON[@]}" --output_dir "$OUT/$1")
    case $1 in
        native_gpu)        ARGS+=(--backend native --use_vllm false --warm_start false) ;;
        native_vllm_sleep) ARGS+=(--backend native "${VLLM[@]}" --vllm_enable_sleep_mode true --warm_start false) ;;
        trl_vllm)          ARGS+=(--backend trl "${VLLM[@]}" --warm_start false) ;;
        qlora_trl)         ARGS+=(--backend trl --use_vllm false --warm_start false --load_in_4bit true
                                  --use_bnb_nested_quant true --optim paged_adamw_8bit) ;;
        zero3_1proc)       ARGS+=(--backend trl --use_vllm false --warm_start true --sft_examples 8 --sft_batch_size 4) ;;
        fsdp2_1proc)       ARGS+=(--backend trl --use_vllm false --warm_start false) ;;
        *)                 ARGS=() ;;
    esac
    case $1 in
        versions)    CMD=("$PYTHON" -c "$VERSIONS_PY") ;;
        vllm_engine) CMD=("$PYTHON" -m pytest -q -p no:cacheprovider -m slow
                          tests/test_vllm_engine.py::test_vllm_greedy_matches_sampler_on_gpu) ;;
        zero3_1proc) CMD=("${ACCELERATE[@]}" --config_file grpo/configs/accelerate/deepspeed_zero3.yaml
                          --num_processes 1 -m grpo.cli train "${ARGS[@]}") ;;
        fsdp2_1proc) CMD=("${ACCELERATE[@]}" --config_file grpo/configs/accelerate/fsdp.yaml
                          --num_processes 1 -m grpo.cli train "${ARGS[@]}") ;;
        *)           CMD=("$PYTHON" -c "$ON_GPU_PY" train "${ARGS[@]}") ;;
    esac
}

# What a finished step must have left behind, beyond exit code 0.
check_step() {
    local name=$1 log=$2 dir="$OUT/$1"
    case $name in
        versions) return 0 ;;
        vllm_engine) grep -q "1 passed" "$log" || { echo "the GPU test did not run (skipped?)"; return 1; } ;;
        *) [ "$(wc -l < "$dir/metrics.jsonl" 2>/dev/null || echo 0)" -ge 2 ] || { echo "no 2 lines in metrics.jsonl"; return 1; }
           [ -d "$dir/checkpoint" ] || { echo "no checkpoint/"; return 1; }
           [ -s "$dir/eval_after.json" ] || { echo "no eval_after.json"; return 1; } ;;
    esac
    if [ "$name" = zero3_1proc ]; then  # the warm start's merged copy, reloaded outside zero.Init
        [ -d "$dir/sft_checkpoint" ] || { echo "ZeRO-3: no sft_checkpoint/"; return 1; }
        grep -q "skipping this evaluation" "$log" && echo "(the eval before training was skipped on partitioned weights)"
    fi
    return 0
}

two_gpu_commands() {
    local base; base=$(printf '%q ' "${COMMON[@]}")
    cat <<EOF

Needs two GPUs (not covered above; run by hand and look for a finished run directory):
  server-mode weight sync (GPU 0 serves, GPU 1 trains and pushes its weights over NCCL):
    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model \$($PYTHON -c 'from grpo.modeling.models import resolve_model_path as r; print(r("$MODEL"))') &
    CUDA_VISIBLE_DEVICES=1 $PYTHON -m grpo.cli train $base--output_dir $OUT/server_native --warm_start false --backend native --use_vllm true --vllm_mode server
    CUDA_VISIBLE_DEVICES=1 $PYTHON -m grpo.cli train $base--output_dir $OUT/server_trl --warm_start false --backend trl --use_vllm true --vllm_mode server
  ZeRO-3 end of run (the main process alone builds the merged copy; the others have returned) and the warm-start reload:
    ${ACCELERATE[*]} --config_file grpo/configs/accelerate/deepspeed_zero3.yaml --num_processes 2 -m grpo.cli train $base--output_dir $OUT/zero3_2proc --backend trl --use_vllm false --warm_start true --sft_examples 8 --sft_batch_size 4
  native DDP (NCCL collectives on each process's GPU; evaluation on rank 0 only):
    ${ACCELERATE[*]} --config_file grpo/configs/accelerate/ddp.yaml --num_processes 2 -m grpo.cli train $base--output_dir $OUT/ddp_native --backend native --use_vllm false --warm_start false
    $PYTHON -m torch.distributed.run --nproc_per_node 2 -m grpo.cli train $base--output_dir $OUT/torchrun_native --backend native --use_vllm false --warm_start false
EOF
}

# ---------------------------------------------------------------------------- --dry-run: commands, configs parse
if [ $dry_run = 1 ]; then
    for name in "${steps[@]}"; do
        set_step "$name"
        echo "== $name"
        case ${CMD[2]:-} in  # the inline Python shown by what it does
            "$ON_GPU_PY") printf '%q ' "$PYTHON" -m grpo.cli "${CMD[@]:3}"; printf '\n  (and this process must have allocated CUDA memory)' ;;
            "$VERSIONS_PY") printf '%s' "$PYTHON -c <print versions; assert CUDA; TRL's vLLM support check; import vllm, deepspeed, bitsandbytes>" ;;
            *) printf '%q ' "${CMD[@]}" ;;
        esac
        echo
        [ ${#ARGS[@]} -gt 0 ] && printf '%s\0' "${ARGS[@]}" > "$ARGV_DIR/$name"
    done
    two_gpu_commands
    echo
    echo "== parsing every step's configuration (grpo's parser; accelerate's for its config files)"
    "$PYTHON" - "$ARGV_DIR" <<'EOF' || exit 1
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch
from accelerate.commands.config.config_args import load_config_from_file
from trl import GRPOConfig

from grpo.config.parser import check_sampling, parse_config

from grpo.config.script_args import ScriptArgs

failed = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    argv = path.read_bytes().decode().split("\0")[:-1]
    if not torch.cuda.is_available():
        argv += ["--use_cpu", "true"]  # bf16 without a GPU parses only as CPU autocast; nothing else changes
    try:
        script_args, training_args = parse_config(argv, (ScriptArgs, GRPOConfig))
        check_sampling(training_args)
        print(f"  {path.name}: ok (backend {script_args.backend}, use_vllm {training_args.use_vllm})")
    except Exception as err:  # report every step, not only the first that fails
        failed += 1
        print(f"  {path.name}: FAIL {type(err).__name__}: {err}")
for name, kind in (("deepspeed_zero3.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP"), ("ddp.yaml", "MULTI_GPU")):
    config = load_config_from_file(f"grpo/configs/accelerate/{name}")
    ok = str(config.distributed_type).endswith(kind) and (
        kind != "DEEPSPEED" or (config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_init_flag"]))
    failed += not ok
    print(f"  grpo/configs/accelerate/{name}: {'ok' if ok else 'FAIL'} ({config.distributed_type})")
sys.exit(1 if failed else 0)
EOF
    echo "dry run: ok (${#steps[@]} steps; nothing was run)"
    exit 0
fi

# ---------------------------------------------------------------------------- the steps
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}  # one GPU
echo "gpu_smoke: model $MODEL, run directories and logs in $OUT"
results=()
failures=0
for name in "${steps[@]}"; do
    set_step "$name"
    log="$OUT/logs/$name.log"
    printf '%-18s ... ' "$name"
    start=$(date +%s.%N)
    timeout --kill-after=15 "$STEP_TIMEOUT" "${CMD[@]}" > "$log" 2>&1
    code=$?
    reason=""
    if [ $code = 124 ]; then reason="timed out after ${STEP_TIMEOUT}s"
    elif [ $code != 0 ]; then reason="exit code $code"
    else reason=$(check_step "$name" "$log") || code=1
    fi
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ $code = 0 ]; then verdict=PASS; else verdict=FAIL; failures=$((failures + 1)); fi
    echo "$verdict  ${secs}s${reason:+  $reason}"
    [ $code != 0 ] && { echo "    log: $log"; tail -n 15 "$log" | sed 's/^/    | /'; }
    results+=("$(printf '%-18s %s %8ss' "$name" "$verdict" "$secs")")
done
echo
printf '%s\n' "${results[@]}"
two_gpu_commands
echo
echo "gpu_smoke: $((${#steps[@]} - failures)) passed, $failures failed"
[ $failures = 0 ]
