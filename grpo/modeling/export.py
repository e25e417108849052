"""``grpo export``: merge a LoRA adapter into its base model and write a standalone checkpoint directory.

    grpo export --model runs/gsm8k/checkpoint/adapter --output_dir exports/gsm8k-merged
    grpo export --model runs/gsm8k --output_dir exports/gsm8k-merged --dtype bfloat16

``--model`` may be an adapter directory (``adapter_config.json``), a run directory (its
``checkpoint/adapter`` is used) or a run's ``checkpoint`` directory (likewise). The result holds
``config.json``, safetensors weights, the tokenizer, ``generation_config.json`` and a model card,
and loads with ``AutoModelForCausalLM.from_pretrained(output_dir)`` -- no peft, no base model needed.
A directory that is already a full model (``config.json``, no adapter beside it) is re-saved as is
(useful with ``--dtype``). The output directory is built under a temporary name and swapped in at
the end, so an interrupted export never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grpo.common.checkpoint_io import save_checkpoint
from grpo.common.errors import UserError
from grpo.modeling.models import adapter_base

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")


def find_source(path) -> tuple[Path, str]:
    """Classify ``path`` for export.

    Args:
        path: an adapter dir, a run dir, a run's ``checkpoint`` dir, or a full model dir.

    Returns:
        ``(directory, kind)`` where kind is ``"adapter"`` (merge needed) or ``"model"`` (a full
        checkpoint, re-saved).

    Raises:
        UserError: the path does not exist, or holds neither ``adapter_config.json`` nor ``config.json``.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"--model {str(path)!r} is not a directory; pass an adapter dir "
                        "(with adapter_config.json), a run dir or its checkpoint/ dir")
    for candidate in (path, path / "adapter", path / "checkpoint" / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate, "adapter"
    for candidate in (path, path / "checkpoint"):
        if (candidate / "config.json").is_file():
            return candidate, "model"
    raise UserError(f"--model {str(path)!r} is neither a LoRA adapter (no adapter_config.json) nor a model "
                    "checkpoint (no config.json), and has no checkpoint/ or adapter/ inside; pass a run's "
                    "checkpoint/adapter dir")


def _torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UserError(f"--dtype {name!r}: choose from {', '.join(DTYPES)}")
    return None if name == "auto" else getattr(torch, name)


def load_merged(source, dtype: str = "auto"):
    """Load ``source`` (see :func:`find_source`) as a plain transformers model with any adapter merged in.

    Args:
        source: adapter / run / checkpoint / model directory.
        dtype: ``auto`` (the checkpoint's own), ``float32``, ``bfloat16`` or ``float16``; the merge is
            done in this dtype.

    Returns:
        ``(model, tokenizer, info)``; ``info`` = ``{"source", "kind", "base"}`` for the model card.

    Raises:
        UserError: see :func:`find_source`, :func:`grpo.modeling.models.adapter_base`; an unknown dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, kind = find_source(source)
    torch_dtype = _torch_dtype(dtype)
    kwargs = {} if torch_dtype is None else {"dtype": torch_dtype}
    base = adapter_base(directory) if kind == "adapter" else str(directory)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        tokenizer_dir = directory if (directory / "tokenizer_config.json").is_file() else base
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except OSError as err:
        raise UserError(f"could not load the base model {base!r} of {directory} ({str(err).splitlines()[0][:160]})") from None
    if kind == "adapter":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
    info = {"source": str(directory), "kind": kind,
            "base": json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]
            if kind == "adapter" else str(directory)}
    return model, tokenizer, info


def export_card(info: dict, dtype: str, run_card: Path | None = None) -> str:
    """The exported checkpoint's README.md: what it was merged from, then the run's own card if there is one."""
    merged = "LoRA adapter merged into its base model" if info["kind"] == "adapter" else "re-saved checkpoint"
    text = (f"---\nlibrary_name: transformers\nbase_model: {info['base']}\ntags: [grpo, grpo-toolkit, merged]\n---\n"
            f"# Exported checkpoint\n\n{merged} by `grpo export` (dtype: {dtype}).\n\n"
            f"- source: `{info['source']}`\n- base model: `{info['base']}`\n\n"
            "Load with `AutoModelForCausalLM.from_pretrained(<this directory>)`; peft is not needed.\n")
    if run_card is not None and run_card.is_file():
        body = run_card.read_text().split("---\n", 2)[-1]  # drop the run card's own front matter
        body = "\n".join("##" + line if line.startswith("# ") or line.startswith("## ") else line
                         for line in body.splitlines())  # its headings nest under ours
        text += "\n## The training run\n\n" + body + "\n"
    return text


def export(source, output_dir, dtype: str = "auto") -> Path:
    """Merge and write a standalone checkpoint directory (atomically replaced if it exists).

    Args:
        source: adapter / run / checkpoint / model directory.
        output_dir: destination directory.
        dtype: see :func:`load_merged`.

    Returns:
        ``Path(output_dir)``.
    """
    model, tokenizer, info = load_merged(source, dtype)
    src = Path(info["source"])
    run_card = next((p for p in (src / "README.md", src.parent / "README.md", src.parent.parent / "README.md")
                     if p.is_file() and "grpo-toolkit" in p.read_text()), None)
    card = export_card(info, dtype, run_card).encode()
    dest = save_checkpoint(model, tokenizer, output_dir, extra_files={"README.md": card})
    logger.info("Exported %s (%s) -> %s", info["source"], info["kind"], dest)
    return dest
