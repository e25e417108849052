"""The ``grpo`` command: train, sft, eval, rewards, recipe. Parser wiring and terminal output only.

    grpo train  --config grpo/configs/gsm8k.yaml [--key value ...]   GRPO (warm-start first if configured)
    grpo sft    --config grpo/configs/gsm8k.yaml [--key value ...]   the warm-start stage alone
    grpo eval   --model SPEC --dataset SPEC [--limit N]              n, accuracy / format rate (95% intervals), clipped
    grpo rewards list | try --reward SPEC --completions FILE.jsonl  inspect and debug reward functions
    grpo recipe NAME --config recipes/configs/NAME.yaml             supervised recipes (base checkpoints)
    grpo export --model RUN_DIR/checkpoint/adapter --output_dir DIR  merge a LoRA adapter into a standalone checkpoint
    grpo push   RUN_DIR --hub_model_id user/name                     upload a run's adapter and merged model

Errors in what the user gave (a path, a spec, a config key) print one ``error:`` line and exit 2;
Ctrl-C exits 130 after saving what the run has.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from grpo.common.errors import UserError

USAGE = __doc__.split("\n\n")[1]
logger = logging.getLogger("grpo.cli")


def _training_config(argv):
    from trl import GRPOConfig

    from grpo.config.parser import check_ranges, check_sampling, compose_overrides, parse_config
    from grpo.config.script_args import ScriptArgs

    script_args, training_args = parse_config(argv, (ScriptArgs, GRPOConfig))
    compose_overrides(argv, script_args, training_args)
    check_sampling(training_args)
    check_ranges(training_args)
    if "--config" not in argv:
        logger.info("no --config: every setting not given on the command line is its default (TRL's GRPOConfig: "
                    "learning_rate %g, max_completion_length %d, output_dir %s); the exercise's settings are in "
                    "grpo/configs/gsm8k.yaml (`grpo train --help` lists the options)", training_args.learning_rate,
                    training_args.max_completion_length, training_args.output_dir)
    if 0 < training_args.max_steps <= training_args.warmup_steps:
        logger.warning("max_steps=%d <= warmup_steps=%g: the learning rate is still warming up (from 0) at the last "
                       "step, so the run barely moves the weights; lower --warmup_steps", training_args.max_steps,
                       training_args.warmup_steps)
    return script_args, training_args


def _print_closing_table(columns: dict) -> None:
    """The evaluation table ({label: report or None}), then the paired before/after rows under it."""
    from grpo.evaluation.evaluate import compare_columns, format_comparisons, format_table

    if not any(v is not None for v in columns.values()):
        print("not evaluated (eval_size 0): no before/after table; `grpo eval --model RUN_DIR/checkpoint "
              "--dataset gsm8k --limit 200` evaluates the checkpoint")
        return
    print(format_table(columns))
    paired = format_comparisons(compare_columns({k: v for k, v in columns.items() if v is not None}))
    if paired:
        print(f"\n{paired}")


def cmd_train(argv) -> int:
    from grpo.cli.pipeline import run_training
    from grpo.config.parser import given_keys
    from grpo.evaluation.evaluate import eval_columns
    from grpo.runs.run_dir import command_line

    script_args, training_args = _training_config(argv)
    result = run_training(script_args, training_args, command=command_line(["grpo", "train", *argv]),
                          given=given_keys(argv))
    if "checkpoint" in result:  # the main process of a finished run
        _print_closing_table(eval_columns(result))
        trend = result.get("reward_trend")
        if trend:
            low, high = trend["slope_ci"]
            print(f"\nreward over {trend['n']} steps: slope {trend['slope']:+.4f} per step, 95% CI [{low:+.4f}, {high:+.4f}] "
                  f"(fitted {trend['first']:.3f} -> {trend['last']:.3f})")
        print(f"\ncheckpoint: {result['checkpoint']}\ncurves:     {result['curves']}\nrun dir:    {result['output_dir']}")
    return 0


def cmd_sft(argv) -> int:
    from transformers import set_seed

    from grpo.cli.pipeline import before_grpo, load_splits
    from grpo.common.hardware import pad_to_multiple_of
    from grpo.modeling.loading import load_for_training
    from grpo.modeling.models import check_causal_lm
    from grpo.modeling.quantization import check_quantization_supported

    script_args, training_args = _training_config(argv)
    check_quantization_supported(script_args, training_args, sft=True)  # before data, model or eval
    check_causal_lm(script_args.model_name_or_path)
    pad_to_multiple_of(training_args.pad_to_multiple_of, training_args.use_cpu)  # refuses < 1 before the base eval
    out = Path(training_args.output_dir)
    if training_args.push_to_hub:  # refuse rather than ignore: the user expects an upload
        raise UserError(f"grpo sft does not push to the hub; after it, upload the merged warm-start with "
                        f"`grpo export --model {out / 'sft_checkpoint'} --output_dir DIR --push_to_hub "
                        f"--hub_model_id user/name`, or drop --push_to_hub")
    set_seed(training_args.seed)
    train_rows, heldout = load_splits(script_args, training_args.seed)
    model, tokenizer = load_for_training(script_args.model_name_or_path, script_args)  # QLoRA: 4/8-bit base
    _, reports = before_grpo(model, tokenizer, train_rows, heldout, script_args, training_args, warm_start=True)
    if training_args.process_index != 0:
        return 0
    _print_closing_table({"base": reports.get("eval_before"), "after warm-start": reports["eval_after_sft"]})
    print(f"\ncheckpoint: {out / 'sft_checkpoint'}  (use it as --model_name_or_path for grpo train)")
    return 0


def cmd_eval(argv) -> int:
    parser = argparse.ArgumentParser(prog="grpo eval", description=(
        "Greedy generation on GSM8K-format problems: accuracy (the <answer> matches the gold number), "
        "last-number accuracy, format rate (each with n and a 95% Wilson interval), the share of completions "
        "clipped at --max_new_tokens, and mean completion length."))
    parser.add_argument("--model", required=True, help="model spec: checkpoint dir, hub id, embedded:smollm2-135m-instruct")
    parser.add_argument("--dataset", required=True, help="dataset spec: gsm8k (the real GSM8K shipped with the "
                        "package), a GSM8K-format .jsonl, synthetic:gsm8k, openai/gsm8k (hub)")
    parser.add_argument("--split", default="test", help="split for hub/synthetic datasets (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N problems only")
    parser.add_argument("--max_new_tokens", type=int, default=320,
                        help="generation budget per problem (tokens); 320 fits 99.9%% of real GSM8K solutions")
    parser.add_argument("--batch_size", type=int, default=32, help="problems generated together")
    parser.add_argument("--prompt_format", default="tags", choices=["tags", "hash"],
                        help="'tags': <reasoning>/<answer> system prompt; 'hash': verl's '####' prompt (see ScriptArgs)")
    parser.add_argument("--task", default=None, choices=["gsm8k", "translation", "summarization"],
                        help="what to score: GSM8K accuracy, or sacreBLEU BLEU/chrF (translation) / ROUGE (summarization) "
                        "against the references with the copy-source / lead-1 baseline; default: inferred from the "
                        "data's columns (translation: KDE4 rows, e.g. pkg:po-en-fr; summarization: document + summary, "
                        "e.g. pkg:lee-lead)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="precision to generate in: bfloat16 runs the sampler's fast path (tokens identical to the "
                        "plain model cast to bf16); auto = bfloat16 where this CPU's bf16 matmuls are measured faster "
                        "than fp32 (or on a GPU), else float32")
    parser.add_argument("--output", default=None, help="write the JSON report here (default: "
                        "./eval_<model>_<dataset>.json in the current directory; the model directory is left as it is)")
    args = parser.parse_args(argv)
    from grpo.cli.reference_tasks import eval_task_rows
    from grpo.common.checkpoint_io import write_json_atomic
    from grpo.data.loaders import load_gsm8k
    from grpo.evaluation.evaluate import evaluate, format_table
    from grpo.modeling.models import load_model

    task, rows = eval_task_rows(args.dataset, args.split, args.limit, args.task)
    if task == "gsm8k":
        rows = load_gsm8k(args.dataset, split=args.split, limit=args.limit, prompt_format=args.prompt_format)
    model, tokenizer = load_model(args.model)
    import torch

    from grpo.common.hardware import bf16_is_fast

    if args.dtype == "auto":
        args.dtype = "bfloat16" if torch.cuda.is_available() or bf16_is_fast() else "float32"
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    if task == "gsm8k":
        report = evaluate(model, tokenizer, rows, args.max_new_tokens, args.batch_size, prompt_format=args.prompt_format,
                          dtype=dtype)
    else:
        from grpo.evaluation.text_eval import evaluate_text

        report = evaluate_text(model, tokenizer, rows, task, args.max_new_tokens, args.batch_size, dtype=dtype)
    report.update(model=args.model, dataset=args.dataset)
    output = Path(args.output) if args.output else default_eval_output(args.model, args.dataset)
    write_json_atomic(output, report)
    print(format_table({args.model: report}))
    print(f"\n{report['n']} problems; report: {output}")
    return 0


def default_eval_output(model: str, dataset: str) -> Path:
    """``grpo eval``'s report path without ``--output``: in the current directory, named after model and dataset.

    >>> str(default_eval_output("runs/gsm8k/checkpoint", "gsm8k")), str(default_eval_output("embedded:x", "d/t.jsonl"))
    ('eval_gsm8k-checkpoint_gsm8k.json', 'eval_embedded-x_t.json')
    """
    import re

    path = Path(model.rstrip("/"))
    name = f"{path.parent.name}-{path.name}" if path.parent.name else path.name
    words = [re.sub(r"[^A-Za-z0-9._-]+", "-", w).strip("-") for w in (name, Path(dataset).stem)]
    return Path(f"eval_{words[0]}_{words[1]}.json")


def cmd_rewards(argv) -> int:
    from grpo.cli.rewards_cmd import main as rewards_main

    return rewards_main(argv)


def cmd_recipe(argv) -> int:
    import recipes

    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: grpo recipe NAME --config recipes/configs/NAME.yaml [--key value ...]\n\nrecipes: "
              + ", ".join(recipes.names()))
        return 0
    return recipes.get(argv[0]).main(argv[1:]) or 0


def cmd_export(argv) -> int:
    from grpo.cli.export_cmd import export_main

    return export_main(argv)


def cmd_push(argv) -> int:
    from grpo.cli.export_cmd import push_main

    return push_main(argv)


COMMANDS = {"train": cmd_train, "sft": cmd_sft, "eval": cmd_eval, "rewards": cmd_rewards, "recipe": cmd_recipe,
            "export": cmd_export, "push": cmd_push}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grpo`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage:\n" + USAGE + "\n\n`grpo COMMAND --help` explains each command's options; `--verbose` (any "
              "command) also shows the libraries' progress bars and messages.")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if argv[0] in {"train", "sft"} and {"-h", "--help", "--help-all"} & set(argv[1:]):
        from grpo.config.help import format_help  # no TRL import unless --help-all: answers in well under 2 s

        print(format_help(argv[0], full="--help-all" in argv[1:]))
        return 0
    verbose = "--verbose" in argv[1:]
    argv = [w for w in argv if w != "--verbose"]
    from grpo.common.console import setup_console

    setup_console(verbose)
    # transformers 5 renames many arguments; its deprecation notices are not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        if argv[0] in {"train", "sft", "recipe"}:  # before any TrainingArguments sets up the distributed state
            from grpo.training.launch import check_launch

            check_launch()
        return command(argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the run directory keeps its last checkpoint (see checkpoint-*/); "
              "rerun with --resume_from_checkpoint <dir> to continue", file=sys.stderr)
        return 130
    except Exception as err:
        reward_error = _reward_error(err)
        if reward_error is None:
            raise
        print(f"error: {reward_error}", file=sys.stderr)
        return 2


def _reward_error(err: BaseException):
    """A ``rewards.RewardError`` raised anywhere in the chain (TRL may wrap it), else None."""
    try:
        from rewards import RewardError
    except ImportError:
        return None
    while err is not None:
        if isinstance(err, RewardError):
            return err
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
