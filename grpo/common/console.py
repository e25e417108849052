"""What the person at the terminal sees during a training stage: one progress bar, a compact table.

Every metric of a step goes to ``metrics.jsonl`` (TRL's names, 30-odd of them); the terminal gets
only what tells whether the run is learning: the mean total reward, the accuracy and format rate of
the periodic evaluation (``eval/*``, carried forward until the next one), each reward function's mean,
completion length, the clipped and placeholder-reasoning shares and seconds per step on the bar, and the same as one table row
every ``logging_steps`` (a header first, again when the columns change), written above the bar so the
two never interleave. When the output is not a terminal (a log file, a pipe) there is no bar: each
logged step is one line, so the file reads as a table.

:func:`setup_console` sets up what the ``grpo`` command prints besides that: the toolkit's
information at INFO as plain lines, warnings marked as such, and the libraries' own progress bars
(model loading, dataset maps, downloads) off unless ``--verbose``.
"""

from __future__ import annotations

import logging
import math
import os
import sys

__all__ = ["StepProgress", "quiet_progress", "setup_console", "is_terminal"]

OWN_LOGGERS = ("grpo", "rewards", "recipes", "embedded_models")


class _Formatter(logging.Formatter):
    """INFO from our packages as the bare message; anything else as ``warning: name: message``."""

    def format(self, record):
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO and record.name.split(".")[0] in OWN_LOGGERS:
            return message
        return f"{record.levelname.lower()}: {record.name}: {message}"


def setup_console(verbose: bool = False) -> None:
    """Logging and progress bars for one ``grpo`` command (call before transformers / datasets are imported).

    Our packages log at INFO (DEBUG with ``verbose``) to stdout, where the tables go; warnings and
    errors of any library go to stderr. Without ``verbose``
    the Hugging Face libraries' progress bars are off (``HF_HUB_DISABLE_PROGRESS_BARS``, which
    transformers reads at import, and ``HF_DATASETS_DISABLE_PROGRESS_BARS``; an explicit setting in
    the environment wins). transformers' own verbosity stays at its WARNING default: above it,
    ``TrainingArguments`` would default ``disable_tqdm`` to true and the Trainer would print raw dicts.
    """
    root = logging.getLogger()
    info, warnings = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    info.addFilter(lambda record: record.levelno < logging.WARNING)  # the run's narrative, with its tables
    warnings.setLevel(logging.WARNING)  # warnings and errors: stderr, so `2>/dev/null` drops no result
    for handler in (info, warnings):
        handler.setFormatter(_Formatter())
    root.handlers[:] = [info, warnings]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # peft imports bitsandbytes when installed, and on an AVX512-BF16 CPU bitsandbytes warns at import that
    # its optional hub-fetched 4-bit kernel is missing (it falls back to its own); every command would print it
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stderr, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


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
        bar: draw the bar (default: when stderr is a terminal); without it each logged row is
            printed as one line and nothing else.
    """

    COLUMNS = (("reward", "reward"), ("eval/accuracy", "eval_acc"), ("eval/format_rate", "eval_fmt"),
               ("loss", "loss"), ("completions/mean_length", "len"),
               ("completions/clipped_ratio", "clip"), ("completions/placeholder_reasoning_rate", "placeholder"),
               ("kl", "kl"), ("mean_token_accuracy", "token_acc"),
               ("step_time", "s/step"))

    def __init__(self, total: int, desc: str = "GRPO", initial: int = 0, disable: bool = False,
                 bar: bool | None = None):
        from tqdm.auto import tqdm

        self.draw = is_terminal() if bar is None else bar
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable or not self.draw,
                        dynamic_ncols=True)
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
                self._write("  ".join(["step".rjust(5)] + [label.rjust(w) for (_, label), w in zip(columns, widths)]))
                self.header = columns
            self._write("  ".join([str(step).rjust(5)] + [self._cell(metrics[key]).rjust(w)
                                                              for (key, _), w in zip(columns, widths)]))

    def _write(self, line: str) -> None:
        if self.draw:
            self.bar.write(line)  # above the bar
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()


def quiet_progress(trainer, desc: str) -> None:
    """Swap a ``transformers.Trainer``'s progress callback (a bar, or with ``disable_tqdm`` every log printed
    as a raw dict of ~30 metrics) for :class:`StepProgress`: one bar, a compact row per log; with
    ``disable_tqdm`` the rows alone."""
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    bar = False if trainer.args.disable_tqdm else None

    class _Progress(TrainerCallback):
        progress: StepProgress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = StepProgress(state.max_steps, desc, initial=state.global_step, bar=bar)

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
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_Progress())
