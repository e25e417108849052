"""``grpo rewards list`` and ``grpo rewards try``: inspect rewards and score completions from a file.

    grpo rewards list
    grpo rewards try --reward correctness --completions samples.jsonl --dataset data/test.jsonl
    grpo rewards try --reward length --param ideal=200 --param unit=words --completions samples.jsonl
    grpo rewards try --reward my_rewards.py:brevity --reward strict_format --completions samples.jsonl

The completions file is JSONL, one object per completion: ``completion`` (a string or a list of
``{"role", "content"}`` messages), optionally ``prompt``, and any other fields, which reach the
reward as dataset columns (``answer``, ...). With ``--dataset`` (any dataset spec
``grpo.data.loaders.load_rows`` reads) the dataset's columns are added row by row -- line *i* of the
completions file takes row *i*, or row ``row`` when a line has that field; fields of the line
win over the dataset's.

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


def _attach_dataset(rows: list[dict], spec: str, split: str, completions_path: str) -> None:
    from grpo.data.loaders import load_rows

    dataset = load_rows(spec, split)
    for position, row in enumerate(rows):
        index = row.get("row", position)
        if not isinstance(index, int) or not 0 <= index < len(dataset):
            raise UserError(f"{completions_path}:{row['_line']}: dataset row {index!r} does not exist "
                            f"({spec} has {len(dataset)} rows)")
        for key, value in dataset[index].items():
            if key != "_line":
                row.setdefault(key, value)


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
    for e in entries:
        params = ", ".join(k if v is _EMPTY else f"{k}={v!r}" for k, v in e["params"].items())
        print(f"{e['name']:<16} {e['doc']}" + ("  [group-aware: scores each prompt's completions together]"
                                                 if e.get("group_aware") else ""))
        if params:
            print(f"{'':<16}   params: {params}")
    print(f"\n{len(entries)} rewards. Your own: --reward path/to/file.py:function or package.module:function")
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
    p_try.add_argument("--dataset", help="dataset spec whose rows supply columns (line i <- row i, or 'row' field)")
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
