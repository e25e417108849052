"""Before/after evaluation on GSM8K-format problems: accuracy, format rate, mean completion length.

``grpo eval --model runs/gsm8k/checkpoint --dataset test.jsonl --limit 200`` generates one greedy
completion per problem (batched, left-padded) and scores it with the same reward functions the
training uses:

* ``accuracy`` -- the ``<answer>`` content equals the gold number (``correctness`` reward, math-verify);
* ``last_number_accuracy`` -- the last number anywhere in the completion equals the gold number
  (what a base model that ignores the format still gets right);
* ``format_rate`` -- the completion has ``<reasoning>...</reasoning>`` then ``<answer>...</answer>``
  (``soft_format`` reward);
* ``placeholder_reasoning_rate`` -- the completion's reasoning block is empty, only the prompt's ``...``
  placeholder, or holds no number and no operation (:func:`rewards.reasoning.is_placeholder_reasoning`):
  reward hacking of the format rewards, which a format rate alone cannot tell from reasoning (``tags``
  prompts only: the ``hash`` prompt asks for no reasoning block);
* ``mean_completion_length`` -- tokens, up to and including the end-of-turn token;
* ``clipped`` -- the share of completions that hit ``max_new_tokens`` without the end-of-turn token
  (cut off: a low accuracy may then mean "no room to finish", not "wrong").

Each rate comes with its count (``accuracy_count``) and a 95 % Wilson interval (``accuracy_ci``,
:func:`grpo.evaluation.statistics.wilson_interval`). :func:`compare` pairs two reports of the same problems:
the difference after - before with Newcombe's paired interval and the exact McNemar p-value.
"""

from __future__ import annotations

import logging

from grpo.common.errors import UserError
from grpo.evaluation.text_metrics import (
    TEXT_TASKS,
    compare_text,
    format_text_comparison,
    format_text_table,
    render_table,
)

logger = logging.getLogger(__name__)

# report rate -> the per-sample flag it counts
RATES = {"accuracy": "correct", "last_number_accuracy": "last_number_correct", "format_rate": "format",
         "numeric_answer_rate": "numeric_answer", "placeholder_reasoning_rate": "placeholder_reasoning",
         "clipped": "clipped"}
CONFIDENCE = 0.95


def generate_greedy(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int,
                    progress: bool = True, dtype=None) -> tuple[list[str], list[int], list[bool]]:
    """Greedy completions for chat prompts, batched.

    Args:
        model: a causal LM (peft models work too).
        tokenizer: its tokenizer, with a chat template.
        prompts: conversational prompts, each a list of ``{"role", "content"}``.
        max_new_tokens: generation budget per prompt, tokens.
        batch_size: prompts generated together.
        progress: show a tqdm bar.
        dtype: generate with a copy of the weights in this dtype (``torch.bfloat16``: the sampler's
            fast path; tokens identical to the plain model cast to bf16); None = the model as it is.

    Returns:
        ``(texts, lengths, clipped)``: decoded completions (special tokens stripped), their token
        counts, and whether each hit ``max_new_tokens`` without the end-of-turn token.
    """
    import torch
    from tqdm.auto import tqdm

    from grpo.generation.sampler import generate

    texts, lengths, clipped = [], [], []
    was_training = model.training
    model.eval()
    eos = tokenizer.eos_token_id
    bar = tqdm(total=len(prompts), desc="eval", unit="problem", disable=not progress)
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False)
                   for p in chunk]
            ids = [list(x["input_ids"]) if isinstance(x, dict) else list(x) for x in ids]
            with torch.inference_mode():
                rollout = generate(model, tokenizer, ids, num_generations=1, max_new_tokens=max_new_tokens,
                                   do_sample=False, stop_token_ids=[eos], dtype=dtype)
            for completion in rollout.completion_ids:
                lengths.append(len(completion))
                texts.append(tokenizer.decode(completion, skip_special_tokens=True))
            clipped.extend(bool(t) for t in rollout.is_truncated)
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return texts, lengths, clipped


