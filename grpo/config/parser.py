"""Config parsing: ``--config file.yaml`` plus ``--key value`` overrides into dataclasses, with clear errors.

``grpo train --config grpo/configs/gsm8k.yaml --learning_rate 1e-5`` reads the YAML into
``ScriptArgs`` (:mod:`grpo.config.script_args`: TRL's ``ModelConfig`` and ``ScriptArguments`` fields plus
ours) and ``trl.GRPOConfig``, which share one flat namespace, and applies ``--key value``
overrides. Unknown keys -- a typo in the YAML or on the command line -- are an error that names the
key and the closest known one. :func:`parse_dataclasses` is the one implementation, used by
:func:`parse_config` (``grpo train`` / ``grpo sft``) and by the supervised recipes
(``recipes._common.parse_args``).
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
from pathlib import Path

from grpo.common.errors import UserError

logger = logging.getLogger(__name__)

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


def command_line_keys(argv: list[str]) -> set[str]:
    """The config keys given as ``--key value`` / ``--key=value`` words (``--config`` itself excluded).

    >>> sorted(command_line_keys(["--config", "x.yaml", "--reward_funcs", "a", "--lr=1", "-v"]))
    ['lr', 'reward_funcs']
    """
    return {w[2:].split("=", 1)[0] for w in argv if w.startswith("--") and len(w) > 2} - {"config"}


def compose_overrides(argv: list[str], script_args, training_args) -> list[str]:
    """Settings of the ``--config`` file that a command-line ``--reward_funcs`` makes meaningless, reset.

    A config's ``reward_weights`` (one per reward) and ``reward_kwargs`` (``{spec: params}``) describe
    its own ``reward_funcs``. When the command line replaces ``reward_funcs`` without giving them too,
    weights of the wrong length go back to None (all 1.0) and the parameters of rewards no longer
    named are dropped -- each with an info line -- instead of failing at load time. Flags given on
    the command line are never changed (a mismatch there is the user's and
    :func:`grpo.cli.pipeline.load_reward_funcs` says which flag to fix).

    Returns:
        One line per reset, as logged.
    """
    given = command_line_keys(argv)
    if "reward_funcs" not in given or "--config" not in argv:
        return []
    notes, funcs = [], script_args.reward_funcs
    weights = training_args.reward_weights
    if "reward_weights" not in given and weights is not None and len(weights) != len(funcs):
        training_args.reward_weights = None
        notes.append(f"--reward_funcs {' '.join(funcs)} replaces the config's rewards: its reward_weights {weights} "
                     f"no longer match and are reset to 1.0 each (give --reward_weights to weight them)")
    kwargs = script_args.reward_kwargs or {}
    stale = sorted(set(kwargs) - set(funcs))
    if "reward_kwargs" not in given and stale:
        script_args.reward_kwargs = {k: v for k, v in kwargs.items() if k in funcs} or None
        notes.append(f"--reward_funcs {' '.join(funcs)} replaces the config's rewards: its reward_kwargs for "
                     f"{', '.join(stale)} are dropped (give --reward_kwargs to set parameters)")
    for note in notes:
        logger.info(note)
    return notes


def given_keys(argv: list[str]) -> frozenset[str]:
    """The config keys the user set: the ``--config`` YAML's keys and the ``--key`` flags (aliases resolved to
    TRL's names), so a backend can tell a chosen value from a default one. ``argv`` as :func:`parse_dataclasses` takes it."""
    import yaml

    from grpo.config.script_args import ALIASES

    keys = {k.replace("-", "_") for k in command_line_keys(argv)}
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        keys |= set(yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()) or {})
    return frozenset(ALIASES.get(k, k) for k in keys)


def check_ranges(training_args) -> None:
    """Refuse out-of-range counts in the training config, at parse time, for both backends.

    HF's Trainer reads any ``max_steps <= 0`` as "train ``num_train_epochs``", so a typo such as
    ``--max_steps -3`` would silently train whole epochs; only -1 (TrainingArguments' default) means that.
    The other counts must be positive (``save_total_limit``, ``seed`` and ``save_steps``: non-negative); ``None`` stays
    allowed where GRPOConfig allows it.

    Raises:
        UserError: naming the first bad field, its value and the valid range.
    """
    a = training_args
    if a.max_steps < -1 or a.max_steps == 0:
        raise UserError(f"max_steps={a.max_steps}: must be >= 1 (optimizer steps), or -1 to train num_train_epochs")
    positive = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_iterations", "steps_per_generation",
                "generation_batch_size", "ref_model_sync_steps", "num_train_epochs")
    for name in positive:
        value = getattr(a, name, None)
        if value is not None and value <= 0:
            raise UserError(f"{name}={value}: must be > 0")
    for name in ("save_total_limit", "seed", "save_steps"):  # save_steps 0: never (the native loop's reading)
        value = getattr(a, name, None)
        if value is not None and value < 0:
            raise UserError(f"{name}={value}: must be >= 0")


