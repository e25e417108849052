"""What the person at the terminal sees during a training stage: one progress bar, a compact table.

Every metric of a step goes to ``metrics.jsonl`` (TRL's names, 30-odd of them); the terminal gets
only what tells whether the run is learning: the mean total reward, the accuracy and format rate of
the periodic evaluation (``eval/*``, carried forward until the next one), each reward function's mean,
completion length, the clipped and placeholder-reasoning shares and seconds per step on the bar, and the same as one table row
every ``logging_steps`` (a header first, again when the columns change), written above the bar so the
two never interleave.
"""

from __future__ import annotations

import math

__all__ = ["StepProgress", "quiet_progress"]


def _short(name: str) -> str:
    """``rewards/soft_format_reward/mean`` -> ``soft_format``."""
    return name.removeprefix("rewards/").removesuffix("/mean").removesuffix("_reward_func").removesuffix("_reward")


class StepProgress:
    """A tqdm bar over optimizer steps plus a table row every ``logging_steps``.

    Args:
        total: steps in the stage.
        desc: the bar's label (e.g. ``"GRPO"``).
        initial: steps already done (resumed runs).
        disable: no output at all (non-main processes, ``disable_tqdm``).
    """

    COLUMNS = (("reward", "reward"), ("eval/accuracy", "eval_acc"), ("eval/format_rate", "eval_fmt"),
               ("loss", "loss"), ("completions/mean_length", "len"),
               ("completions/clipped_ratio", "clip"), ("completions/placeholder_reasoning_rate", "placeholder"),
               ("kl", "kl"), ("mean_token_accuracy", "token_acc"),
               ("step_time", "s/step"))

    def __init__(self, total: int, desc: str = "GRPO", initial: int = 0, disable: bool = False):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable, dynamic_ncols=True)
        self.disable = disable
        self.header: list | None = None  # the columns of the last header printed
        self.carried: dict = {}  # the latest periodic evaluation (eval/*), shown until the next one

    def _columns(self, metrics: dict) -> list[tuple[str, str]]:
        rewards = [(k, _short(k)) for k in metrics if k.startswith("rewards/") and k.endswith("/mean")]
        first, rest = self.COLUMNS[:3], self.COLUMNS[3:]
        return [c for c in (*first, *rewards, *rest) if c[0] in metrics]

    @staticmethod
    def _cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    def update(self, step: int, metrics: dict, log_row: bool) -> None:
        """Advance to ``step`` (steps done) showing ``metrics`` (a step's logged metrics); a table row if ``log_row``."""
        if self.disable:
            return
        self.carried.update({k: v for k, v in metrics.items() if k.startswith("eval/")})
        metrics = {**self.carried, **metrics}
        columns = self._columns(metrics)
        if columns:
            shown = columns[:4] + [c for c in columns[4:] if c[0] == "eval/accuracy"] + columns[-1:]
            self.bar.set_postfix({label: self._cell(metrics[key]) for key, label in dict.fromkeys(shown)},
                                 refresh=False)
        self.bar.update(step - self.bar.n)
        if log_row and columns:
            widths = [max(len(label), 7) for _, label in columns]
            if columns != self.header:  # first row, or the columns changed (e.g. the first periodic evaluation)
                self.bar.write("  ".join(["step".rjust(5)] + [label.rjust(w) for (_, label), w in zip(columns, widths)]))
                self.header = columns
            self.bar.write("  ".join([str(step).rjust(5)] + [self._cell(metrics[key]).rjust(w)
                                                              for (key, _), w in zip(columns, widths)]))

    def close(self) -> None:
        self.bar.close()


def quiet_progress(trainer, desc: str) -> None:
    """Swap a ``transformers.Trainer``'s progress callback (which prints every log as a raw dict of
    ~30 metrics) for :class:`StepProgress`: one bar, a compact row per log. No-op when tqdm is off."""
    from transformers import ProgressCallback, TrainerCallback

    if trainer.args.disable_tqdm:
        return

    class _Progress(TrainerCallback):
        progress: StepProgress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = StepProgress(state.max_steps, desc, initial=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and logs:
                shown = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "epoch"}
                self.progress.update(state.global_step, shown, log_row=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step, {}, log_row=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.close()

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_Progress())
