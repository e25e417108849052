"""The reward registry: names -> factories, and spec resolution.

* ``names()`` lists built-in and user-registered rewards; ``get(name, **params)`` builds one.
  The registry is lazy: built-ins are stored as ``"module:attribute"`` strings and imported
  only when asked for, so ``import rewards`` costs milliseconds and never imports torch.
* ``@register("name")`` adds a user reward: either a reward function (it has a
  ``completions`` parameter; ``get`` returns it, with any params bound as keywords) or a
  factory (a class or function taking parameters and returning a reward function).
* ``resolve(spec)`` accepts a registry name, ``path/to/file.py:function`` or
  ``package.module:function`` -- the forms ``--reward_funcs`` / ``reward_funcs:`` take.

Calling a reward under its contract (``call_reward``, ``checked``) is :mod:`rewards.calling`.

Try: ``grpo rewards list``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from rewards.errors import RewardConfigError, RewardError, UnknownRewardError
from rewards.groups import is_group_aware

logger = logging.getLogger(__name__)

__all__ = ["register", "get", "names", "canonical", "aliases", "resolve", "describe"]

# name -> "module:attribute"; imported on first use. One name per reward: the registry name is the reward's
# ``__name__``, so the logged metric is ``rewards/<registry name>/mean``; TRL's and open-r1's names where they have one.
BUILTIN = {
    "xmlcount_reward": "rewards.formats:XmlCount",
    "soft_format_reward": "rewards.formats:SoftFormat",
    "strict_format_reward": "rewards.formats:StrictFormat",
    "think_format_reward": "rewards.formats:ThinkFormat",
    "code_format_reward": "rewards.formats:CodeFormat",
    "reasoning_steps_reward": "rewards.formats:ReasoningSteps",
    "arithmetic_steps_reward": "rewards.reasoning:ArithmeticSteps",
    "int_reward": "rewards.numeric:IntegerAnswer",
    "number_reward": "rewards.numeric:NumberAnswer",
    "accuracy_reward": "rewards.correctness:Correctness",
    "length_reward": "rewards.length:Length",
    "cosine_scaled_reward": "rewards.length:CosineLength",
    "soft_overlong_punishment": "rewards.length:OverlongPunishment",
    "len_reward": "rewards.length:GroupLength",
    "repetition_penalty_reward": "rewards.repetition:RepetitionPenalty",
    "reward_model_reward": "rewards.reward_model:RewardModel",
    "code_reward": "rewards.code_execution:CodeExecution",
    "chrf_reward": "rewards.reference:Chrf",
    "bleu_reward": "rewards.reference:Bleu",
    "rouge_reward": "rewards.reference:Rouge",
    "placeholders_kept_reward": "rewards.reference:PlaceholdersKept",
    "identifiers_kept_reward": "rewards.reference:IdentifiersKept",
    "copy_source_penalty": "rewards.reference:CopySource",
}
# Other names that select a built-in reward (configs and commands written with them keep working): the short
# names this package used first, and open-r1's registry names where they differ. ``grpo rewards list`` shows them.
ALIASES = {
    "xml_count": "xmlcount_reward",
    "soft_format": "soft_format_reward",
    "strict_format": "strict_format_reward",
    "think_format": "think_format_reward",
    "code_format": "code_format_reward",
    "reasoning_steps": "reasoning_steps_reward",
    "arithmetic_steps": "arithmetic_steps_reward",
    "integer_answer": "int_reward",
    "number_answer": "number_reward",
    "correctness": "accuracy_reward",
    "accuracy": "accuracy_reward",
    "length": "length_reward",
    "cosine_length": "cosine_scaled_reward",
    "cosine": "cosine_scaled_reward",
    "overlong": "soft_overlong_punishment",
    "group_length": "len_reward",
    "repetition": "repetition_penalty_reward",
    "repetition_penalty": "repetition_penalty_reward",
    "reward_model": "reward_model_reward",
    "code_execution": "code_reward",
    "code": "code_reward",
    "chrf": "chrf_reward",
    "bleu": "bleu_reward",
    "rouge": "rouge_reward",
    "placeholders_kept": "placeholders_kept_reward",
    "identifiers_kept": "identifiers_kept_reward",
    "copy_source": "copy_source_penalty",
}
_USER: dict[str, Callable] = {}


def _is_reward_function(obj: Any) -> bool:
    """A reward function takes ``completions``; anything else callable is treated as a factory."""
    if inspect.isclass(obj):
        return False
    try:
        return "completions" in inspect.signature(obj).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def register(name: str, obj: Callable | None = None, *, overwrite: bool = False):
    """Register a reward function or factory under ``name``; usable as ``@register("name")``.

    Raises:
        RewardConfigError: ``name`` is taken by a different object (pass ``overwrite=True``).

    >>> from rewards.text import completion_text
    >>> @register("doc_example_reward", overwrite=True)
    ... def shouty(completions, **kwargs):
    ...     return [1.0 if completion_text(c).isupper() else 0.0 for c in completions]
    >>> get("doc_example_reward")(["HI", "hi"])
    [1.0, 0.0]
    """

    def decorator(target: Callable) -> Callable:
        if not callable(target):
            raise RewardConfigError(f"register({name!r}): {target!r} is not callable")
        previous = _USER.get(name)
        # Re-running a module's @register (a re-import) is fine; a different object is a clash.
        same = previous is target or (previous is not None and _qualname(previous) == _qualname(target)
                                      and "<" not in _qualname(target))
        if (name in BUILTIN or name in ALIASES or previous is not None) and not (overwrite or same):
            raise RewardConfigError(f"reward name {name!r} is already registered; "
                                    f"pick another name or pass overwrite=True")
        _USER[name] = target
        return target

    return decorator if obj is None else decorator(obj)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


def names() -> list[str]:
    """All registered reward names (one per reward; :data:`ALIASES` not included), sorted.

    >>> {"accuracy_reward", "xmlcount_reward", "strict_format_reward"} <= set(names())
    True
    """
    return sorted(set(BUILTIN) | set(_USER))


def canonical(name: str) -> str:
    """The registry name ``name`` stands for: itself, or the built-in an alias names (a user registration wins).

    >>> canonical("correctness")
    'accuracy_reward'
    """
    return name if name in _USER else ALIASES.get(name, name)


def aliases(name: str) -> list[str]:
    """The other names that select reward ``name``, sorted (empty for a user registration)."""
    return [] if name in _USER else sorted(a for a, target in ALIASES.items() if target == name)


def _entry(name: str) -> Callable:
    """The factory or function registered under ``name`` (a registry name: callers pass :func:`canonical` names)."""
    if name in _USER:
        return _USER[name]
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise _unknown(name)


def _unknown(spec: str) -> UnknownRewardError:
    close = difflib.get_close_matches(spec, names() + sorted(ALIASES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UnknownRewardError(f"unknown reward {spec!r}{hint}; known rewards: {', '.join(names())} (aliases: "
                              f"{', '.join(sorted(ALIASES))}); or give 'path/to/file.py:function' or "
                              f"'package.module:function'")


def _build(obj: Callable, params: dict, label: str) -> Callable:
    """Turn a registry entry / loaded attribute into a reward function, binding ``params``."""
    if _is_reward_function(obj):
        if not params:
            return obj
        bound = functools.partial(obj, **params)
        bound.__name__ = getattr(obj, "__name__", label)
        return bound
    try:
        inspect.signature(obj).bind(**params)
    except TypeError:
        accepted = ", ".join(describe_params(obj)) or "none"
        raise RewardConfigError(f"reward {label!r}: bad parameters {sorted(params)} (accepted: {accepted})") from None
    except ValueError:  # no signature available: let the call decide
        pass
    fn = obj(**params)
    if not callable(fn):
        raise RewardConfigError(f"reward {label!r}: factory returned {type(fn).__name__}, not a reward function")
    if not hasattr(fn, "__name__"):
        try:
            fn.__name__ = label
        except AttributeError:
            pass
    return fn


def get(name: str, /, **params) -> Callable:
    """Build the reward registered as ``name`` with ``params``.

    Raises:
        UnknownRewardError: no such name (message lists the known names).
        RewardConfigError: a parameter the factory does not accept or rejects.

    A built-in's ``__name__`` (its logged metric) is its registry name, for an alias too, unless ``params`` names
    another (``name=...``).

    >>> get("correctness", correct=1.0).__name__
    'accuracy_reward'
    """
    name = canonical(name)
    return _build(_entry(name), params, name)


def describe_params(obj: Callable) -> dict[str, Any]:
    """Parameter name -> default (``inspect.Parameter.empty`` when required) of a factory."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ("completions", "prompts")}


