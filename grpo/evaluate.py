"""Before/after evaluation on GSM8K-format problems: accuracy, format rate, mean completion length.

``grpo eval --model runs/gsm8k/checkpoint --dataset test.jsonl --limit 200`` generates one greedy
completion per problem (batched, left-padded) and scores it with the same reward functions the
training uses:

* ``accuracy`` -- the ``<answer>`` content equals the gold number (``correctness`` reward, math-verify);
* ``last_number_accuracy`` -- the last number anywhere in the completion equals the gold number
  (what a base model that ignores the format still gets right);
* ``format_rate`` -- the completion has ``<reasoning>...</reasoning>`` then ``<answer>...</answer>``
  (``soft_format`` reward);
* ``mean_completion_length`` -- tokens, up to and including the end-of-turn token.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def generate_greedy(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int,
                    progress: bool = True) -> tuple[list[str], list[int]]:
    """Greedy completions for chat prompts, batched.

    Args:
        model: a causal LM (peft models work too).
        tokenizer: its tokenizer, with a chat template.
        prompts: conversational prompts, each a list of ``{"role", "content"}``.
        max_new_tokens: generation budget per prompt, tokens.
        batch_size: prompts generated together.
        progress: show a tqdm bar.

    Returns:
        ``(texts, lengths)``: decoded completions (special tokens stripped) and their token counts.
    """
    import torch
    from tqdm.auto import tqdm

    from grpo.sampler import generate

    texts, lengths = [], []
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
                                   do_sample=False, stop_token_ids=[eos])
            for completion in rollout.completion_ids:
                lengths.append(len(completion))
                texts.append(tokenizer.decode(completion, skip_special_tokens=True))
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return texts, lengths


def score_completions(completions: list[str], answers: list[str], prompt_format: str = "tags") -> dict:
    """Accuracy, last-number accuracy and format rate of plain-text completions against gold answers.

    With ``prompt_format="hash"`` (verl's GSM8K prompt) accuracy reads the number after ``####`` and
    the format rate is the share of completions with a ``####`` answer line.
    """
    import rewards
    from rewards.text import extract_hash

    extractor = "hash" if prompt_format == "hash" else "answer_tag"
    correct = rewards.get("correctness", extractors=[extractor])(completions, answer=answers)
    last = rewards.get("correctness", extractors=["last_number"])(completions, answer=answers)
    if prompt_format == "hash":
        fmt = [extract_hash(c) is not None for c in completions]
    else:
        fmt = rewards.get("soft_format")(completions)
    n = max(len(completions), 1)
    return {
        "accuracy": sum(1 for c in correct if c) / n,
        "last_number_accuracy": sum(1 for c in last if c) / n,
        "format_rate": sum(1 for f in fmt if f) / n,
        "per_problem": [{"correct": bool(c), "last_number_correct": bool(ln), "format": bool(f)}
                        for c, ln, f in zip(correct, last, fmt)],
    }


def evaluate(model, tokenizer, dataset, max_new_tokens: int = 256, batch_size: int = 16, progress: bool = True,
             prompt_format: str = "tags") -> dict:
    """Evaluate on rows with ``prompt`` and ``answer`` columns (see :func:`grpo.data.load_gsm8k`).

    Returns:
        ``{"n", "accuracy", "last_number_accuracy", "format_rate", "mean_completion_length", "samples"}``;
        rates are fractions in [0, 1], the length is in tokens, ``samples`` holds every
        question, gold answer, completion and its scores.
    """
    prompts, answers = list(dataset["prompt"]), list(dataset["answer"])
    texts, lengths = generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size, progress)
    scores = score_completions(texts, answers, prompt_format)
    samples = [{"question": p[-1]["content"], "answer": a, "completion": t, "tokens": n, **s}
               for p, a, t, n, s in zip(prompts, answers, texts, lengths, scores.pop("per_problem"))]
    return {"n": len(texts), **scores, "mean_completion_length": sum(lengths) / max(len(lengths), 1),
            "max_new_tokens": max_new_tokens, "samples": samples}


def format_table(reports: dict, markdown: bool = False) -> str:
    """The evaluation reports side by side, one column per ``{label: report}`` entry."""
    keys = ["accuracy", "last_number_accuracy", "format_rate", "mean_completion_length"]
    labels = list(reports)
    rows = [["metric", *labels]]
    for key in keys:
        cells = []
        for report in reports.values():
            value = None if report is None else report.get(key)
            cells.append("-" if value is None else (f"{value:.1f}" if key.startswith("mean") else f"{value:.1%}"))
        rows.append([key, *cells])
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + " --- |" * len(rows[0]))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    return "\n".join("".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
