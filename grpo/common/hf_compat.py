"""The one place that knows how transformers names its KV cache argument across releases.

transformers 5.24 renamed the cache keyword of every model's ``forward`` from ``past_key_values``
to ``cache`` (the old name still works until 5.40, with a warning on every call) and the output
field likewise (``out.cache``, with a ``past_key_values`` property kept for compatibility). Code
that hands a cache to a transformers model asks here which name the installed release reads, so
it runs warning-free on 5.23 and 5.24 alike.
"""

from __future__ import annotations

import functools
import inspect

__all__ = ["cache_kwargs", "output_cache"]


@functools.cache
def _cache_keyword(forward_owner: type) -> str:
    parameters = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` for ``model(...)``, ``name`` being the cache keyword its forward declares.

    Args:
        model: a transformers model, or a peft wrapper of one (its base model's forward decides).
        cache: a ``transformers.Cache`` (or None).

    Returns:
        ``{"cache": cache}`` on transformers >= 5.24, ``{"past_key_values": cache}`` before.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_keyword(type(base)): cache}


def output_cache(output):
    """The KV cache a forward returned: ``output.cache`` (>= 5.24) or ``output.past_key_values``."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
