"""Atomic writes: JSON/text files and checkpoint directories appear complete or not at all.

One writer for every checkpoint the toolkit saves -- a GRPO run's ``checkpoint/``, the native
backend's ``checkpoint-N/``, ``checkpoint-interrupted/``, the warm-start ``sft_checkpoint/``,
``grpo export``'s output and the supervised recipes' ``output_dir`` -- so they share one rule
for what happens to a directory that already exists (:func:`save_checkpoint`).

Each file or directory is first written under a temporary name beside its destination, then
moved into place with ``os.replace``; a crash or Ctrl-C midway leaves the previous version as it
was and no temporary entry behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path, directory: bool = False) -> None:
    """Give a temp file/dir the permissions a normal file gets (mkstemp/mkdtemp make them private)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _jsonable(value):
    if hasattr(value, "item"):  # tensor / numpy scalar
        return value.item()
    return str(value)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temp file beside it + ``os.replace``.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; tensors and numpy scalars become numbers.

    Returns:
        ``Path(path)``.

    Raises:
        Whatever serialising ``obj`` raises; ``path`` is then left as it was.
    """
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _write_entry(target: Path, content) -> None:
    """One extra file of a checkpoint: bytes, text, ``callable(path)`` (writes it itself) or JSON-able."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if callable(content):
        content(target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    elif isinstance(content, str):
        target.write_text(content, encoding="utf-8")
    else:
        target.write_text(json.dumps(content, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def save_checkpoint(model, tokenizer, dest_dir, extra_files: dict | None = None, replace: bool = False) -> Path:
    """Save ``model`` (+ tokenizer, extra files) to ``dest_dir`` atomically, so ``from_pretrained(dest_dir)`` reloads it.

    The checkpoint is built in a temp dir beside ``dest_dir`` and swapped in by ``os.replace``.
    If ``dest_dir`` already exists, the new save replaces the entries it writes itself (weights,
    config, tokenizer files, ``extra_files``; a directory entry is replaced as a whole) and keeps
    every other entry (a Trainer's ``checkpoint-*`` dirs, logs, files the user put there): the
    writer never deletes what it did not write. Files left by an earlier save that this one does
    not write (say ``adapter/`` of an earlier LoRA run, or the shards of a larger model) therefore
    stay too -- unless ``replace``: then ``dest_dir`` is swapped for the new checkpoint as a whole,
    which is what a directory this toolkit owns wants (a run's ``checkpoint``, ``checkpoint-N``,
    ``sft_checkpoint``, ``checkpoint-interrupted``).

    Args:
        model: anything with ``save_pretrained`` (a peft model saves its adapter).
        tokenizer: saved beside the weights (None to skip).
        dest_dir: the checkpoint directory (created with its parents).
        extra_files: ``{relative_name: content}`` written inside the checkpoint; content is
            ``bytes``, ``str`` (UTF-8), a ``callable(path)`` that writes ``path`` itself, or a JSON-able object.
        replace: drop every entry of an existing ``dest_dir`` (once the new checkpoint is complete).

    Returns:
        ``Path(dest_dir)``.

    Raises:
        Whatever saving raises (``KeyboardInterrupt`` included); ``dest_dir`` is then left as it was.
    """
    dest = Path(dest_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    public_mode(tmp, directory=True)
    old, kept, swapped = dest.with_name(f".{dest.name}.old-{os.getpid()}"), [], False
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            _write_entry(tmp / name, content)
        if dest.exists():
            for entry in [] if replace else dest.iterdir():
                if not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
                    kept.append(entry.name)
            os.replace(dest, old)
        os.replace(tmp, dest)
        swapped = True
    except BaseException:
        if not swapped:  # give back what was moved out of dest, then drop the half-built checkpoint
            if old.exists() and not dest.exists():
                os.replace(old, dest)
            for name in kept:
                os.replace(tmp / name, dest / name)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if swapped:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("saved checkpoint to %s", dest)
    return dest