def parse_config(argv: list[str], dataclass_types):
    """``grpo train`` / ``grpo sft`` config: :func:`parse_dataclasses` with this machine's precision default.

    Without CUDA, ``bf16`` defaults to true only where bf16 matmuls are measured faster than fp32
    (AVX512-BF16 / AMX: ~2x; emulated elsewhere: ~3x slower), with ``use_cpu`` so that Trainer
    accepts it (GRPOConfig's own bf16 default needs a GPU); ``--bf16 false`` opts out.

    Args:
        argv: command-line words after the subcommand.
        dataclass_types: ``(ScriptArgs, trl.GRPOConfig)``.

    Returns:
        One instance per dataclass type, in order.

    Raises:
        UserError: see :func:`parse_dataclasses`.
    """
    import torch

    defaults = {}
    if not torch.cuda.is_available():
        from grpo.common.hardware import bf16_is_fast

        fast = bf16_is_fast()
        defaults = {"bf16": fast, **({"use_cpu": True} if fast else {})}
    return parse_dataclasses(argv, dataclass_types, defaults=defaults)


def parse_dataclasses(argv, dataclass_types, defaults: dict | None = None, search_dir=None) -> tuple:
    """Parse ``--config file.yaml`` then ``--key value`` flags into one instance per dataclass type.

    Precedence, lowest first: the dataclass defaults, ``defaults``, the YAML, the command line.
    Abbreviated flags (``--learning_rat``) are refused, not completed. The instances are returned as
    their ``__post_init__`` left them; nothing here changes them afterwards.

    Args:
        argv: command-line words without the program name (None = ``sys.argv[1:]``); not modified.
        dataclass_types: the dataclasses whose fields are the keys (``trl.TrlParser``).
        defaults: ``{field: value}`` replacing dataclass defaults, e.g. CPU-friendly training settings.
        search_dir: a relative ``--config`` path that does not exist from the CWD is looked up under
            this directory (``recipes/configs/x.yaml`` from anywhere).

    Returns:
        One instance per dataclass type, in order.

    Raises:
        UserError: a missing or unreadable YAML file; unknown keys in the YAML or on the command line
            (each with the closest known key); a value of the wrong type; a ``__post_init__`` refusal.
        ValueError: ``defaults`` names a key no dataclass has (a programming error).
    """
    import yaml
    from trl import TrlParser

    parser = TrlParser(dataclass_types)

    def fail(message):  # argparse would print the whole (very long) usage, then exit
        raise UserError(f"{message} (see --help)")

    parser.error = fail
    parser.allow_abbrev = False  # `--learning_rat` must be an error, not a silent learning_rate
    known = sorted({a.dest for a in parser._actions})
    if set(defaults or {}) - set(known):
        raise ValueError(f"defaults for unknown fields: {sorted(set(defaults) - set(known))}")
    parser.set_defaults(**(defaults or {}))
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        index = argv.index("--config")
        path = Path(argv[index + 1]) if index + 1 < len(argv) else Path("")
        if search_dir is not None and not path.is_file() and not path.is_absolute() and (Path(search_dir) / path).is_file():
            path = Path(search_dir) / path
        try:
            yaml.safe_load(path.read_text())
        except (FileNotFoundError, IsADirectoryError):
            raise UserError(f"config file {str(path)!r} does not exist") from None
        except yaml.YAMLError as err:
            raise UserError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
        argv[index + 1] = str(path)
    try:
        return tuple(parser.parse_args_and_config(argv, fail_with_unknown_args=True))
    except UserError:
        raise
    except (ValueError, TypeError) as err:  # TrlParser: unknown keys; dataclasses: __post_init__ refusals
        if "bf16/gpu" in str(err):
            raise UserError("bf16: true needs a CUDA GPU and none was found; set --bf16 false "
                            "(or --use_cpu true for bf16 autocast on CPU)") from None
        raise UserError(_explain_unknown(str(err), known)) from None


def _explain_unknown(message: str, known: list[str]) -> str:
    """Turn TrlParser/HfArgumentParser messages about unknown keys into 'unknown config key X (did you mean Y?)'."""
    keys = re.findall(r"--([A-Za-z0-9_\-]+)", message)
    unknown = [k for k in keys if k not in known]
    if not unknown:
        return message.splitlines()[0]
    hints = []
    for key in dict.fromkeys(unknown):
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return "unknown config key " + ", ".join(hints)
