"""Greedy generation on prompt/source/reference rows, scored by :mod:`grpo.evaluation.text_metrics`."""

from __future__ import annotations

from grpo.evaluation.evaluate import generate_greedy
from grpo.evaluation.text_metrics import check_task, text_report


def evaluate_text(model, tokenizer, dataset, task: str, max_new_tokens: int = 64, batch_size: int = 16,
                  progress: bool = True, dtype=None) -> dict:
    """Greedy outputs for each row's ``prompt``, scored against its ``reference``
    (:func:`grpo.evaluation.text_metrics.text_report`).

    Args:
        dataset: rows with ``prompt`` (conversational), ``source`` and ``reference``
            (:func:`grpo.data.reference_rows.reference_rows`).
        task: ``translation`` or ``summarization``.
        max_new_tokens, batch_size, progress, dtype: as :func:`grpo.evaluation.evaluate.generate_greedy`.
    """
    check_task(task)
    texts, lengths, clipped = generate_greedy(model, tokenizer, list(dataset["prompt"]), max_new_tokens, batch_size,
                                              progress, dtype=dtype)
    return text_report(task, [t.strip() for t in texts], {"source": dataset["source"], "reference": dataset["reference"]},
                       lengths, clipped)
