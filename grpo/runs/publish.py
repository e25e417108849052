"""Publish a finished run to the Hugging Face Hub.

``push_to_hub`` of a finished run (``grpo train --push_to_hub true`` at the end, or
``grpo push RUN_DIR --hub_model_id user/name`` later) plans the adapter and the merged checkpoint with
the run's model card and reports, and uploads each in one commit with ``huggingface_hub.HfApi``
(nothing is copied: the commit reads the run directory's files). Whether the hub is usable at all is
:mod:`grpo.modeling.hub`.
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo.common.errors import UserError
from grpo.modeling.hub import hub_reachable, offline_flag


def push_later_hint(run_dir, hub_model_id: str | None) -> str:
    """The command that pushes ``run_dir`` once the hub is usable (quoted in every push error)."""
    return f"grpo push {run_dir} --hub_model_id {hub_model_id or '<user>/<repo>'}"


def require_push(hub_model_id: str | None, token: str | None, run_dir) -> None:
    """Fail fast, before any training, when ``push_to_hub`` cannot succeed at the end.

    Checks offline mode, that the hub endpoint answers (3 s probe) and that a write token exists
    (``--hub_token``, ``HF_TOKEN`` or ``hf auth login``). The token is only checked for
    presence, never read or printed.

    Raises:
        UserError: naming the problem, how to train without pushing, and how to push later.
    """
    later = f"or train without --push_to_hub and push afterwards with `{push_later_hint(run_dir, hub_model_id)}`"
    if offline_flag():
        raise UserError(f"push_to_hub is set but HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE, {later}")
    if not hub_reachable():
        raise UserError(f"push_to_hub is set but the hub cannot be reached (offline?); {later}")
    if token is None:
        from huggingface_hub import get_token

        if get_token() is None:
            raise UserError("push_to_hub is set but no Hugging Face token was found; run `hf auth login`, "
                            f"set HF_TOKEN or pass --hub_token, {later}")


def _files(folder: Path, skip=()) -> dict:
    """``{path in repo: local file}`` for every file under ``folder`` (hidden names and ``skip`` left out)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") or part in skip for part in p.relative_to(folder).parts)}


RUN_FILES = ("README.md", "eval_before.json", "eval_after_sft.json", "eval_after.json", "metrics.jsonl", "curves.png")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


def plan_run_upload(run_dir, push_merged: bool = True) -> dict:
    """What a run's push uploads, without copying anything: ``{kind: {path in repo: Path | bytes}}``.

    * ``adapter`` -- ``checkpoint/adapter`` (adapter_config.json + weights), the tokenizer, and the
      run's model card (with ``library_name: peft``), eval reports, metrics.jsonl and curves.png.
    * ``merged`` -- ``checkpoint/`` without ``adapter/`` (a standalone transformers checkpoint) plus
      the same card and reports. Only with ``push_merged``, or when the run trained all weights.

    Args:
        run_dir: a finished ``grpo train`` output directory.
        push_merged: also plan the merged checkpoint when there is an adapter.

    Raises:
        UserError: ``run_dir`` has no finished ``checkpoint/``.
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoint"
    if not (checkpoint / "config.json").is_file():
        raise UserError(f"{run_dir} has no finished checkpoint/ (no checkpoint/config.json); "
                        "push a run directory after `grpo train` completed")
    reports = {name: run_dir / name for name in RUN_FILES if (run_dir / name).is_file()}
    plan = {}
    if (checkpoint / "adapter" / "adapter_config.json").is_file():
        tokenizer = {name: checkpoint / name for name in TOKENIZER_FILES if (checkpoint / name).is_file()}
        plan["adapter"] = {**tokenizer, **_files(checkpoint / "adapter"), **reports}
        if "README.md" in reports:
            card = reports["README.md"].read_text().replace("library_name: transformers", "library_name: peft", 1)
            plan["adapter"]["README.md"] = card.encode()
    if push_merged or not plan:
        plan["merged"] = {**_files(checkpoint, skip=("adapter",)), **reports}
    return plan


def repo_ids(hub_model_id: str, plan: dict) -> dict:
    """Where each planned upload goes: the adapter to ``hub_model_id``, the merged model to
    ``hub_model_id + "-merged"`` (or to ``hub_model_id`` itself when there is no adapter)."""
    if "adapter" not in plan:
        return {"merged": hub_model_id}
    ids = {"adapter": hub_model_id}
    if "merged" in plan:
        ids["merged"] = hub_model_id + "-merged"
    return ids


def upload(plan: dict, hub_model_id: str, private: bool | None = None, token: str | None = None,
           commit_message: str = "Upload from grpo-toolkit") -> dict:
    """Create each repo (if missing) and upload its files in one commit with ``huggingface_hub.HfApi``.

    Args:
        plan: ``{kind: {path in repo: Path | bytes}}`` (see :func:`plan_run_upload`).
        hub_model_id: ``user/name``; see :func:`repo_ids` for where each kind goes.

    Returns:
        ``{kind: repo URL}``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)  # HF_ENDPOINT read now, as the probe does
    urls = {}
    for kind, repo_id in repo_ids(hub_model_id, plan).items():
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes)
                                         else str(content)) for path, content in plan[kind].items()]
        api.create_commit(repo_id=repo.repo_id, operations=operations, commit_message=commit_message)
        urls[kind] = f"{api.endpoint}/{repo.repo_id}"
    return urls


def upload_folder(folder, hub_model_id: str, private: bool | None = None, token: str | None = None) -> str:
    """Upload every file of ``folder`` (e.g. a ``grpo export`` directory) to ``hub_model_id``; returns its URL."""
    return upload({"merged": _files(Path(folder))}, hub_model_id, private, token)["merged"]


def push_run(run_dir, hub_model_id: str, private: bool | None = None, token: str | None = None,
             push_merged: bool = True) -> dict:
    """Push a finished run: adapter to ``hub_model_id``, merged model to ``hub_model_id-merged``.

    Raises:
        UserError: offline / unreachable hub / no token (checked first), an unfinished run, or an
            upload failure -- the message says the run directory is intact and how to retry.
    """
    require_push(hub_model_id, token, run_dir)
    plan = plan_run_upload(run_dir, push_merged)
    try:
        return upload(plan, hub_model_id, private, token)
    except Exception as err:  # HTTP, auth, quota: huggingface_hub raises many types
        raise UserError(f"pushing {run_dir} to {hub_model_id!r} failed ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:200] if str(err) else ''}); the run directory is intact; "
                        f"retry with `{push_later_hint(run_dir, hub_model_id)}`") from None
