"""``grpo rewards list`` and ``grpo rewards try``: inspect rewards and score completions from a file.

    grpo rewards list
    grpo rewards try --reward correctness --completions samples.jsonl --dataset data/test.jsonl
    grpo rewards try --reward length --param ideal=200 --param unit=words --completions samples.jsonl
    grpo rewards try --reward my_rewards.py:brevity --reward strict_format --completions samples.jsonl

The completions file is JSONL, one object per completion: ``completion`` (a string or a list of
``{"role", "content"}`` messages), optionally ``prompt``, and any other fields, which reach the
reward as dataset columns (``answer``, ...). A run's ``samples.jsonl`` is such a file: each line
carries its row's columns (``answer``, ``question``), so it scores as training scored it.

With ``--dataset`` (any dataset spec ``grpo.data.loaders.load_rows`` reads) the dataset's columns
are added to each line from the row the line names -- never by line number: the line's ``row``
field (the row's index), else its ``question`` (the same text as the row's), else its ``prompt``
(the row's question, or the question followed by instructions). A line that names no row, or a
row that does not exist or does not match, is an error naming the line. Fields of the line win
over the dataset's.

This is the quickest way to debug a reward before spending a training run on it: every value
goes through :func:`rewards.call_reward`, so a reward that raises or returns the wrong count is
reported exactly as training would report it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
import sys
import time
from pathlib import Path

import rewards
from grpo.common.errors import UserError

EXCERPT_CHARS = 70
_EMPTY = inspect.Parameter.empty


def _parse_param(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as YAML (``3``, ``0.5``, ``true``, ``[a, b]``, ``null``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise UserError(f"--param {text!r}: expected key=value, e.g. --param ideal=200")
    import yaml

    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw


def _read_completions(path: str) -> list[dict]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"completions file {path!r} does not exist")
    from grpo.data.loaders import read_jsonl

    rows = read_jsonl(file)
    for row in rows:
        if "completion" not in row:
            raise UserError(f"{path}:{row['_line']}: expected an object with a 'completion' field, "
                            f"e.g. {{\"completion\": \"<answer>4</answer>\", \"answer\": \"4\"}}")
    return rows


def _normalized(text) -> str:
    return " ".join(str(text).split())


def _attach_dataset(rows: list[dict], spec: str, split: str, completions_path: str) -> None:
    """Add each line's dataset row's columns to it (``setdefault``), matching by ``row``, ``question`` or ``prompt``.

    Raises:
        UserError: naming the line, for a row index out of range, a ``row`` whose question differs from the
            line's, a question or prompt no row has, or a line with none of the three.
    """
    from grpo.data.loaders import load_rows

    dataset = load_rows(spec, split)
    questions = [_normalized(q) for q in dataset["question"]] if "question" in dataset.column_names else None
    by_question = {}
    for index, question in enumerate(questions or []):
        by_question.setdefault(question, index)
    for row in rows:
        where = f"{completions_path}:{row['_line']}"
        index = _dataset_index(row, where, spec, len(dataset), questions, by_question)
        for key, value in dataset[index].items():
            if key != "_line":
                row.setdefault(key, value)


def _dataset_index(row: dict, where: str, spec: str, size: int, questions, by_question: dict) -> int:
    """The dataset row a completions line names (see :func:`_attach_dataset`)."""
    if "row" in row:
        index = row["row"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
            raise UserError(f"{where}: dataset row {index!r} does not exist ({spec} has {size} rows)")
        if questions is not None and "question" in row and _normalized(row["question"]) != questions[index]:
            raise UserError(f"{where}: 'row' {index} of {spec} has another question than the line's 'question'; "
                            f"fix the line's 'row' (or drop it to match by question)")
        return index
    if questions is None:
        raise UserError(f"{where}: {spec} has no 'question' column to match lines by; give each line a 'row' field "
                        f"(the index of its dataset row)")
    if "question" in row:
        index = by_question.get(_normalized(row["question"]))
        if index is None:
            raise UserError(f"{where}: no row of {spec} has this line's 'question'; is it the dataset (and --split) "
                            f"the completions came from?")
        return index
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content")
    if isinstance(prompt, str) and prompt.strip():
        text = _normalized(prompt)
        index = by_question.get(text)
        if index is None:  # the question followed by the prompt format's instructions ('hash')
            index = next((i for i, q in enumerate(questions) if q and text.startswith(q)), None)
        if index is None:
            raise UserError(f"{where}: no row of {spec} has this line's prompt as its question; is it the dataset "
                            f"(and --split) the completions came from?")
        return index
    raise UserError(f"{where}: the line names no dataset row: add 'row' (the row's index) or 'question' "
                    f"(lines are never paired with rows by their position)")


def _batch(rows: list[dict]) -> tuple[list, list | None, dict]:
    completions = [r["completion"] for r in rows]
    prompts = [r.get("prompt") for r in rows] if any("prompt" in r for r in rows) else None
    keys = sorted({k for r in rows for k in r} - {"completion", "prompt", "_line", "row"})
    columns = {k: [r.get(k) for r in rows] for k in keys}
    return completions, prompts, columns


def _excerpt(completion) -> str:
    text = rewards.completion_text(completion).replace("\n", "\\n")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."


def _summary(values: list) -> dict:
    scored = [v for v in values if v is not None]
    out = {"n": len(values), "none": len(values) - len(scored)}
    if scored:
        out.update(mean=statistics.fmean(scored), std=statistics.pstdev(scored), min=min(scored), max=max(scored))
    return out


def cmd_list(args) -> int:
    """Print every registered reward with its parameters and one-line description."""
    entries = [rewards.describe(name) for name in rewards.names()]
    if args.json:
        print(json.dumps([{**e, "params": {k: (None if v is _EMPTY else v) for k, v in e["params"].items()}}
                          for e in entries], default=repr, indent=1))
        return 0
    width = max(16, *(len(e["name"]) for e in entries))
    for e in entries:
        params = ", ".join(k if v is _EMPTY else f"{k}={v!r}" for k, v in e["params"].items())
        print(f"{e['name']:<{width}} {e['doc']}" + ("  [group-aware: scores each prompt's completions together]"
                                                      if e.get("group_aware") else ""))
        if e.get("aliases"):
            print(f"{'':<{width}}   aliases: {', '.join(e['aliases'])}")
        if params:
            print(f"{'':<{width}}   params: {params}")
    print(f"\n{len(entries)} rewards, each logged as rewards/<name>/mean; an alias selects the same reward. "
          "Your own: --reward path/to/file.py:function or package.module:function")
    return 0


def cmd_try(args) -> int:
    """Score the completions file with each ``--reward`` and print per-completion scores and a summary."""
    params = dict(_parse_param(p) for p in args.param)
    if params and len(args.reward) > 1:
        raise UserError("--param applies to a single --reward; score several parameterised rewards one at a time")
    funcs = [rewards.resolve(spec, **params) for spec in args.reward]
    rows = _read_completions(args.completions)
    if args.limit is not None:
        rows = rows[:args.limit]
    if args.dataset:
        _attach_dataset(rows, args.dataset, args.split, args.completions)
    completions, prompts, columns = _batch(rows)
    names, scores, seconds = [], [], []
    for fn in funcs:
        start = time.perf_counter()
        scores.append(rewards.call_reward(fn, completions, prompts, **columns))
        seconds.append(time.perf_counter() - start)
        names.append(rewards.reward_name(fn))
    if args.json:
        out = {"rows": [{"line": r["_line"], **{n: s[i] for n, s in zip(names, scores)}} for i, r in enumerate(rows)],
               "summary": {n: {**_summary(s), "seconds": t} for n, s, t in zip(names, scores, seconds)}}
        print(json.dumps(out, indent=1))
        return 0
    width = max(10, *(len(n) for n in names))
    print(f"{'line':>5}  " + "  ".join(f"{n:>{width}}" for n in names) + "  completion")
    for i, row in enumerate(rows[:args.show]):
        cells = "  ".join(f"{'None':>{width}}" if s[i] is None else f"{s[i]:>{width}.4g}" for s in scores)
        print(f"{row['_line']:>5}  {cells}  {_excerpt(row['completion'])}")
    if len(rows) > args.show:
        print(f"  ... {len(rows) - args.show} more (--show N)")
    print()
    for n, s, t in zip(names, scores, seconds):
        summary = _summary(s)
        stats = (f"mean {summary['mean']:.4g}  std {summary['std']:.4g}  min {summary['min']:.4g}  "
                 f"max {summary['max']:.4g}" if "mean" in summary else "no scores")
        rate = len(s) / t if t > 0 else math.inf
        print(f"{n}: n={summary['n']}  {stats}  None={summary['none']}  ({rate:,.0f} completions/s)")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo rewards", description="List rewards and score completions with them.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="registered rewards, their parameters and what they score")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(run=cmd_list)
    p_try = sub.add_parser("try", help="score a JSONL file of completions with one or more rewards")
    p_try.add_argument("--reward", action="append", required=True,
                       help="registry name, path/to/file.py:function or package.module:function (repeatable)")
    p_try.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="factory parameter for a single --reward, value read as YAML (repeatable)")
    p_try.add_argument("--completions", required=True, help="JSONL: {'completion': ..., 'prompt'?: ..., columns...}")
    p_try.add_argument("--dataset", help="dataset spec whose rows supply missing columns; each line names its row by "
                       "'row' (index), 'question' or 'prompt', never by position")
    p_try.add_argument("--split", default="train", help="split for hub / synthetic dataset specs")
    p_try.add_argument("--limit", type=int, help="score only the first N completions")
    p_try.add_argument("--show", type=int, default=20, help="print at most N rows (default 20)")
    p_try.add_argument("--json", action="store_true", help="machine-readable output")
    p_try.set_defaults(run=cmd_try)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``grpo rewards ...``; returns the exit code (2 for bad input or a broken reward)."""
    args = make_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UserError, rewards.RewardError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