def describe(name: str) -> dict[str, Any]:
    """``{"name", "params", "doc": first docstring line, "source", "group_aware"}`` for ``grpo rewards list``."""
    name = canonical(name)
    obj = _entry(name)
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    params = {} if _is_reward_function(obj) else describe_params(obj)
    if name in BUILTIN and name not in _USER:
        params = {k: v for k, v in params.items() if k != "name"}  # the registry name; set name= to log another
    return {"name": name, "aliases": aliases(name), "params": params, "doc": doc[0] if doc else "",
            "source": BUILTIN.get(name) or _qualname(obj), "group_aware": is_group_aware(obj)}


def _load_file(path: str, spec: str):
    if not os.path.isfile(path):
        raise UnknownRewardError(f"reward spec {spec!r}: file {path!r} does not exist")
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    module_name = f"_reward_file_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UnknownRewardError(f"reward spec {spec!r}: {path!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # so functions defined there pickle by reference
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # user code: any error while importing it is reported, not swallowed
        del sys.modules[module_name]
        raise RewardError(f"reward spec {spec!r}: importing {path} failed: {type(err).__name__}: {err}") from err
    return module


def resolve(spec: str, /, **params) -> Callable:
    """A reward function from a spec: registry name, ``file.py:function`` or ``pkg.module:function``.

    Args:
        spec: the spec string.
        params: factory parameters (for registry names, and for factories loaded from a spec).

    Raises:
        UnknownRewardError: unknown name, missing file/module/attribute (lists what exists).
        RewardError: the user file fails to import.

    >>> resolve("xml_count").__name__
    'xmlcount_reward'
    >>> resolve("rewards.formats:StrictFormat").__name__
    'strict_format_reward'
    """
    spec = spec.strip()
    if spec in _USER or spec in BUILTIN or spec in ALIASES:
        return get(spec, **params)
    if ":" not in spec:
        raise _unknown(spec)
    where, _, attr = spec.rpartition(":")
    if not attr.isidentifier():
        raise UnknownRewardError(f"reward spec {spec!r}: {attr!r} is not a function name")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _load_file(where, spec)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise UnknownRewardError(f"reward spec {spec!r}: no module named {err.name!r}") from None
    if not hasattr(module, attr):
        available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UnknownRewardError(f"reward spec {spec!r}: {where} has no attribute {attr!r} "
                                 f"(callables there: {', '.join(available) or 'none'})")
    return _build(getattr(module, attr), params, attr)
