"""CLI layer of ``grpo export`` and ``grpo push`` (argument parsing and printed output); the work is
in :mod:`grpo.modeling.export` (merge an adapter into a standalone checkpoint) and :mod:`grpo.runs.publish` (uploads)."""

from __future__ import annotations

from grpo.common.errors import UserError
from grpo.modeling.export import DTYPES, export


def export_main(argv) -> int:
    """``grpo export``: parse the flags, export, optionally push the exported directory."""
    import argparse

    parser = argparse.ArgumentParser(prog="grpo export", description=(
        "Merge a LoRA adapter into its base model and write a standalone checkpoint directory "
        "(config, safetensors weights, tokenizer, generation config, model card)."))
    parser.add_argument("--model", required=True, help="adapter dir (adapter_config.json), run dir, or a run's checkpoint/ dir")
    parser.add_argument("--output_dir", required=True, help="where to write the merged checkpoint (replaced atomically)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="weights dtype of the export (default: the checkpoint's)")
    parser.add_argument("--push_to_hub", action="store_true", help="upload the exported directory to --hub_model_id")
    parser.add_argument("--hub_model_id", default=None, help="user/name of the hub repo (with --push_to_hub)")
    parser.add_argument("--hub_private_repo", action="store_true", help="create the repo private")
    args = parser.parse_args(argv)
    from grpo.runs import publish

    if args.push_to_hub:  # before the (slow) merge: no point merging if the push cannot happen
        if not args.hub_model_id:
            raise UserError("--push_to_hub needs --hub_model_id user/name")
        publish.require_push(args.hub_model_id, None, args.model)
    dest = export(args.model, args.output_dir, args.dtype)
    print(f"exported: {dest}  (AutoModelForCausalLM.from_pretrained({str(dest)!r}))")
    if args.push_to_hub:
        try:
            url = publish.upload_folder(dest, args.hub_model_id, args.hub_private_repo or None)
        except Exception as err:  # HTTP/auth errors come in many types
            raise UserError(f"upload of {dest} failed ({type(err).__name__}); the export is intact; retry with "
                            f"`hf upload {args.hub_model_id} {dest}`") from None
        print(f"pushed: {url}")
    return 0


def push_main(argv) -> int:
    """``grpo push RUN_DIR --hub_model_id user/name``: upload a finished run (adapter and merged model)."""
    import argparse

    parser = argparse.ArgumentParser(prog="grpo push", description=(
        "Upload a finished run: the LoRA adapter to HUB_MODEL_ID and the merged model to HUB_MODEL_ID-merged, "
        "each with the run's model card, eval reports and metrics."))
    parser.add_argument("run_dir", help="a `grpo train` output directory with a finished checkpoint/")
    parser.add_argument("--hub_model_id", required=True, help="user/name of the adapter repo")
    parser.add_argument("--hub_private_repo", action="store_true", help="create the repos private")
    parser.add_argument("--no_merged", action="store_true", help="push only the adapter")
    args = parser.parse_args(argv)
    from grpo.runs.publish import push_run

    urls = push_run(args.run_dir, args.hub_model_id, args.hub_private_repo or None, None, not args.no_merged)
    for kind, url in urls.items():
        print(f"{kind}: {url}")
    return 0
