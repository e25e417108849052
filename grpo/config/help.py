"""``grpo train --help`` / ``grpo sft --help``: the options a person reads first, in under two seconds.

``ScriptArgs`` + ``trl.GRPOConfig`` have ~240 fields, and importing TRL takes several seconds (it
imports torch, transformers and peft), so the short help reads its fields from ``help_fields.json``:
a snapshot of the two groups shown first -- the toolkit's own options (:class:`ScriptArgs`) and the
most-used TRL fields (:data:`MOST_USED`) -- with their type, default and help text as the installed
TRL declares them. ``--help-all`` imports the dataclasses and lists every field. The snapshot is
rewritten with ``python -m grpo.config.help`` and a test checks it against the installed classes.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("help_fields.json")

# TRL's fields a GRPO run sets most often (trl.GRPOConfig, and trl.ModelConfig's LoRA / 4-bit ones), in this order.
MOST_USED = ["output_dir", "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size",
             "gradient_accumulation_steps", "num_generations", "max_completion_length", "temperature", "beta",
             "epsilon", "loss_type", "scale_rewards", "reward_weights", "num_iterations", "warmup_steps",
             "lr_scheduler_type", "logging_steps", "save_steps", "seed", "bf16", "gradient_checkpointing",
             "use_vllm", "report_to", "resume_from_checkpoint", "push_to_hub", "hub_model_id",
             "lora_r", "lora_alpha", "lora_dropout", "load_in_4bit"]
# The toolkit's options in reading order (the rest of ScriptArgs' own fields follow in declaration order)
TOOLKIT_FIRST = ["model_name_or_path", "dataset_name", "reward_funcs", "reward_kwargs", "backend", "warm_start",
                 "eval_size", "eval_dataset", "periodic_eval_steps", "train_limit", "prompt_format"]
# ScriptArgs fields kept for older configs only; listed under --help-all
_ALIASES = {"model", "use_lora", "dataset", "dataset_split"}
COMMAND_OPTIONS = [
    ("--config FILE.yaml", "YAML file of `key: value` settings (e.g. grpo/configs/gsm8k.yaml); flags given on the "
                           "command line override its values. Without it every field keeps the default shown."),
    ("--verbose", "Show library progress bars (model loading, dataset maps) and their info messages."),
    ("-h, --help", "This help: the toolkit's options, then the most-used TRL fields."),
    ("--help-all", "Every field (all of trl.GRPOConfig and transformers.TrainingArguments), with full help texts."),
]
DESCRIPTIONS = {
    "train": "GRPO on GSM8K-format data with the rewards you name: optional warm-start SFT, GRPO (native loop or "
             "trl.GRPOTrainer), greedy evaluation before and after, a run directory with checkpoint, metrics, "
             "curves and model card.",
    "sft": "The warm-start stage of `grpo train` alone: supervised fine-tuning on solutions rewritten into the "
           "target format, evaluated before and after.",
}


def _type_name(annotation) -> str:
    """``int``, ``list[str]``, ``SchedulerType|str``: the field's type without None, from the resolved annotation."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_name(a) for a in args if a is not type(None))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{','.join(_type_name(a) for a in args)}]"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def field_entries(dataclass_types, own_cls=None) -> list[dict]:
    """One ``{"name", "type", "default", "help", "owner"}`` per init field of the dataclasses, first occurrence wins.

    ``owner`` is ``"toolkit"`` for a field ``own_cls`` (default :class:`grpo.config.script_args.ScriptArgs`) or one
    of its bases in the same top-level package declares, else the name of the TRL / transformers class that
    declares it.
    """
    import dataclasses
    import typing

    from grpo.config.script_args import DEFAULTS, ScriptArgs

    own_cls = own_cls or ScriptArgs
    package = own_cls.__module__.split(".")[0]  # a recipe's argument class and its bases in recipes/ are all ours
    own = {name for c in own_cls.__mro__ if c.__module__.split(".")[0] == package
           for name in c.__dict__.get("__annotations__", {})}
    entries, seen = [], set()
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in seen or f.name.startswith("_"):
                continue
            seen.add(f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            default = DEFAULTS.get(f.name, default) if cls is ScriptArgs else default  # filled in by __post_init__
            owner = "toolkit" if cls is own_cls and f.name in own else next(
                (c.__name__ for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {})), cls.__name__)
            entries.append({"name": f.name, "type": _type_name(hints.get(f.name, f.type)), "owner": owner,
                            "default": default if isinstance(default, (str, int, float, bool, list, dict, type(None)))
                            else str(default),
                            "help": " ".join(str(f.metadata.get("help", "")).replace("%%", "%").split())})
    return entries


def short_entries(entries: list[dict]) -> list[dict]:
    """The snapshot's entries: the toolkit's own options (without the old aliases), then :data:`MOST_USED`."""
    by_name = {e["name"]: e for e in entries}
    return _toolkit(entries) + [by_name[n] for n in MOST_USED if n in by_name]


def _toolkit(entries: list[dict]) -> list[dict]:
    """ScriptArgs' own fields, :data:`TOOLKIT_FIRST` first, without the old aliases."""
    own = [e for e in entries if e["owner"] == "toolkit" and e["name"] not in _ALIASES]
    rank = {name: i for i, name in enumerate(TOOLKIT_FIRST)}
    return sorted(own, key=lambda e: rank.get(e["name"], len(rank)))


def write_snapshot() -> Path:
    """Rewrite :data:`SNAPSHOT` from the installed classes (``python -m grpo.config.help``)."""
    from trl import GRPOConfig

    from grpo.config.script_args import ScriptArgs

    SNAPSHOT.write_text(json.dumps(short_entries(field_entries((ScriptArgs, GRPOConfig))), indent=1) + "\n")
    return SNAPSHOT


