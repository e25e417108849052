"""``ScriptArgs``: what ``grpo train`` trains on and how, in TRL's own vocabulary.

``ScriptArgs`` subclasses ``trl.ModelConfig`` and ``trl.ScriptArguments``, so the keys of a YAML
written for TRL's ``trl grpo`` command -- ``model_name_or_path``, ``use_peft``, ``lora_r``,
``lora_alpha``, ``lora_dropout``, ``lora_target_modules``, ``load_in_4bit``, ``dataset_name``,
``dataset_config``, ``dataset_train_split``... -- are fields here with the same meaning. Our own
fields (evaluation, rewards, warm start, backend) follow TRL's. :func:`grpo.config.parser.parse_config`
parses it together with ``trl.GRPOConfig``; import it as ``from grpo.config.script_args import ScriptArgs``.

Deviations from TRL, for the offline CPU exercise:

* defaults: ``model_name_or_path`` embedded:smollm2-135m-instruct (TRL: none), ``use_peft`` true
  (TRL: false), ``lora_target_modules`` all-linear (TRL: peft's per-architecture choice),
  ``dataset_name`` gsm8k, the real GSM8K shipped with the package (TRL: none);
* :data:`UNSUPPORTED` TRL fields (``model_revision``, ``dtype``, ``attn_implementation``,
  ``use_dora``...) are refused when set to anything but TRL's default, rather than ignored;
* :data:`ALIASES`: the names this toolkit used before (``model``, ``dataset``, ``dataset_split``,
  ``use_lora``) still work and map onto TRL's fields; both names with different values is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, ScriptArguments

from grpo.common.errors import UserError

# old name -> TRL's name. The TRL fields below default to None ("not given") so that a conflict
# between an alias and its TRL name is exact; __post_init__ then fills in DEFAULTS.
ALIASES = {"model": "model_name_or_path", "dataset": "dataset_name", "dataset_split": "dataset_train_split",
           "use_lora": "use_peft"}
DEFAULTS = {"model_name_or_path": "embedded:smollm2-135m-instruct", "dataset_name": "gsm8k",
            "dataset_train_split": "train", "use_peft": True}

# TRL fields grpo train does not implement: {name: (TRL's default, why / what to do instead)}.
UNSUPPORTED = {
    "model_revision": ("main", "the model spec is loaded as given; download that revision to a directory and "
                               "pass the directory as model_name_or_path"),
    "dtype": ("float32", "the weights load in float32 and bf16/fp16 (GRPOConfig) give mixed precision; "
                         "4-bit matmuls use bnb_4bit_compute_dtype"),
    "attn_implementation": (None, "the model's default attention is used (the native sampler reads its modules)"),
    "lora_target_parameters": (None, "adapters go on the modules of lora_target_modules"),
    "lora_modules_to_save": (None, "only the LoRA adapter trains"),
    "lora_task_type": ("CAUSAL_LM", "GRPO trains a causal LM"),
    "use_rslora": (False, "scaling is lora_alpha / lora_r"),
    "use_dora": (False, "plain LoRA adapters are trained"),
    "bnb_4bit_quant_storage": (None, "4-bit weights use bitsandbytes' default storage"),
    "dataset_test_split": ("test", "evaluation reads eval_dataset at its 'test' split, or holds out eval_size "
                                   "training rows"),
    "dataset_streaming": (False, "the training rows are loaded in memory"),
    "ignore_bias_buffers": (False, "a DDP workaround TRL's scripts apply, not needed here"),
}
_LOCAL_SPECS = (".jsonl", ".json", ".csv", ".parquet")


def _alias_help(name: str) -> dict:
    return {"help": f"Alias of {ALIASES[name]} (TRL's name), for older configs; giving both with different values "
                    f"is an error."}


# The course's five GSM8K rewards, in its order (rewards/README.md).
GSM8K_REWARDS = ["xml_count", "soft_format", "strict_format", "integer_answer", "correctness"]


@dataclass
class ScriptArgs(ModelConfig, ScriptArguments):
    """What to train on and how; the optimisation itself is configured by ``trl.GRPOConfig``."""

    # Model (trl.ModelConfig; the TRL fields not declared here keep TRL's definition)
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "Model spec: hub id, local checkpoint dir, or embedded:smollm2-135m-instruct (offline; the default)."})
    use_peft: bool | None = field(default=None, metadata={
        "help": "Train a LoRA adapter (peft) instead of all weights (default true, unlike TRL)."})
    lora_target_modules: list[str] | None = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "Modules that get adapters: 'all-linear', a list, or a comma-separated string (q_proj,v_proj)."})
    bnb_4bit_compute_dtype: str = field(default="bfloat16", metadata={
        "help": "4-bit: dtype of the matmuls on dequantized weights: bfloat16, float16 or float32."})
    model: str | None = field(default=None, metadata=_alias_help("model"))
    use_lora: bool | None = field(default=None, metadata=_alias_help("use_lora"))
    # Data (trl.ScriptArguments)
    dataset_name: str | None = field(default=None, metadata={
        "help": "Dataset spec: gsm8k (real GSM8K shipped with the package, offline, the default; split train or "
                "test from dataset_train_split), synthetic:gsm8k[:N] (generated, offline), a GSM8K-format .jsonl "
                "file, or openai/gsm8k (hub; config from dataset_config, else main)."})
    dataset_train_split: str | None = field(default=None, metadata={
        "help": "Split of the dataset to train on (default train)."})
    dataset: str | None = field(default=None, metadata=_alias_help("dataset"))
    dataset_split: str | None = field(default=None, metadata=_alias_help("dataset_split"))
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
    task: str = field(default="gsm8k", metadata={
        "help": "'gsm8k': the exercise's problems (accuracy); 'translation' / 'summarization': a recipe's "
                "data (pkg:po-en-fr, pkg:lee-lead or rows in its schema) as prompt/source/reference rows for the "
                "reference rewards (chrf, rouge...), evaluated with sacreBLEU / ROUGE against the copy-source / "
                "lead-1 baseline (grpo/configs/translate_en_fr.yaml, summarize.yaml)."})
    eval_base: bool = field(default=True, metadata={
        "help": "Evaluate the base model before any training; false starts the table at the warm-start model "
                "(saves one evaluation when the base model's score is already known)."})
    eval_max_new_tokens: int = field(default=320, metadata={
        "help": "Generation budget per evaluated problem, tokens (320 fits 99.9%% of real GSM8K solutions, formatted)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Problems generated together during evaluation."})
    periodic_eval_steps: int = field(default=0, metadata={
        "help": "Every N GRPO steps (and before the first), answer periodic_eval_size problems greedily and log "
                "eval/accuracy and eval/format_rate (metrics.jsonl, curves.png, the console table); 0 = off."})
    periodic_eval_size: int = field(default=64, metadata={
        "help": "Problems of the periodic evaluation, held out of the training split (not seen by warm-start or "
                "GRPO; never the test split). 64 problems: a 95%% interval of about +-12 points, a trend only."})
    # Rewards
    reward_funcs: list[str] = field(default_factory=lambda: list(GSM8K_REWARDS), metadata={
        "help": "Reward specs: registry names (see `grpo rewards list`), file.py:function or package.module:function."})
    reward_kwargs: dict | str | None = field(default=None, metadata={
        "help": "Parameters per reward spec, e.g. {length: {ideal: 50, unit: words}} (YAML) or a JSON string."})
    # Training
    backend: str = field(default="auto", metadata={
        "help": "'auto' (native without a CUDA GPU, trl with one), 'native' (our loop, grpo.training.native, with "
                "the fast CPU sampler) or 'trl' (trl.GRPOTrainer), as the README's 'Which backend' explains."})
    warm_start: bool = field(default=False, metadata={
        "help": "Run a supervised warm-start (SFT on solutions in the target format) before GRPO."})
    sft_examples: int = field(default=128, metadata={"help": "Warm-start: training rows rewritten into the target format."})
    sft_epochs: float = field(default=1.0, metadata={"help": "Warm-start: epochs over sft_examples."})
    sft_learning_rate: float = field(default=2e-4, metadata={"help": "Warm-start: learning rate (LoRA)."})
    sft_batch_size: int = field(default=8, metadata={"help": "Warm-start: examples per optimizer step, across all processes."})
    sft_micro_batch_size: int = field(default=2, metadata={
        "help": "Warm-start: examples per forward; sft_batch_size is reached by gradient accumulation. Memory: "
                "the logits over a 49k vocabulary (and TRL's entropy / token-accuracy copies of them) take "
                "~0.5 GB per 512-token example."})
    sft_lora_dropout: float | None = field(default=None, metadata={
        "help": "Warm-start: LoRA dropout (unset = lora_dropout). 0 skips a Bernoulli mask on every LoRA input: on "
                "2 CPU cores a 256-token example's forward and backward took 1.03 s instead of 1.22 s at 0.05."})
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
        self._resolve_aliases()
        for name, (default, why) in UNSUPPORTED.items():
            value = getattr(self, name)
            if value != default and not (name == "dtype" and value is None):
                raise UserError(f"{name}={value!r}: TRL's field is not supported by grpo train ({why}); remove it")
        self.lora_target_modules = _target_modules(self.lora_target_modules)
        self._check_dataset_config()
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
        if self.sft_lora_dropout is not None and not 0.0 <= self.sft_lora_dropout < 1.0:
            raise UserError(f"sft_lora_dropout={self.sft_lora_dropout}: must be in [0, 1)")
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
        if self.task not in {"gsm8k", "translation", "summarization"}:
            raise UserError(f"task={self.task!r}: use 'gsm8k', 'translation' or 'summarization'")
        if self.task != "gsm8k" and (self.warm_start or self.periodic_eval_steps):
            raise UserError(f"task={self.task!r} starts from a recipe checkpoint and is evaluated before/after only: "
                            f"set warm_start false and periodic_eval_steps 0")
        if self.eval_size < 0:
            raise UserError(f"eval_size={self.eval_size}: must be >= 0")
        if self.periodic_eval_steps < 0 or (self.periodic_eval_steps and self.periodic_eval_size < 1):
            raise UserError(f"periodic_eval_steps={self.periodic_eval_steps}, periodic_eval_size="
                            f"{self.periodic_eval_size}: steps must be >= 0 (0 = off) and the size >= 1 when on")
        from grpo.modeling.quantization import validate_fields

        validate_fields(self)
        super().__post_init__()  # TRL's own checks (4- and 8-bit together; one target module -> a string)

    def _resolve_aliases(self) -> None:
        """Move each alias's value onto its TRL field (the alias is then None), then fill in :data:`DEFAULTS`.

        Raises:
            UserError: an alias and its TRL name given with different values.
        """
        for alias, name in ALIASES.items():
            value, trl_value = getattr(self, alias), getattr(self, name)
            if value is not None:
                if trl_value is not None and trl_value != value:
                    raise UserError(f"{alias}={value!r} and {name}={trl_value!r} disagree: {alias} is an alias of "
                                    f"{name} (TRL's name); give only {name}")
                setattr(self, name, value)
                setattr(self, alias, None)
            if getattr(self, name) is None:
                setattr(self, name, DEFAULTS[name])

    def _check_dataset_config(self) -> None:
        """``dataset_config`` names a hub dataset's configuration (``openai/gsm8k`` + ``main``)."""
        if self.dataset_config is None:
            return
        name = self.dataset_name
        local = name == "gsm8k" or name.startswith("synthetic:") or name.lower().endswith(_LOCAL_SPECS) \
            or Path(name).expanduser().exists()
        if local or ":" in name:
            raise UserError(f"dataset_config={self.dataset_config!r} with dataset_name={name!r}: a configuration "
                            f"applies to a hub dataset given once (openai/gsm8k with dataset_config main); remove "
                            f"dataset_config")

    @property
    def dataset_spec(self) -> str:
        """The training data spec for :func:`grpo.data.loaders.load_gsm8k`: ``dataset_name``, ``:dataset_config`` appended."""
        return f"{self.dataset_name}:{self.dataset_config}" if self.dataset_config else self.dataset_name


def _target_modules(value):
    """``lora_target_modules`` from YAML (string or list) or the command line (list, or one comma-separated word):
    ``"all-linear"`` or one module name as a string, several as a list (TRL's form).

    Raises:
        UserError: no module named.
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    names = [part.strip() for item in items if item is not None for part in str(item).split(",") if part.strip()]
    if not names:
        raise UserError("lora_target_modules is empty: use all-linear or name modules (q_proj,v_proj)")
    return names[0] if len(names) == 1 else names