def rate_summary(name: str, flags: list[bool], confidence: float = CONFIDENCE) -> dict:
    """One rate of a report: ``{name: k/n, name_count: k, name_ci: [low, high]}``.

    Args:
        name: the report key, e.g. ``"accuracy"``.
        flags: one success flag per problem.
        confidence: coverage of the Wilson interval (:func:`grpo.evaluation.statistics.wilson_interval`).

    Returns:
        The three keys; with no problems the rate is 0.0 and the interval ``None`` (undefined).
    """
    from grpo.evaluation.statistics import wilson_interval

    n, k = len(flags), sum(1 for f in flags if f)
    ci = list(wilson_interval(k, n, confidence)) if n else None
    return {name: k / max(n, 1), f"{name}_count": k, f"{name}_ci": ci}


def score_completions(completions: list[str], answers: list[str], prompt_format: str = "tags",
                      clipped: list[bool] | None = None) -> dict:
    """Accuracy, last-number accuracy and format rate of plain-text completions against gold answers.

    With ``prompt_format="hash"`` (verl's GSM8K prompt) accuracy reads the number after ``####`` and
    the format rate is the share of completions with a ``####`` answer line.

    Args:
        completions: one completion per problem.
        answers: the gold answers (GSM8K ``#### 42`` or a bare number), same order.
        prompt_format: ``"tags"`` or ``"hash"``.
        clipped: optional per-completion flags "hit max_new_tokens without the end-of-turn token";
            given, the report also carries the ``clipped`` rate.

    Returns:
        ``{"n", "confidence", <rate>, <rate>_count, <rate>_ci for each rate, "per_problem"}`` with rates
        ``accuracy``, ``last_number_accuracy``, ``format_rate``, ``numeric_answer_rate`` (the answer tag,
        or the ``####`` line, holds a number), ``placeholder_reasoning_rate`` (``tags`` only) (and ``clipped``)
        as fractions, intervals
        as ``[low, high]`` (Wilson, ``None`` when n = 0), ``per_problem`` one dict of flags per completion.
    """
    import rewards
    from rewards.reasoning import is_placeholder_reasoning
    from rewards.text import extract_hash, extract_tag, parse_number

    extractor = "hash" if prompt_format == "hash" else "answer_tag"
    # the answer slot holds a number (right or wrong): a format rate without it can be met by copying
    # the prompt's template, "<answer>\n...\n</answer>" (seen after GRPO on the format rewards alone)
    slot = extract_hash if prompt_format == "hash" else extract_tag
    numeric = [parse_number(slot(rewards.completion_text(c))) is not None for c in completions]
    correct = rewards.get("accuracy_reward", extractors=[extractor])(completions, answer=answers)
    last = rewards.get("accuracy_reward", extractors=["last_number"])(completions, answer=answers)
    if prompt_format == "hash":
        fmt = [extract_hash(c) is not None for c in completions]
    else:
        fmt = rewards.get("soft_format_reward")(completions)
    per_problem = [{"correct": bool(c), "last_number_correct": bool(ln), "format": bool(f), "numeric_answer": num}
                   for c, ln, f, num in zip(correct, last, fmt, numeric)]
    if prompt_format != "hash":
        for flags, c in zip(per_problem, completions):
            flags["placeholder_reasoning"] = is_placeholder_reasoning(c)
    if clipped is not None:
        for flags, cut in zip(per_problem, clipped):
            flags["clipped"] = bool(cut)
    report = {"n": len(per_problem), "confidence": CONFIDENCE}
    skipped = {"clipped"} if clipped is None else set()
    if prompt_format == "hash":
        skipped.add("placeholder_reasoning_rate")
    for rate, flag in RATES.items():
        if rate not in skipped:
            report.update(rate_summary(rate, [p[flag] for p in per_problem]))
    return {**report, "per_problem": per_problem}


