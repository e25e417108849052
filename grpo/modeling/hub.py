"""Is the Hugging Face Hub usable? Decided up front, so an offline machine gets a one-line error
at once instead of a minute of retries inside ``huggingface_hub`` followed by a deep traceback.

Publishing a finished run to the hub is :mod:`grpo.runs.publish`.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from grpo.common.errors import UserError


def offline_flag() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``) asks for offline mode."""
    return any(os.environ.get(v, "0").lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection attempt to the hub endpoint (``HF_ENDPOINT`` honoured), cached per process."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(kind: str, spec: str, alternative: str) -> None:
    """Raise a :class:`UserError` naming ``spec`` and the offline ``alternative`` if the hub can't be used.

    Args:
        kind: "model" or "dataset", for the message.
        spec: the hub id the user asked for.
        alternative: what to use offline instead.
    """
    if offline_flag():
        raise UserError(f"{kind} {spec!r} is a hub id but HF_HUB_OFFLINE is set; use {alternative}")
    if not hub_reachable():
        raise UserError(f"{kind} {spec!r} is a hub id but the hub cannot be reached (offline?); use {alternative}")
