"""The script's own config (``ScriptArgs``) next to ``trl.GRPOConfig``, parsed together by ``trl.TrlParser``.

``grpo train --config grpo/configs/gsm8k.yaml --learning_rate 1e-5`` reads the YAML into both
dataclasses (GRPOConfig fields and ours share one flat namespace) and applies ``--key value``
overrides. Unknown keys -- a typo in the YAML or on the command line -- are an error that names
the key and the closest known one.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from grpo.errors import UserError

GSM8K_REWARDS = ["xml_count", "soft_format", "strict_format", "integer_answer", "correctness"]


@dataclass
class ScriptArgs:
    """What to train on and how; the optimisation itself is configured by ``trl.GRPOConfig``."""

    # Model
    model: str = field(default="embedded:smollm2-135m-instruct", metadata={
        "help": "Model spec: hub id, local checkpoint dir, or embedded:smollm2-135m-instruct (offline)."})
    use_lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter (peft) instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "Modules that get adapters: 'all-linear' or a comma-separated list (q_proj,v_proj)."})
    # Quantization (bitsandbytes; names as trl.ModelConfig, see grpo/quantization.py)
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: load the base weights in 4-bit (needs use_lora)."})
    load_in_8bit: bool = field(default=False, metadata={"help": "Load the base weights in 8-bit, LLM.int8() (needs use_lora)."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "4-bit data type: 'nf4' (QLoRA) or 'fp4'."})
    use_bnb_nested_quant: bool = field(default=False, metadata={
        "help": "4-bit: double quantization (the quantization constants are quantized too, ~0.4 bit/param saved)."})
    bnb_4bit_compute_dtype: str = field(default="bfloat16", metadata={
        "help": "4-bit: dtype of the matmuls on dequantized weights: bfloat16, float16 or float32."})
    # Data
    dataset: str = field(default="gsm8k", metadata={
        "help": "Dataset spec: gsm8k (real GSM8K shipped with the package, offline; split train or test from "
                "dataset_split), synthetic:gsm8k[:N] (generated, offline), a GSM8K-format .jsonl file, or "
                "openai/gsm8k (hub)."})
    dataset_split: str = field(default="train", metadata={"help": "Split of a hub/synthetic dataset to train on."})
    train_limit: int | None = field(default=None, metadata={"help": "Use at most this many training rows (None = all)."})
    eval_dataset: str | None = field(default=None, metadata={
        "help": "Dataset spec for before/after evaluation, read at its 'test' split (gsm8k: the first eval_size "
                "of the 1,319 real test problems); None holds out eval_size rows of the training data."})
    eval_size: int = field(default=64, metadata={"help": "Problems evaluated before and after training (0 = skip)."})
    prompt_format: str = field(default="tags", metadata={
        "help": "'tags': the course's system prompt asking for <reasoning>/<answer> (accuracy reads <answer>); "
                "'hash': verl's GSM8K prompt, the question + \"Let's think step by step and output the final "
                "answer after '####'.\" as the only message (accuracy reads the number after ####); "
                "'summary': one user turn asking for a one-sentence summary of the question text (the length-reward "
                "exercise, grpo/configs/length.yaml)."})
    eval_base: bool = field(default=True, metadata={
        "help": "Evaluate the base model before any training; false starts the table at the warm-start model "
                "(saves one evaluation when the base model's score is already known)."})
    eval_max_new_tokens: int = field(default=320, metadata={
        "help": "Generation budget per evaluated problem, tokens (320 fits 99.9%% of real GSM8K solutions, formatted)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Problems generated together during evaluation."})
    # Rewards
    reward_funcs: list[str] = field(default_factory=lambda: list(GSM8K_REWARDS), metadata={
        "help": "Reward specs: registry names (see `grpo rewards list`), file.py:function or package.module:function."})
    reward_kwargs: dict | str | None = field(default=None, metadata={
        "help": "Parameters per reward spec, e.g. {length: {ideal: 50, unit: words}} (YAML) or a JSON string."})
    # Training
    backend: str = field(default="auto", metadata={
        "help": "'native' (grpo.native: our loop with the fast CPU sampler), 'trl' (trl.GRPOTrainer), or 'auto': "
                "native without a CUDA GPU, trl with one (see README, 'Which backend')."})
    warm_start: bool = field(default=False, metadata={
        "help": "Run a supervised warm-start (SFT on solutions in the target format) before GRPO."})
    sft_examples: int = field(default=128, metadata={"help": "Warm-start: training rows rewritten into the target format."})
    sft_epochs: float = field(default=1.0, metadata={"help": "Warm-start: epochs over sft_examples."})
    sft_learning_rate: float = field(default=2e-4, metadata={"help": "Warm-start: learning rate (LoRA)."})
    sft_batch_size: int = field(default=8, metadata={"help": "Warm-start: examples per optimizer step."})
    sft_micro_batch_size: int = field(default=2, metadata={
        "help": "Warm-start: examples per forward; sft_batch_size is reached by gradient accumulation. Memory: "
                "the logits over a 49k vocabulary (and TRL's entropy / token-accuracy copies of them) take "
                "~0.5 GB per 512-token example."})
    dynamic_sampling: bool = field(default=False, metadata={
        "help": "Native backend: replace zero-spread groups with fresh prompts (DAPO dynamic sampling)."})
    dynamic_sampling_max_retries: int = field(default=3, metadata={
        "help": "Native backend: most extra generation rounds per step to fill the batch with informative groups."})
    sampler_importance_sampling_correction: bool = field(default=False, metadata={
        "help": "Native backend, bf16 rollouts without vLLM: weight the loss by TRL's importance-sampling correction "
                "(vllm_importance_sampling_mode / _clip_min / _clip_max) for the bf16 copy's log-probs, as use_vllm "
                "does for vLLM's. The log-prob gap is logged either way (sampling/sampling_logp_difference/*)."})
    # Sharing
    push_merged: bool = field(default=True, metadata={
        "help": "With push_to_hub: also push the merged model to <hub_model_id>-merged (the adapter goes to hub_model_id)."})

    def __post_init__(self):
        if self.backend not in {"trl", "native", "auto"}:
            raise UserError(f"backend={self.backend!r}: use 'native', 'trl' or 'auto'")
        if self.backend == "auto":
            import torch

            self.backend = "trl" if torch.cuda.is_available() else "native"
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        # `--reward_funcs a,b` and `--reward_funcs a b` both work
        self.reward_funcs = [s.strip() for item in self.reward_funcs for s in str(item).split(",") if s.strip()]
        if isinstance(self.reward_kwargs, str):
            try:
                self.reward_kwargs = json.loads(self.reward_kwargs)
            except json.JSONDecodeError as err:
                raise UserError(f"reward_kwargs is not valid JSON: {err.msg}") from None
        if self.reward_kwargs is not None and not all(isinstance(v, dict) for v in (self.reward_kwargs or {}).values()):
            raise UserError("reward_kwargs must map each reward spec to a mapping of parameters")
        if not self.reward_funcs:
            raise UserError("reward_funcs is empty: name at least one reward (see `grpo rewards list`)")
        if self.sft_micro_batch_size <= 0 or self.sft_batch_size % self.sft_micro_batch_size:
            raise UserError(f"sft_batch_size={self.sft_batch_size} must be a positive multiple of "
                            f"sft_micro_batch_size={self.sft_micro_batch_size}")
        for name, value in (("lora_r", self.lora_r), ("eval_batch_size", self.eval_batch_size),
                            ("eval_max_new_tokens", self.eval_max_new_tokens)):
            if value <= 0:
                raise UserError(f"{name}={value}: must be a positive integer")
        if self.prompt_format not in {"tags", "hash", "summary"}:
            raise UserError(f"prompt_format={self.prompt_format!r}: use 'tags', 'hash' or 'summary'")
        if self.prompt_format == "summary" and self.warm_start:
            raise UserError("warm_start writes <reasoning>/<answer> targets; with prompt_format 'summary' set warm_start false")
        if self.prompt_format == "hash" and self.warm_start:
            raise UserError("warm_start writes <reasoning>/<answer> targets; with prompt_format 'hash' set warm_start false")
        if self.eval_size < 0:
            raise UserError(f"eval_size={self.eval_size}: must be >= 0")
        from grpo.quantization import validate_fields

        validate_fields(self)


def check_sampling(training_args) -> None:
    """Refuse sampling settings GRPO cannot train with, at parse time rather than at the first generation.

    GRPO learns from the spread of rewards within a group of sampled completions, so it needs a
    positive temperature and at least two completions per prompt (greedy decoding is what
    ``grpo eval`` does).

    Raises:
        UserError: naming the field, its value and the valid range.
    """
    a = training_args
    checks = [
        ("temperature", a.temperature, a.temperature is not None and a.temperature > 0,
         "must be > 0: GRPO samples its completions (greedy decoding is what `grpo eval` does); try 1.0"),
        ("top_p", a.top_p, a.top_p is not None and 0 < a.top_p <= 1, "must be in (0, 1]; 1.0 keeps every token"),
        ("top_k", a.top_k, a.top_k is None or a.top_k >= 0, "must be >= 0; 0 keeps every token"),
        ("max_completion_length", a.max_completion_length,
         a.max_completion_length is None or a.max_completion_length >= 1, "must be >= 1 (tokens per completion)"),
        ("num_generations", a.num_generations, a.num_generations is None or a.num_generations >= 2,
         "must be >= 2: advantages compare completions of the same prompt"),
    ]
    for name, value, ok, fix in checks:
        if not ok:
            raise UserError(f"{name}={value}: {fix}")


def parse_config(argv: list[str], dataclass_types):
    """Parse ``--config file.yaml`` plus ``--key value`` overrides into the given dataclasses.

    Args:
        argv: command-line words after the subcommand.
        dataclass_types: e.g. ``(ScriptArgs, trl.GRPOConfig)``.

    Returns:
        One instance per dataclass type, in order.

    Raises:
        UserError: unreadable YAML, unknown keys (with the closest known key), bad values.
    """
    import yaml
    from trl import TrlParser

    parser = TrlParser(dataclass_types)

    def fail(message):  # argparse would print the whole (very long) usage, then exit
        raise UserError(f"{message} (see --help)")

    parser.error = fail
    parser.allow_abbrev = False  # `--learning_rat` must be an error, not a silent learning_rate
    import torch

    if not torch.cuda.is_available():
        # GRPOConfig defaults to bf16 mixed precision, which Trainer refuses without a GPU unless
        # use_cpu is set. On a CPU, bf16 is the default only where it is measured faster than fp32
        # (AVX512-BF16 / AMX: ~2x; emulated elsewhere: ~3x slower); `--bf16 false` opts out.
        from grpo.hardware import bf16_is_fast

        fast = bf16_is_fast()
        parser.set_defaults(bf16=fast, **({"use_cpu": True} if fast else {}))
    known = sorted({a.dest for a in parser._actions})
    if "--config" in argv:
        path = argv[argv.index("--config") + 1] if argv.index("--config") + 1 < len(argv) else ""
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except FileNotFoundError:
            raise UserError(f"config file {path!r} does not exist") from None
        except yaml.YAMLError as err:
            raise UserError(f"config file {path!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        return parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except UserError:
        raise
    except (ValueError, TypeError) as err:
        if "bf16/gpu" in str(err):
            raise UserError("bf16: true needs a CUDA GPU and none was found; set --bf16 false "
                            "(or --use_cpu true for bf16 autocast on CPU)") from None
        raise UserError(_explain_unknown(str(err), known)) from None


def _explain_unknown(message: str, known: list[str]) -> str:
    """Turn TrlParser/HfArgumentParser messages about unknown keys into 'unknown key X (did you mean Y?)'."""
    import re

    keys = re.findall(r"--([A-Za-z0-9_\-]+)", message)
    unknown = [k for k in keys if k not in known]
    if not unknown:
        return message.splitlines()[0]
    hints = []
    for key in dict.fromkeys(unknown):
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return "unknown config key " + ", ".join(hints)