def evaluate(model, tokenizer, dataset, max_new_tokens: int = 256, batch_size: int = 16, progress: bool = True,
             prompt_format: str = "tags", dtype=None) -> dict:
    """Evaluate on rows with ``prompt`` and ``answer`` columns (see :func:`grpo.data.loaders.load_gsm8k`).

    Returns:
        ``{"n", "confidence", "accuracy", "accuracy_count", "accuracy_ci", ... for last_number_accuracy,
        format_rate, numeric_answer_rate, placeholder_reasoning_rate and clipped, "mean_completion_length",
        "max_new_tokens", "samples"}``; rates are
        fractions in [0, 1] with 95 % Wilson intervals ``[low, high]``, the length is in tokens,
        ``samples`` holds every question, gold answer, completion, token count and its flags
        (``correct``, ``last_number_correct``, ``format``, ``numeric_answer``, ``placeholder_reasoning``, ``clipped``).
    """
    prompts, answers = list(dataset["prompt"]), list(dataset["answer"])
    texts, lengths, clipped = generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size, progress, dtype)
    scores = score_completions(texts, answers, prompt_format, clipped=clipped)
    samples = [{"question": p[-1]["content"], "answer": a, "completion": t, "tokens": n, **s}
               for p, a, t, n, s in zip(prompts, answers, texts, lengths, scores.pop("per_problem"))]
    return {**scores, "mean_completion_length": sum(lengths) / max(len(lengths), 1),
            "max_new_tokens": max_new_tokens, "dtype": str(dtype or next(model.parameters()).dtype).replace("torch.", ""),
            "samples": samples}


# ---------------------------------------------------------------------------- paired comparison

PAIRED = ("accuracy", "format_rate", "numeric_answer_rate", "placeholder_reasoning_rate", "last_number_accuracy")


def _flags(report: dict, label: str) -> list[dict]:
    samples = report.get("samples")
    if not samples:
        raise UserError(f"the {label} report has no per-problem samples, so it cannot be paired; "
                        f"evaluate again with `grpo eval` to get a report that has them")
    return samples


def compare(before_report: dict, after_report: dict, confidence: float = CONFIDENCE) -> dict:
    """Paired before/after comparison of two evaluations of the same problems, problem by problem.

    Args:
        before_report: an :func:`evaluate` report (needs ``samples`` with ``question`` and the flags).
        after_report: another report of the same questions in the same order.
        confidence: coverage of the paired intervals.

    Returns:
        ``{"n", "accuracy", "format_rate", "numeric_answer_rate", "placeholder_reasoning_rate",
        "last_number_accuracy"}`` (those both reports have), each rate a
        :func:`grpo.evaluation.statistics.paired_comparison` dict: ``lost``, ``gained``, ``difference`` = after -
        before with ``difference_ci`` (Newcombe 1998, method 10) and ``mcnemar_p`` (exact).

    Raises:
        UserError: a report without samples, or reports of different problems.
    """
    from grpo.evaluation.statistics import paired_comparison

    if before_report.get("task") in TEXT_TASKS:  # translation / summarization reports
        return compare_text(before_report, after_report)
    before, after = _flags(before_report, "before"), _flags(after_report, "after")
    questions = [s.get("question") for s in before], [s.get("question") for s in after]
    if questions[0] != questions[1]:
        where = next((i for i, (x, y) in enumerate(zip(*questions)) if x != y), min(len(before), len(after)))
        raise UserError(f"cannot pair these reports: they are of different problems ({len(before)} and "
                        f"{len(after)} problems, first difference at problem {where}); evaluate both models on "
                        f"the same rows (same --dataset/--limit/eval_size; delete a stale eval_*.json)")
    result = {"n": len(before)}
    for rate in PAIRED:
        flag = RATES[rate]
        if all(flag in s for s in before) and all(flag in s for s in after):  # (older reports lack newer flags)
            result[rate] = paired_comparison([s[flag] for s in before], [s[flag] for s in after], confidence)
    return result


def compare_columns(columns: dict) -> list[dict]:
    """Paired comparisons between the columns of a closing table: each consecutive pair, and first -> last.

    Args:
        columns: ``{label: report}`` in table order, e.g. :func:`eval_columns`.

    Returns:
        One ``{"before": label, "after": label, **compare(...)}`` per pair (first -> last only when
        there are 3 or more columns); a pair that cannot be compared has ``"error"`` instead.
    """
    labels = list(columns)
    pairs = list(zip(labels, labels[1:])) + ([(labels[0], labels[-1])] if len(labels) > 2 else [])
    out = []
    for first, second in pairs:
        entry = {"before": first, "after": second}
        try:
            entry.update(compare(columns[first], columns[second]))
        except UserError as error:
            entry["error"] = str(error)
        out.append(entry)
    return out


