"""Experiment tracking: ``report_to`` wandb, trackio and tensorboard, offline unless the user asks.

    grpo train --config grpo/configs/gsm8k.yaml --report_to wandb trackio tensorboard
    grpo sft   --config grpo/configs/gsm8k.yaml --report_to tensorboard
    grpo recipe token_classification --config recipes/configs/token_classification.yaml --report_to wandb

Nothing leaves the machine by default. :func:`configure` (called by every entry point before a
tracker starts) switches wandb to offline mode when neither ``WANDB_MODE`` nor ``WANDB_API_KEY``
is set, and points wandb (``WANDB_DIR``) and trackio (``TRACKIO_DIR``, read when trackio is first
imported) into ``output_dir``, so a run directory holds its own logs:
``<output_dir>/wandb/offline-run-*`` (upload later with ``wandb sync``), ``<output_dir>/trackio/<project>.db``
(``TRACKIO_DIR=<output_dir>/trackio trackio show``), ``<output_dir>/runs/<date>_<host>[-<run_name>]/`` (tensorboard).

What is logged, on both backends: the run config (GRPOConfig / TrainingArguments and ScriptArgs),
every scalar metric under TRL's names with the HF Trainer's ``train/`` prefix
(``train/rewards/<name>/mean`` ..., so the two backends' dashboards line up) and, every
``logging_steps``, a ``completions`` table: step, prompt, completion, one column per reward, advantage.

- ``--backend trl``: the HF Trainer's own callbacks do the logging. TRL logs the table to wandb and
  trackio when ``log_completions`` is on, so :func:`trainer_args` turns it on (console printing off
  unless ``num_completions_to_print`` is set); :class:`TrlExtras` adds ScriptArgs to the config and
  the table to tensorboard (as markdown text), which TRL does not.
- ``--backend native``: :func:`open_trackers` returns a :class:`Trackers` that talks to the
  libraries directly (accelerate's trackers need an initialised ``PartialState``, which the native
  loop does not create, and have no table logging for trackio or tensorboard).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

from grpo.common.errors import UserError

log = logging.getLogger(__name__)

TRACKERS = ("wandb", "trackio", "tensorboard")
_set_by_us: dict[str, str] = {}  # environment variables configure() chose (a later run may move them)


def requested(report_to, native: bool = False) -> list[str]:
    """The integrations named by ``report_to``: a TrainingArguments value (list, str, "none", "all"),
    where one string may also name several, comma-separated (``--report_to wandb,tensorboard``).

    Raises:
        UserError: with ``native=True``, a name outside wandb/trackio/tensorboard.
    """
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [part.strip() for n in names if n is not None for part in str(n).split(",") if part.strip()]
    names = [n for n in names if n.lower() != "none"]
    names = list(TRACKERS) if "all" in names else names
    unknown = [n for n in names if n not in TRACKERS]
    if native and unknown:
        raise UserError(f"report_to={unknown[0]!r}: the native backend logs to {', '.join(TRACKERS)}; "
                        f"use one of them or --backend trl for other integrations")
    return names


def _set_env(name: str, value: str) -> None:
    """Set ``name`` unless the user did (a value we set for an earlier run in this process is replaced)."""
    if name in os.environ and _set_by_us.get(name) != os.environ[name]:
        return
    os.environ[name] = _set_by_us[name] = value


def configure(args, native: bool = False, output_dir=None) -> list[str]:
    """Prepare the environment for ``args.report_to`` before any tracker starts; ``args`` is not changed.

    wandb: offline unless ``WANDB_MODE`` or ``WANDB_API_KEY`` is set (one warning says how to sync),
    ``WANDB_DIR=output_dir``, ``WANDB_PROJECT=args.project``. trackio: ``TRACKIO_DIR=output_dir/trackio``.
    tensorboard: ``TENSORBOARD_LOGGING_DIR=output_dir/runs/<date>_<host>[-<run_name>]``.
    An environment variable the user set always wins. A Trainer gets the returned names through
    :func:`trainer_args`.

    Args:
        args: ``trl.GRPOConfig``, ``trl.SFTConfig`` or ``transformers.TrainingArguments``.
        native: refuse trackers the native backend does not implement.
        output_dir: the run directory the logs go under (default ``args.output_dir``).

    Returns:
        ``report_to`` as a list of integration names (:func:`requested`): the value to use instead of
        ``args.report_to`` (a comma-separated string, "all" or "none" is spelled out).

    Raises:
        UserError: an unknown tracker (native) or a tracker whose package is not installed.
    """
    report_to = requested(args.report_to, native)
    names = [n for n in report_to if n in TRACKERS]
    for name in names:  # each tracker's package has its name
        if importlib.util.find_spec(name) is None:
            raise UserError(f"report_to={name!r} needs the {name} package: pip install 'grpo-toolkit[tracking]' "
                            f"(or pip install {name}), or drop it from report_to")
    out = Path(output_dir or args.output_dir).resolve()
    if "wandb" in names:
        out.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
            log.warning("wandb: offline mode (neither WANDB_MODE nor WANDB_API_KEY is set), nothing is uploaded; "
                        "the run is written to %s/wandb/offline-run-*; upload it with `wandb sync <that dir>`, "
                        "or set WANDB_MODE=online to log live", out)
        _set_env("WANDB_DIR", str(out))
        _set_env("WANDB_PROJECT", str(getattr(args, "project", None) or "huggingface"))
    if "tensorboard" in names:  # else the HF Trainer's evaluate-before-train writes to ./runs (no output_dir yet)
        from transformers.integrations.integration_utils import default_logdir

        suffix = f"-{args.run_name}" if getattr(args, "run_name", None) else ""
        _set_env("TENSORBOARD_LOGGING_DIR", str(out / (default_logdir() + suffix)))
    if "trackio" in names:
        _set_env("TRACKIO_DIR", str(out / "trackio"))
        if "trackio" in sys.modules and str(sys.modules["trackio"].utils.TRACKIO_DIR) != os.environ["TRACKIO_DIR"]:
            log.warning("trackio was imported before this run was configured: its logs go to %s",
                        sys.modules["trackio"].utils.TRACKIO_DIR)
    return report_to


def trainer_args(args, report_to: list[str], push_to_hub: bool | None = None):
    """The arguments to hand a HF/TRL Trainer: a shallow copy of ``args`` (the parsed config stays as parsed)
    with ``report_to`` as :func:`configure` returned it and, on a TRL GRPOConfig with wandb or trackio,
    ``log_completions`` on (TRL's switch for the completions table) without console printing
    (``num_completions_to_print`` 0) unless the user set them. ``push_to_hub`` (when not None) overrides
    the Trainer's own push (the GRPO pipeline pushes the finished run itself: :func:`grpo.runs.publish.push_run`).
    """
    out = copy.copy(args)
    out.report_to = list(report_to)
    if push_to_hub is not None:
        out.push_to_hub = push_to_hub
    if {"wandb", "trackio"} & set(report_to) and hasattr(out, "log_completions") and not out.log_completions:
        out.log_completions = True
        if out.num_completions_to_print is None:
            out.num_completions_to_print = 0  # ... which would also print every completion to the console
    return out


def run_config(args, script_args=None) -> dict:
    """The config a tracker records: the training arguments, plus ``script_args`` (a dataclass) nested."""
    config = json.loads(json.dumps(args.to_dict(), default=str))
    if script_args is not None and dataclasses.is_dataclass(script_args):
        config["script_args"] = json.loads(json.dumps(dataclasses.asdict(script_args), default=str))
    return config


def _text(value) -> str:
    """A prompt or completion as text: chat messages become ``role: content`` lines."""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value)
    return str(value)


def completions_table(step: int, prompts, completions, rewards: dict, advantages) -> dict[str, list]:
    """Columns of the completions table, as TRL names them: step, prompt, completion, <reward>..., advantage.

    Args:
        prompts, completions: one entry per completion (text or chat messages).
        rewards: ``{reward name: [score per completion]}`` (NaN = not applicable).
        advantages: one float per completion.
    """
    n = len(completions)
    return {"step": [step] * n, "prompt": [_text(p) for p in prompts], "completion": [_text(c) for c in completions],
            **{name: [float(v) for v in values] for name, values in rewards.items()},
            "advantage": [float(a) for a in advantages]}


def _markdown(table: dict[str, list]) -> str:
    """A markdown table (tensorboard renders text summaries as markdown)."""
    def cell(v):
        text = f"{v:.3f}" if isinstance(v, float) else str(v)
        for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("\n", "<br>")):
            text = text.replace(raw, escaped)  # <answer> would otherwise vanish as an HTML tag
        return text
    rows = zip(*table.values())
    return "\n".join(["| " + " | ".join(table) + " |", "|" + " --- |" * len(table)]
                     + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


class Trackers:
    """The native backend's trackers (wandb, trackio, tensorboard), opened from ``report_to``.

    With no tracker requested (or off the main process) every method does nothing, so the training
    loop calls them unconditionally.
    """

    def __init__(self, names: list[str], args, config: dict):
        self.every = max(1, int(args.logging_steps))
        self.wandb = self.trackio = self.tensorboard = None
        out, name = Path(args.output_dir), args.run_name
        if "wandb" in names:
            import wandb

            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "huggingface"), name=name,
                                    dir=os.environ.get("WANDB_DIR", str(out)), config=config)
        if "trackio" in names:
            import trackio

            remote = {k: getattr(args, f"trackio_{k}", None) for k in ("space_id", "bucket_id")}  # set = asked to upload
            self.trackio = trackio.init(project=args.project, name=name, config=config,
                                        **{k: v for k, v in remote.items() if v})
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(os.environ["TENSORBOARD_LOGGING_DIR"])  # set by configure()
            self.tensorboard.add_text("args", json.dumps(config, indent=2))

    def log(self, step: int, metrics: dict) -> None:
        """Scalars at optimizer step ``step``, named as the HF Trainer reports TRL's metrics (``train/`` + name)."""
        from transformers.integrations.integration_utils import rewrite_logs

        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        prefixed = rewrite_logs(metrics)
        if self.wandb is not None:
            self.wandb.log({**prefixed, "train/global_step": step}, step=step)
        if self.trackio is not None:
            self.trackio.log({**prefixed, "train/global_step": step}, step=step)
        if self.tensorboard is not None:
            for k, v in prefixed.items():
                self.tensorboard.add_scalar(k, v, global_step=step)
            self.tensorboard.flush()

    def log_completions(self, step: int, prompts, completions, rewards: dict, advantages) -> None:
        """The completions table, when ``step`` is a multiple of ``logging_steps``.

        Args:
            prompts, completions: one entry per completion (text or chat messages).
            rewards: ``{reward name: [score per completion]}``, in reward order.
            advantages: (N,) tensor or list, one per completion.
        """
        if step % self.every or not (self.wandb or self.trackio or self.tensorboard):
            return
        table = completions_table(step, prompts, completions, rewards, [float(a) for a in advantages])
        if self.wandb is not None:
            import wandb

            self.wandb.log({"completions": wandb.Table(columns=list(table), data=[list(r) for r in zip(*table.values())])},
                           step=step)
        if self.trackio is not None:
            import pandas as pd
            import trackio

            self.trackio.log({"completions": trackio.Table(dataframe=pd.DataFrame(table))}, step=step)
        if self.tensorboard is not None:
            self.tensorboard.add_text("completions", _markdown(table), global_step=step)

    def finish(self) -> None:
        """Close every tracker (the wandb offline run directory is complete after this)."""
        if self.wandb is not None:
            self.wandb.finish()
        if self.trackio is not None:
            self.trackio.finish()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.wandb = self.trackio = self.tensorboard = None


def open_trackers(report_to: list[str], args, script_args=None, enabled: bool = True) -> Trackers:
    """The native backend's trackers (none when ``enabled`` is False: rank > 0).

    Args:
        report_to: what :func:`configure` returned for ``args`` (it has prepared the environment).
        args: the GRPOConfig (run name, project, logging_steps, output_dir; recorded as the run config).
        script_args: recorded in the run config too (a dataclass), or None.
    """
    names = [n for n in report_to if n in TRACKERS] if enabled else []
    return Trackers(names, args, run_config(args, script_args) if names else {})


def finish_wandb() -> None:
    """End the current wandb run, if any: the HF Trainer leaves it open, so a second stage would append to it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def trl_callback(script_args, names: list[str]):
    """A ``TrainerCallback`` (:class:`TrlExtras`) for the TRL backend, or None when nothing is tracked."""
    if not names:
        return None
    from transformers import TrainerCallback

    class TrlExtras(TrainerCallback):
        """What the HF/TRL callbacks leave out: ScriptArgs in the run config, the table in tensorboard.

        Runs after the Trainer's own reporting callbacks (added later), so their runs already exist.
        ``trainer`` is set by the caller after the trainer is built; ``trainer._logs`` is TRL's
        buffer of the last generation batch (prompt, completion, rewards, advantages).
        """

        trainer = None

        def _tensorboard(self):
            callbacks = self.trainer.callback_handler.callbacks if self.trainer is not None else []
            return next((c.tb_writer for c in callbacks if type(c).__name__ == "TensorBoardCallback"), None)

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero or script_args is None:
                return
            extra = run_config(args, script_args)["script_args"]
            wandb, trackio = sys.modules.get("wandb"), sys.modules.get("trackio")
            if "wandb" in names and wandb is not None and wandb.run is not None:
                wandb.run.config.update({"script_args": extra}, allow_val_change=True)
            if "trackio" in names and trackio is not None:
                run = trackio.context_vars.current_run.get()  # its config is written with the first log
                if run is not None:
                    run.config["script_args"] = extra
            writer = self._tensorboard() if "tensorboard" in names else None
            if writer is not None:
                writer.add_text("script_args", json.dumps(extra, indent=2))

        def on_log(self, args, state, control, logs=None, **kwargs):
            writer = self._tensorboard() if "tensorboard" in names and state.is_world_process_zero else None
            buffer = getattr(self.trainer, "_logs", None)
            if writer is None or not buffer or not buffer.get("prompt") or "reward" not in (logs or {}):
                return
            table = completions_table(state.global_step, buffer["prompt"], buffer["completion"],
                                      {k: list(v) for k, v in buffer["rewards"].items()}, buffer["advantages"])
            writer.add_text("completions", _markdown(table), global_step=state.global_step)
            writer.flush()

        def on_train_end(self, args, state, control, **kwargs):
            finish_wandb()  # the run directory is complete when train() returns

    return TrlExtras()
