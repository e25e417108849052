"""The run directory: metrics.jsonl, samples.jsonl, eval reports, checkpoints, curves.png, model card.

Layout of ``output_dir`` after ``grpo train``::

    checkpoint/            merged model + tokenizer (``from_pretrained``-loadable); checkpoint/adapter/ = LoRA
    metrics.jsonl          one JSON object per logged step, TRL's metric names
    samples.jsonl          prompts, completions, per-reward scores and each row's dataset columns (answer, question)
    eval_before.json       accuracy / format rate / mean completion length before training
    eval_after.json        the same after training
    curves.png             reward, each reward function, KL and completion length over steps
    README.md              model card

Everything that replaces a file does so atomically (write to a temporary name, then
``os.replace``), so a crash or Ctrl-C never leaves a half-written checkpoint or report.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from grpo.common.checkpoint_io import save_checkpoint, write_text_atomic
from grpo.runs.model_card import front_matter, hub_source, render_card

logger = logging.getLogger(__name__)


def _clean(value):
    """JSON has no NaN/inf: write them as null so every line stays parseable."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class MetricsLogger:
    """Appends per-step metrics and samples to the run directory (rank 0 only writes).

    Args:
        output_dir: the run directory (created if missing).
        enabled: False on non-zero ranks, so every process can call ``log`` unconditionally.
    """

    def __init__(self, output_dir, enabled: bool = True):
        self.output_dir = Path(output_dir)
        self.enabled = enabled
        if enabled:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.samples_path = self.output_dir / "samples.jsonl"

    def log(self, step: int, metrics: dict) -> None:
        """Append ``{"step": step, **metrics}`` as one line of metrics.jsonl."""
        if not self.enabled:
            return
        line = {"step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(line) + "\n")

    def log_samples(self, step: int, prompts, completions, rewards_by_name: dict, columns=None) -> None:
        """Append one line per completion: prompt, completion, each reward's score, then its row's dataset columns.

        Args:
            columns: per completion, ``{column: value}`` of its dataset row (``answer``, ``question``, ...), so that
                ``grpo rewards try --completions samples.jsonl`` gives each reward the gold values training gave it.
                Columns named like the line's own keys are left out.
        """
        if not self.enabled:
            return
        columns = columns or [{}] * len(completions)
        with self.samples_path.open("a") as f:
            for i, (prompt, completion) in enumerate(zip(prompts, completions)):
                scores = {name: _clean(values[i]) for name, values in rewards_by_name.items()}
                line = {"step": int(step), "prompt": prompt, "completion": completion, "rewards": scores}
                line.update({k: _clean(v) for k, v in columns[i].items() if k not in line})
                f.write(json.dumps(line, default=str) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop metric/sample lines with ``step`` greater than ``step`` (used when resuming)."""
        if not self.enabled:
            return
        for path in (self.metrics_path, self.samples_path):
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(ln + "\n" for ln in keep))
                os.replace(tmp, path)

    def read(self) -> list[dict]:
        """All metric lines logged so far."""
        if not self.metrics_path.exists():
            return []
        return [json.loads(ln) for ln in self.metrics_path.read_text().splitlines() if ln.strip()]


class SampleRecorder:
    """Collects each generation batch's prompts, completions and scores for samples.jsonl (rank 0 writes).

    The native loop hands it every generation batch (:meth:`record`); for the TRL backend, which calls
    the reward functions itself, :meth:`wrap` puts it around each reward (keeping ``__name__``, which TRL
    names the metric after) and validates the reward's output through :func:`rewards.call_reward`
    (count, type, and a clear error naming a reward that raises).
    """

    def __init__(self, metrics_logger: MetricsLogger, max_per_step: int = 16):
        self.metrics_logger = metrics_logger
        self.max_per_step = max_per_step
        self.pending: dict = {}

    def record(self, prompts, completions, rewards_by_name: dict, columns=None) -> None:
        """Keep one batch: prompts and completions (text or chat messages), ``{reward name: scores}`` and, per
        completion, its dataset row's columns (``{"answer": ..., "question": ...}``; see :func:`sample_columns`)."""
        import rewards

        self.pending = {"prompts": [_last_user_text(p) for p in prompts],
                        "completions": [rewards.completion_text(c) for c in completions],
                        "rewards": dict(rewards_by_name),
                        "columns": [sample_columns(c) for c in columns] if columns else None}

    def wrap(self, fn):
        """``fn`` validated, its first call of a batch keeping the prompts and completions, every call its scores."""
        import rewards

        recorder = self

        def recorded(completions, prompts=None, **columns):
            scores = rewards.call_reward(fn, completions, prompts=prompts, **columns)
            if not recorder.pending:
                per_row = [{k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)}
                           for i in range(len(completions))]
                recorder.record(prompts or [None] * len(completions), completions, {}, per_row)
            recorder.pending["rewards"][fn.__name__] = scores
            return scores

        recorded.__name__ = fn.__name__
        recorded.__qualname__ = fn.__name__
        return recorded

    def flush(self, step: int) -> None:
        """Write the kept batch (its first ``max_per_step`` completions) at ``step``, then forget it."""
        if self.pending:
            n = self.max_per_step
            columns = self.pending.get("columns")
            self.metrics_logger.log_samples(step, self.pending["prompts"][:n], self.pending["completions"][:n],
                                            {k: v[:n] for k, v in self.pending["rewards"].items()},
                                            columns[:n] if columns else None)
        self.pending = {}


# Reward keyword arguments that are not dataset columns (TRL passes them to every reward)
_NOT_COLUMNS = {"prompt", "prompts", "completion", "completions", "completion_ids", "trainer_state", "log_extra",
                "log_metric"}


def sample_columns(row: dict) -> dict:
    """The dataset columns of one row worth a samples.jsonl line: JSON scalars (``answer``, ``question``, ...).

    >>> sample_columns({"answer": "72", "question": "How many?", "completion_ids": [1, 2], "trainer_state": object()})
    {'answer': '72', 'question': 'How many?'}
    """
    return {k: v for k, v in row.items()
            if k not in _NOT_COLUMNS and (v is None or isinstance(v, (str, int, float, bool)))}


def _last_user_text(prompt):
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return prompt[-1].get("content")
    return prompt


class _MergedWeights:
    """What ``save_checkpoint`` saves for a peft model: its base model's files with the LoRA-merged weights
    (:func:`grpo.generation.inference_copy.merged_named_weights`), gathered on the CPU one tensor at a time, so no
    second model exists on the training device (a deep copy merged there cost a full model: 7B fp32, 28 GB)."""

    def __init__(self, model):
        self.model = model

    def save_pretrained(self, path) -> None:
        from grpo.generation.inference_copy import merged_named_weights

        base = self.model.get_base_model()
        state = {name: tensor.to("cpu") for name, tensor in merged_named_weights(self.model)}
        for name, module in base.named_modules():  # persistent buffers, as merge_and_unload's state_dict holds them
            for leaf, buf in module._buffers.items():
                if buf is not None and leaf not in module._non_persistent_buffers_set and ".lora_" not in name:
                    state[f"{name}.{leaf}".lstrip(".").replace(".base_layer.", ".")] = buf.to("cpu")
        base.save_pretrained(path, state_dict=state)


def save_final_checkpoint(model, tokenizer, output_dir) -> Path:
    """``output_dir/checkpoint``: the merged model (loadable by ``from_pretrained``) and, for a
    peft model, its LoRA adapter in ``checkpoint/adapter``. The trained model is not changed or copied."""
    is_peft = hasattr(model, "peft_config")
    if not is_peft:
        return save_checkpoint(model, tokenizer, Path(output_dir) / "checkpoint", replace=True)  # no stale adapter/
    return save_checkpoint(_MergedWeights(model), tokenizer, Path(output_dir) / "checkpoint",
                           extra_files={"adapter": lambda p: model.save_pretrained(p)}, replace=True)


PANELS = [  # (title, metric names or a prefix ending in "/", what an empty panel means)
    ("reward (weighted sum)", ["reward"], "no reward logged"),
    ("each reward function (mean)", ["rewards/"], "no reward logged"),
    ("periodic evaluation (held-out train problems)", ["eval/accuracy", "eval/format_rate",
                                                       "eval/placeholder_reasoning_rate"],
     "off in this run (periodic_eval_steps: 0)"),
    ("completion length (tokens)", ["completions/mean_length"], "not logged in this run"),
    ("share of training completions: clipped, placeholder reasoning",
     ["completions/clipped_ratio", "completions/placeholder_reasoning_rate"], "not logged in this run"),
    ("KL to reference", ["kl"], "not computed: beta = 0 loads no reference model"),
]


def plot_curves(output_dir, metrics: list[dict] | None = None) -> Path | None:
    """Draw ``curves.png`` from metrics.jsonl: reward, each reward function, the periodic evaluation's accuracy,
    format rate and placeholder-reasoning rate (with its 95 % interval as a band), completion length, the
    training completions' clipped and placeholder-reasoning shares, KL (a panel says why when its metric is absent).

    Returns:
        The PNG path, or None when there is nothing to plot or matplotlib is not installed (logged).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if metrics is None:
        metrics = MetricsLogger(output_dir).read()
    metrics = [m for m in metrics if "reward" in m or "eval/accuracy" in m]
    if not any("reward" in m for m in metrics):
        return None
    try:
        import matplotlib
    except ImportError:  # a declared dependency, but a bare GPU node may lack it: the run itself is unaffected
        logger.warning("curves.png not drawn: matplotlib is not installed (pip install matplotlib); "
                       "metrics.jsonl has every value it would plot")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    for ax, (title, names, empty) in zip(axes.flat, PANELS):
        if names[0].endswith("/"):
            names = sorted({k for m in metrics for k in m if k.startswith(names[0]) and k.endswith("/mean")})
        for name in names:
            points = [(m["step"], m[name]) for m in metrics if m.get(name) is not None]
            if points:
                label = name.removeprefix("rewards/").removesuffix("/mean").removeprefix("eval/").removeprefix("completions/")
                line, = ax.plot(*zip(*points), marker=".", label=label)  # non-finite values were logged as null
                band = [(m["step"], m[f"{name}_ci_low"], m[f"{name}_ci_high"]) for m in metrics
                        if m.get(f"{name}_ci_low") is not None and m.get(f"{name}_ci_high") is not None]
                if band:  # the rate's 95 % interval (the periodic evaluation's placeholder rate)
                    ax.fill_between(*zip(*band), color=line.get_color(), alpha=0.15, linewidth=0)
        if not ax.lines:
            ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="gray", wrap=True)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        if len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"GRPO run: {output_dir.name}")
    fig.tight_layout()
    path = output_dir / "curves.png"
    tmp = output_dir / ".curves.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


SECRET_FLAGS = ("--hub_token",)


def command_line(words: list[str]) -> str:
    """A shell-quoted command line for the model card, with the values of secret flags (``--hub_token``) masked.

    >>> command_line(["grpo", "train", "--hub_token", "hf_abc", "--lr=1", "--hub_token=hf_x"])
    "grpo train --hub_token '***' --lr=1 '--hub_token=***'"
    """
    import shlex

    out, hide_next = [], False
    for word in words:
        if hide_next:
            word, hide_next = "***", False
        elif word in SECRET_FLAGS:
            hide_next = True
        elif word.split("=", 1)[0] in SECRET_FLAGS and "=" in word:
            word = word.split("=", 1)[0] + "=***"
        out.append(word)
    return shlex.join(out)


def _config_file(command: str | None) -> Path | None:
    """The ``--config FILE`` of a command line, if it names a readable file."""
    import shlex

    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    if "--config" in words and words.index("--config") + 1 < len(words):
        path = Path(words[words.index("--config") + 1])
        return path if path.is_file() else None
    return None


def write_model_card(output_dir, script_args, training_args, reports: dict, base_model: str,
                     command: str | None = None, comparisons: list[dict] | None = None,
                     trend: dict | None = None) -> Path:
    """``output_dir/README.md``: what was trained, on what data, with which rewards, how, the before/after
    evaluation table with its paired comparison, the reward trend, any shortcut the evaluation detected, and
    the exact command; Hub metadata (``base_model``, ``datasets``, ``library_name``, ``tags``, ``model-index``).

    Args:
        reports: ``{column label: eval report or None}``, e.g. base / after warm-start / after GRPO.
        base_model: the model spec training started from.
        command: the command line of the run (``grpo train ...``); None if not started from the CLI.
        comparisons: :func:`grpo.evaluation.evaluate.compare_columns` of ``reports`` (None: computed here).
        trend: :func:`grpo.cli.pipeline.reward_trend`'s dict, or None.
    """
    from grpo.evaluation.evaluate import compare_columns, format_comparisons, format_table

    reports = {k: v for k, v in reports.items() if v is not None}
    name = Path(output_dir).resolve().name
    n = next((r.get("n") for r in reports.values()), "-")
    settings = {k: getattr(training_args, k) for k in (
        "learning_rate", "max_steps", "num_train_epochs", "num_generations", "per_device_train_batch_size",
        "gradient_accumulation_steps", "max_completion_length", "temperature", "beta", "epsilon", "loss_type",
        "scale_rewards", "entropy_coef", "lr_scheduler_type", "weight_decay", "max_grad_norm", "bf16", "use_vllm",
        "seed") if hasattr(training_args, k)}
    eval_spec = script_args.eval_dataset or script_args.dataset_name
    eval_data = (f"the first {n} problems of {script_args.eval_dataset} (test split)" if script_args.eval_dataset
                 else f"{n} held-out rows of {script_args.dataset_name}")
    results = [{"metric": metric, "value": round(float(report[metric]), 4), "name": f"{metric} ({label})",
                "dataset": hub_source(eval_spec) or str(eval_spec), "dataset_name": eval_data,
                "split": "test" if script_args.eval_dataset else "train (held out)"}
               for label, report in reports.items() for metric in ("accuracy", "format_rate")
               if report.get(metric) is not None]
    front = front_matter(tags=["grpo", "trl", "grpo-toolkit", "reinforcement-learning"], base_model=base_model,
                         datasets=[script_args.dataset_name, script_args.eval_dataset], model_name=name,
                         eval_results=results)
    kwargs = script_args.reward_kwargs or {}
    reward_lines = "\n".join(f"- `{r}`" + (f" with `{json.dumps(kwargs[r])}`" if r in kwargs else "")
                             for r in script_args.reward_funcs)
    command_block = f"```bash\n{command}\n```" if command else "(not started from the `grpo` command line)"
    config = _config_file(command)
    if config is not None:  # the command names a file that may change later: keep its text as it was
        command_block += f"\n\n`{config}` at the time of the run:\n\n```yaml\n{config.read_text().rstrip()}\n```"
    lora = ("r=%d, alpha=%d, %s" % (script_args.lora_r, script_args.lora_alpha, script_args.lora_target_modules)
            if script_args.use_peft else "no")
    source = hub_source(base_model)
    intro = f"""GRPO-trained with grpo-toolkit (backend `{script_args.backend}`) from `{base_model}`{f" (`{source}`)" if source and source != base_model else ""} on `{script_args.dataset_name}`
(split `{script_args.dataset_train_split}`, prompt format `{getattr(script_args, "prompt_format", "tags")}`).
Warm-start SFT before GRPO: {"yes" if script_args.warm_start else "no"}. LoRA: {lora}."""
    usage = f"""Load with `AutoModelForCausalLM.from_pretrained("{Path(output_dir) / "checkpoint"}")`; the LoRA adapter alone is in
`checkpoint/adapter` (`grpo export --model {Path(output_dir)} --output_dir DIR` writes a standalone merged copy).
Per-step metrics: `metrics.jsonl`; curves: `curves.png`."""
    text = render_card(front, name, intro, [
        ("Rewards", f"Weights: {training_args.reward_weights or 'all 1.0'}.\n\n{reward_lines}"),
        (f"Evaluation ({n} problems, greedy)" if reports else "Evaluation", _evaluation_text(
            reports, eval_data, format_table, format_comparisons,
            compare_columns(reports) if comparisons is None else comparisons, trend)),
        ("Training settings", f"```json\n{json.dumps(settings, indent=2, default=str)}\n```"),
        ("Command", f"{command_block}\n\n{usage}"),
    ])
    return write_text_atomic(Path(output_dir) / "README.md", text)


def _evaluation_text(reports: dict, eval_data: str, format_table, format_comparisons, comparisons, trend) -> str:
    """The card's evaluation section: table, shortcuts next to the format rate, paired changes, reward trend."""
    parts = []
    if not reports:
        parts.append("Not evaluated (eval_size 0): the run has no before/after numbers. Evaluate the checkpoint with "
                     "`grpo eval --model <run>/checkpoint --dataset gsm8k --limit 200`.")
    else:
        parts.append(f"On {eval_data}; rates with 95% Wilson intervals.\n\n{format_table(reports, markdown=True)}")
        shortcuts = [f"- {label}: format rate {report['format_rate']:.1%}, but {report['placeholder_reasoning_rate']:.1%} "
                     f"of the completions have placeholder reasoning (an empty or `...` reasoning block), which the "
                     f"format rewards score as formatted" for label, report in reports.items()
                     if report.get("placeholder_reasoning_rate") and report.get("format_rate") is not None]
        if shortcuts:
            parts.append("Shortcut detected -- the format rate overstates what the model learned:\n\n"
                         + "\n".join(shortcuts))
        paired = format_comparisons(comparisons or [], markdown=True)
        if paired:
            parts.append(paired)
    if trend:
        low, high = trend["slope_ci"]
        verdict = "rising" if low > 0 else "falling" if high < 0 else "no clear trend"
        parts.append(f"Mean total reward over {trend['n']} logged steps: slope {trend['slope']:+.4f} per step, 95% "
                     f"interval [{low:+.4f}, {high:+.4f}] ({verdict}; fitted {trend['first']:.3f} -> {trend['last']:.3f}).")
    return "\n\n".join(parts)