def eval_columns(result: dict) -> dict:
    """The evaluation reports of a run, labelled for a table: base, after warm-start, after GRPO."""
    columns = {"base": result.get("eval_before"), "after warm-start": result.get("eval_after_sft"),
               "after GRPO": result.get("eval_after")}
    return {label: report for label, report in columns.items() if report is not None}


def run_comparison(result: dict) -> list[dict]:
    """:func:`compare_columns` of a finished run (the dict :func:`grpo.cli.pipeline.run_training` returns)."""
    return compare_columns(eval_columns(result))


# ---------------------------------------------------------------------------- tables


def _rate_cell(report: dict, key: str) -> str:
    value = report.get(key)
    if value is None:
        return "-"
    ci = report.get(f"{key}_ci")
    return f"{value:.1%}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def format_table(reports: dict, markdown: bool = False) -> str:
    """The evaluation reports side by side, one column per ``{label: report}`` entry.

    Rates show as ``12.5% [9.1, 17.0]``: the rate and its 95 % Wilson interval in percent (reports
    written before intervals existed show the rate alone); ``numeric_answer_rate``,
    ``placeholder_reasoning_rate`` and ``clipped`` appear when a report has them.
    """
    if any(r is not None and r.get("task") in TEXT_TASKS for r in reports.values()):
        return format_text_table(reports, markdown)
    keys = ["accuracy", "last_number_accuracy", "format_rate"]
    for optional in ("numeric_answer_rate", "placeholder_reasoning_rate", "clipped"):  # (older reports lack them)
        if any(r is not None and optional in r for r in reports.values()):
            keys.append(optional)
    rows = [["metric (95% interval)", *reports]]
    rows.append(["n", *("-" if r is None or r.get("n") is None else str(r["n"]) for r in reports.values())])
    for key in keys:
        rows.append([key, *("-" if r is None else _rate_cell(r, key) for r in reports.values())])
    lengths = [None if r is None else r.get("mean_completion_length") for r in reports.values()]
    rows.append(["mean_completion_length", *("-" if v is None else f"{v:.1f}" for v in lengths)])
    return render_table(rows, markdown)


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_comparisons(comparisons: list[dict], markdown: bool = False) -> str:
    """The paired rows under a closing table: accuracy, format, numeric-answer and placeholder-reasoning
    change per pair of columns.

    Each row: ``before -> after``, the metric, the difference in percentage points with its 95 %
    interval (Newcombe), problems lost / gained, the exact McNemar p and, in words, whether the
    change is significant at 5 % ("no significant change" when p >= 0.05).

    Args:
        comparisons: :func:`compare_columns` output.
        markdown: a markdown table instead of aligned text.

    Returns:
        The text, with a heading line; ``""`` when there is nothing to compare.
    """
    if not comparisons:
        return ""
    if any("paired" in e for e in comparisons):  # translation / summarization: sacreBLEU / ROUGE paired tests
        return "\n\n".join(f"{e['before']} -> {e['after']}: not compared: {e['error']}" if "error" in e
                           else format_text_comparison(e["before"], e["after"], e, markdown) for e in comparisons)
    rows = [["pair", "metric", "change [95% interval]", "lost/gained", "McNemar p", ""]]
    notes = []
    for entry in comparisons:
        pair = f"{entry['before']} -> {entry['after']}"
        if "error" in entry:
            notes.append(f"{pair}: not compared: {entry['error']}")
            continue
        for rate in ("accuracy", "format_rate", "numeric_answer_rate", "placeholder_reasoning_rate"):
            c = entry.get(rate)
            if c is None:  # a report from before this rate existed
                continue
            low, high = c["difference_ci"]
            rows.append([pair, rate, f"{100 * c['difference']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]",
                         f"{c['lost']}/{c['gained']}", _p_text(c["mcnemar_p"]),
                         "significant" if c["mcnemar_p"] < 0.05 else "no significant change"])
    ns = sorted({e["n"] for e in comparisons if "error" not in e})
    heading = (f"Paired on the same {ns[0]} problems" if len(ns) == 1 else "Paired on the same problems") + \
        " (change = after - before, 95% Newcombe interval; lost = right before, wrong after):"
    parts = [heading] + ([render_table(rows, markdown, left=(0, 1, 5))] if len(rows) > 1 else []) + notes
    return "\n".join(parts) if not markdown else "\n\n".join(parts)
