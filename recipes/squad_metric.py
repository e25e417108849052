"""SQuAD's exact match and F1 (v1 and v2), the metric ``evaluate.load("squad" / "squad_v2")`` would fetch
from the hub (which fails offline): the official answer normalisation, max over gold answers, and
for unanswerable questions (no gold answer) the empty prediction as the only right one.

Used by :mod:`recipes.question_answering`; no model or tokenizer involved.
"""

from __future__ import annotations

import collections
import re
import string


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and articles, squeeze whitespace.

    >>> normalize_answer("The  Old Bridge!")
    'old bridge'
    """
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict, references: dict) -> dict:
    """SQuAD exact match and F1 in percent, each the max over an example's gold answers, averaged.

    Args:
        predictions: ``{id: predicted_text}``.
        references: ``{id: [gold_text, ...]}`` (an empty list scores against "").

    Returns:
        ``exact_match`` and ``f1``; with unanswerable references also SQuAD v2's ``HasAns_f1``
        (answerable examples only) and ``NoAns_exact`` (share of unanswerable ones answered "").

    >>> scores = squad_scores({"a": "the Olm", "b": "Tarrow river"}, {"a": ["Olm"], "b": ["Wendle", "the Tarrow"]})
    >>> {k: round(v, 2) for k, v in scores.items()}
    {'exact_match': 50.0, 'f1': 83.33}
    """
    if not references:
        return {"exact_match": 0.0, "f1": 0.0}
    em, f1 = {}, {}
    for example_id, golds in references.items():
        prediction = predictions.get(example_id, "")
        golds = list(golds) or [""]
        em[example_id] = max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
        f1[example_id] = max(_f1(prediction, g) for g in golds)
    mean = lambda values: 100.0 * sum(values) / len(values) if values else 0.0  # noqa: E731
    scores = {"exact_match": mean(list(em.values())), "f1": mean(list(f1.values()))}
    if any(not golds for golds in references.values()):
        scores["HasAns_f1"] = mean([f1[i] for i, golds in references.items() if golds])
        scores["NoAns_exact"] = mean([em[i] for i, golds in references.items() if not golds])
    return scores
