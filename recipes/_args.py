"""``RecipeArgs``: the arguments every supervised recipe shares, under the Hugging Face example scripts' names.

The fields ``model_name_or_path``, ``dataset_name``, ``eval_dataset``, ``eval_fraction``, ``max_train_samples`` and
``max_eval_samples`` are declared once here; a recipe's argument class subclasses :class:`RecipeArgs`, re-declares
a field only to change its default or help, and adds its own task fields. The names the recipes used first,
``model`` and ``dataset``, stay accepted as aliases (YAML keys and ``--flags``): :meth:`RecipeArgs.__post_init__`
moves an alias's value onto its field and leaves the alias None, as :class:`grpo.config.script_args.ScriptArgs`
does for the GRPO config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import embedded_models
from grpo.common.errors import UserError

# old name -> the Hugging Face example scripts' name
ALIASES = {"model": "model_name_or_path", "dataset": "dataset_name"}


def _alias_help(name: str) -> dict:
    return {"help": f"Alias of {ALIASES[name]}, for older configs; giving both with different values is an error."}


@dataclass
class RecipeArgs:
    # Model
    model_name_or_path: str = field(default=embedded_models.SMOLLM2, metadata={
        "help": "Model spec: a hub id, a local checkpoint dir or embedded:*."})
    # Data
    dataset_name: str = field(default="", metadata={
        "help": "Train data: a pkg: source (recipes/sources), a local .jsonl/.json/.csv/.parquet or a hub id."})
    eval_dataset: str = field(default="", metadata={
        "help": "Eval data (same schema); empty = a pkg: source's validation split, a hub dataset's eval_split, "
                "or eval_fraction of a local file."})
    eval_fraction: float = field(default=0.1, metadata={
        "help": "Share of a local train file held out for eval when eval_dataset is empty."})
    max_train_samples: int = field(default=0, metadata={"help": "Keep the first N train rows (0 = all)."})
    max_eval_samples: int = field(default=0, metadata={"help": "Keep the first N eval rows (0 = all)."})
    # Aliases (older configs)
    model: str | None = field(default=None, metadata=_alias_help("model"))
    dataset: str | None = field(default=None, metadata=_alias_help("dataset"))

    def __post_init__(self):
        """Resolve :data:`ALIASES`.

        Raises:
            UserError: an alias and its field both set away from the default, to different values.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for alias, name in ALIASES.items():
            value = getattr(self, alias)
            if value is None:
                continue
            current = getattr(self, name)
            if current != defaults[name] and current != value:
                raise UserError(f"{alias}={value!r} and {name}={current!r} disagree: {alias} is an alias of {name}; "
                                f"give only {name}")
            setattr(self, name, value)
            setattr(self, alias, None)