def _first_sentence(text: str, limit: int = 200) -> str:
    match = re.search(r"(?<!e\.g)(?<!i\.e)[.;:] [A-Z(]", text)
    text = text[:match.start()].rstrip(".;:") + "." if match else text
    return text if len(text) <= limit else text[:limit - 3].rsplit(" ", 1)[0] + " ..."


def _option(name: str, text: str, width: int, indent: int = 34) -> str:
    head = f"  {name}"
    head = head + " " * (indent - len(head)) if len(head) < indent - 1 else head + "\n" + " " * indent
    body = textwrap.wrap(text, max(40, width - indent)) or [""]
    return head + ("\n" + " " * indent).join(body)


def _field_line(e: dict, width: int, full: bool) -> str:
    metavar = " [BOOL]" if e["type"] == "bool" else " " + e["type"].upper().replace(" ", "")
    default = json.dumps(e["default"]) if not isinstance(e["default"], str) else e["default"]
    text = (e["help"] if full else _first_sentence(e["help"])) or "(no help text)"
    return _option(f"--{e['name']}{metavar}", f"{text} [default: {default}]", width)


def format_help(command: str, full: bool = False, width: int | None = None) -> str:
    """The help text of ``grpo COMMAND`` (``train`` or ``sft``).

    Args:
        command: ``"train"`` or ``"sft"``.
        full: every field with its whole help text (imports TRL: several seconds), else the snapshot's
            two groups with the first sentence of each help text (no TRL import).
        width: wrap width (default: the terminal's, at most 110).
    """
    width = width or min(110, shutil.get_terminal_size((100, 24)).columns)
    if full:
        from trl import GRPOConfig

        from grpo.config.script_args import ScriptArgs

        entries = field_entries((ScriptArgs, GRPOConfig))
    else:
        entries = json.loads(SNAPSHOT.read_text())
    by_name = {e["name"]: e for e in entries}
    toolkit = _toolkit(entries)
    most_used = [by_name[n] for n in MOST_USED if n in by_name]
    shown = {e["name"] for e in toolkit + most_used}
    groups = [("grpo-toolkit options (ScriptArgs)", toolkit),
              ("most-used TRL options (trl.GRPOConfig, trl.ModelConfig)", most_used)]
    if full:
        groups.append(("all other options (trl.ModelConfig, trl.GRPOConfig, transformers.TrainingArguments)",
                       sorted((e for e in entries if e["name"] not in shown), key=lambda e: e["name"])))
    lines = [f"usage: grpo {command} [--config FILE.yaml] [--key value ...]", "",
             textwrap.fill(DESCRIPTIONS[command], width), "",
             "Any option can also be a key of the --config file. Lists: --reward_funcs a b (or a,b); "
             "booleans: --warm_start true.", "", "command options:"]
    lines += [_option(name, text, width) for name, text in COMMAND_OPTIONS]
    for title, group in groups:
        lines += ["", f"{title}:"] + [_field_line(e, width, full) for e in group]
    if not full:
        lines += ["", f"{len(toolkit) + len(most_used)} of the options are shown; `grpo {command} --help-all` lists "
                      "all of them (~240) with their full help text."]
    return "\n".join(lines)


# transformers.TrainingArguments fields a supervised recipe sets most often, in this order
RECIPE_MOST_USED = ["output_dir", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                    "per_device_eval_batch_size", "gradient_accumulation_steps", "warmup_steps", "weight_decay",
                    "logging_steps", "eval_strategy", "save_strategy", "seed", "bf16", "report_to", "push_to_hub",
                    "hub_model_id", "resume_from_checkpoint"]


def format_recipe_help(name: str, args_cls, training_cls, full: bool = False, width: int | None = None) -> str:
    """The help text of ``grpo recipe NAME``: the recipe's own options, the most-used Trainer fields, the rest
    with ``full`` (``--help-all``).

    Args:
        name: the recipe name. args_cls: its ``@dataclass <Task>Args``. training_cls: its TrainingArguments class.
    """
    import sys

    width = width or min(110, shutil.get_terminal_size((100, 24)).columns)
    entries = field_entries((args_cls, training_cls), own_cls=args_cls)
    by_name = {e["name"]: e for e in entries}
    own = [e for e in entries if e["owner"] == "toolkit"]
    most_used = [by_name[n] for n in RECIPE_MOST_USED if n in by_name and by_name[n]["owner"] != "toolkit"]
    shown = {e["name"] for e in own + most_used}
    doc = (sys.modules[args_cls.__module__].__doc__ or "").strip().split("\n\n")[0]
    groups = [(f"{name} options ({args_cls.__name__})", own),
              (f"most-used Trainer options ({training_cls.__name__})", most_used)]
    if full:
        groups.append((f"all other options ({training_cls.__name__})",
                       sorted((e for e in entries if e["name"] not in shown), key=lambda e: e["name"])))
    lines = [f"usage: grpo recipe {name} [--config recipes/configs/{name}.yaml] [--key value ...]", "",
             textwrap.fill(" ".join(doc.split()), width), "", "command options:"]
    lines += [_option(n, t, width) for n, t in [
        ("--config FILE.yaml", f"YAML file of `key: value` settings (e.g. recipes/configs/{name}.yaml); flags given "
                               f"on the command line override its values."),
        ("-h, --help", "This help: the recipe's options, then the most-used Trainer fields."),
        ("--help-all", f"Every field of {args_cls.__name__} and {training_cls.__name__}, with full help texts.")]]
    for title, group in groups:
        lines += ["", f"{title}:"] + [_field_line(e, width, full) for e in group]
    if not full:
        lines += ["", f"{len(shown)} of the options are shown; `grpo recipe {name} --help-all` lists all of them."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"wrote {write_snapshot()}")
