"""Evaluation of translation and summarization: corpus metrics, trivial baselines, paired comparisons.

``grpo eval --task translation|summarization`` and ``grpo train`` with ``task`` set generate one
greedy completion per held-out row (:func:`grpo.evaluation.text_eval.evaluate_text`) and score them the way the recipes do:

* translation: corpus sacreBLEU ``bleu`` and ``chrf`` (0-100), each with sacreBLEU's bootstrap 95 %
  interval (``corpus_score(..., n_bootstrap=1000)``), and the *copy source* baseline (the English
  string unchanged, :mod:`recipes.translation`);
* summarization: ROUGE-1/2/L/Lsum F1 x 100 from ``rouge_score`` (stemming on), the mean over rows
  with a percentile-bootstrap 95 % interval, and the *lead-1* baseline (the document's first sentence,
  :func:`recipes.baselines.lead_sentences`; the same rule is restated in :func:`lead_sentence`).

:func:`compare_text` pairs two reports of the same rows (and the second with each baseline):
BLEU / chrF with sacreBLEU's paired bootstrap resampling (``sacrebleu.significance.PairedTest``,
``test_type="bs"``: Koehn 2004, as Moses' ``bootstrap-hypothesis-difference-significance.pl``),
ROUGE with a paired bootstrap of the mean per-row difference (same p-value rule) and an exact
two-sided sign test over the rows that changed.
"""

from __future__ import annotations

import logging
import math
import re

from grpo.common.errors import UserError

logger = logging.getLogger(__name__)

TEXT_TASKS = ("translation", "summarization")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
METRICS = {"translation": ("bleu", "chrf"), "summarization": ROUGE_TYPES}
BASELINE = {"translation": "copy source", "summarization": "lead-1"}
N_BOOTSTRAP = 1000
SEED = 12345  # sacreBLEU's default SACREBLEU_SEED

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEAD_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z0-9])")


def lead_sentence(document: str) -> str:
    """The document's first sentence (split at end punctuation before a capital), as the recipes' lead-1.

    >>> lead_sentence("Fires burn in NSW. Rain is due on Friday.")
    'Fires burn in NSW.'
    """
    return _LEAD_END.split(document.strip())[0].strip()


def _sentences(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


# ---------------------------------------------------------------------------- corpus metrics


def _sacrebleu_metrics() -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(), "chrf": CHRF()}


def translation_scores(predictions: list[str], references: list[str], n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """Corpus sacreBLEU BLEU and chrF (0-100) with sacreBLEU's bootstrap 95 % interval.

    Returns:
        ``{"bleu", "bleu_ci", "chrf", "chrf_ci"}``; an interval is ``[low, high]`` (``None`` when
        ``n_bootstrap <= 1`` or fewer than 2 rows).

    >>> translation_scores(["Ouvrir le fichier %s"], ["Ouvrir le fichier %s"], n_bootstrap=1)["bleu"]
    100.0
    """
    out = {}
    refs = [[r.strip() for r in references]]
    hyps = [p.strip() for p in predictions]
    for name, metric in _sacrebleu_metrics().items():
        bootstrap = n_bootstrap if n_bootstrap > 1 and len(hyps) > 1 else 1
        score = metric.corpus_score(hyps, refs, n_bootstrap=bootstrap)
        out[name] = round(min(100.0, float(score.score)), 4)
        ci = getattr(score, "_ci", None)
        mean = getattr(score, "_mean", None)
        out[f"{name}_ci"] = None if ci is None or bootstrap == 1 else [round(float(mean - ci), 4),
                                                                                   round(float(mean + ci), 4)]
    return out


def rouge_rows(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """Per-row ROUGE F1 x 100 (``rouge_score``, stemming on; Lsum on sentence-split lines), as the recipe scores."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    rows = {k: [] for k in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(_sentences(reference), _sentences(prediction))
        for k in ROUGE_TYPES:
            rows[k].append(100 * scores[k].fmeasure)
    return rows


def _bootstrap_mean_ci(values: list[float], n_bootstrap: int, seed: int = SEED) -> list[float] | None:
    import numpy as np

    if n_bootstrap <= 1 or len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(data), size=(n_bootstrap, len(data)))
    means = data[idx].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def summarization_scores(predictions: list[str], references: list[str], n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """Mean ROUGE-1/2/L/Lsum F1 x 100 over rows, each with a percentile-bootstrap 95 % interval (``<key>_ci``).

    >>> summarization_scores(["the cat sat"], ["the cat sat"], n_bootstrap=1)["rougeL"]
    100.0
    """
    out = {}
    for key, values in rouge_rows(predictions, references).items():
        out[key] = round(sum(values) / max(len(values), 1), 4)
        out[f"{key}_ci"] = _bootstrap_mean_ci(values, n_bootstrap)
    return out


def task_scores(task: str, predictions: list[str], references: list[str], n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """:func:`translation_scores` or :func:`summarization_scores` by ``task``."""
    check_task(task)
    scorer = translation_scores if task == "translation" else summarization_scores
    return scorer(predictions, references, n_bootstrap)


def baseline_outputs(task: str, sources: list[str]) -> list[str]:
    """The trivial system's outputs: the source itself (translation) or its first sentence (summarization)."""
    return list(sources) if task == "translation" else [lead_sentence(s) for s in sources]


def check_task(task: str) -> None:
    if task not in TEXT_TASKS:
        raise UserError(f"task={task!r}: use one of {', '.join(TEXT_TASKS)}")


def infer_task(columns) -> str | None:
    """The task a dataset's columns imply: ``translation`` (KDE4 rows), ``summarization`` (document + summary), else None.

    >>> infer_task(["translation"]), infer_task(["document", "summary"]), infer_task(["question", "answer"])
    ('translation', 'summarization', None)
    """
    columns = set(columns)
    if "translation" in columns:
        return "translation"
    if {"document", "summary"} <= columns:
        return "summarization"
    return None


# ---------------------------------------------------------------------------- reports


def text_report(task: str, predictions: list[str], rows: dict, lengths: list[int] | None = None,
                clipped: list[bool] | None = None, n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """A report of one system on reference rows: metrics, the baseline's metrics, per-row samples.

    Args:
        task: ``translation`` or ``summarization``.
        predictions: one output per row.
        rows: ``{"source": [...], "reference": [...]}`` (a batch / dataset columns).
        lengths, clipped: token counts and cut-off flags of the predictions (from generation), if known.

    Returns:
        ``{"task", "n", <metrics>, <metric>_ci, "baselines": {name: metrics}, "samples": [{"source",
        "reference", "prediction"}], ["mean_completion_length", "clipped"]}``.
    """
    sources, references = list(rows["source"]), list(rows["reference"])
    if not (len(predictions) == len(sources) == len(references)):
        raise UserError(f"{len(predictions)} predictions for {len(references)} references: score the same rows")
    report = {"task": task, "n": len(predictions), **task_scores(task, predictions, references, n_bootstrap)}
    report["baselines"] = {BASELINE[task]: task_scores(task, baseline_outputs(task, sources), references, n_bootstrap)}
    if lengths:
        report["mean_completion_length"] = sum(lengths) / len(lengths)
    if clipped:
        report["clipped"] = sum(clipped) / len(clipped)
    report["samples"] = [{"source": s, "reference": r, "prediction": p}
                         for s, r, p in zip(sources, references, predictions)]
    return report


# ---------------------------------------------------------------------------- paired comparisons


def _p_value(centered, observed: float) -> float:
    """Two-sided bootstrap p: share of centered resampled differences at least as large as the observed one
    (sacreBLEU's ``_compute_p_value``: ``(count + 1) / (n + 1)``)."""
    count = int((abs(centered) >= abs(observed)).sum())
    return (count + 1) / (len(centered) + 1)


def sign_test(before: list[float], after: list[float]) -> dict:
    """Exact two-sided sign test over rows where ``after`` differs from ``before`` (ties dropped).

    >>> sign_test([0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1])["p"]
    0.03125
    """
    wins = sum(a > b for a, b in zip(after, before))
    losses = sum(a < b for a, b in zip(after, before))
    n, k = wins + losses, min(wins, losses)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"wins": wins, "losses": losses, "ties": len(before) - n, "p": p}


def paired_bootstrap_mean(before: list[float], after: list[float], n_bootstrap: int = N_BOOTSTRAP,
                          seed: int = SEED) -> dict:
    """Paired bootstrap of the mean per-row difference ``after - before``: difference, 95 % interval, p.

    Rows are resampled with replacement together (the same index for both systems); the p-value
    is sacreBLEU's rule on the centered resampled differences.
    """
    import numpy as np

    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    observed = float(diff.mean()) if len(diff) else 0.0
    if len(diff) < 2:
        return {"difference": observed, "difference_ci": None, "p": 1.0}
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_bootstrap, len(diff)))
    means = diff[idx].mean(axis=1)
    return {"difference": round(observed, 4),
            "difference_ci": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "p": _p_value(means - means.mean(), observed)}


def paired_sacrebleu(before: list[str], after: list[str], references: list[str], n_bootstrap: int = N_BOOTSTRAP,
                     seed: int = SEED) -> dict:
    """sacreBLEU's paired bootstrap resampling of ``after`` against ``before`` for BLEU and chrF.

    Returns:
        ``{"bleu": {"before", "after", "difference", "p"}, "chrf": {...}}`` (scores 0-100; p two-sided).
    """
    from sacrebleu.significance import PairedTest

    sacre_log = logging.getLogger("sacrebleu")
    level = sacre_log.level
    sacre_log.setLevel(logging.WARNING)  # it logs every step at INFO
    try:
        test = PairedTest([("before", [b.strip() for b in before]), ("after", [a.strip() for a in after])],
                          _sacrebleu_metrics(), [[r.strip() for r in references]], test_type="bs",
                          n_samples=n_bootstrap)
        test._seed = seed
        _, scores = test()
    finally:
        sacre_log.setLevel(level)
    out = {}
    metric_keys = [k for k in scores if k != "System"]  # sacreBLEU's own names ("BLEU", "chrF2"), in our order
    for name, key in zip(("bleu", "chrf"), metric_keys):
        base, system = scores[key]
        out[name] = {"before": round(float(base.score), 4), "after": round(float(system.score), 4),
                     "difference": round(float(system.score - base.score), 4), "p": float(system.p_value)}
    return out


def paired_rouge(before: list[str], after: list[str], references: list[str], n_bootstrap: int = N_BOOTSTRAP,
                 seed: int = SEED) -> dict:
    """Per-row ROUGE F1 of both systems, compared with :func:`paired_bootstrap_mean` and :func:`sign_test`.

    Returns:
        ``{rouge_type: {"before", "after", "difference", "difference_ci", "p", "sign_test"}}`` (F1 x 100).
    """
    first, second = rouge_rows(before, references), rouge_rows(after, references)
    out = {}
    for key in ROUGE_TYPES:
        b, a = first[key], second[key]
        out[key] = {"before": round(sum(b) / max(len(b), 1), 4), "after": round(sum(a) / max(len(a), 1), 4),
                    **paired_bootstrap_mean(b, a, n_bootstrap, seed), "sign_test": sign_test(b, a)}
    return out


def _outputs(report: dict, label: str) -> tuple[list[str], list[str], list[str]]:
    samples = report.get("samples")
    if not samples:
        raise UserError(f"the {label} report has no per-row samples, so it cannot be paired; evaluate it again")
    return [s["source"] for s in samples], [s["reference"] for s in samples], [s["prediction"] for s in samples]


def compare_text(before_report: dict, after_report: dict, n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """Paired comparison of two :func:`text_report` reports of the same rows, and of ``after`` with the baseline.

    Returns:
        ``{"task", "n", "paired": {metric: {...}}, "vs_baseline": {"name", metric: {...}}}``; each
        metric entry as :func:`paired_sacrebleu` / :func:`paired_rouge` give it.

    Raises:
        UserError: a report without samples, reports of different tasks or different rows.
    """
    task = before_report.get("task")
    if task != after_report.get("task"):
        raise UserError(f"cannot pair a {task} report with a {after_report.get('task')} report")
    sources, references, before = _outputs(before_report, "before")
    sources_after, references_after, after = _outputs(after_report, "after")
    if sources != sources_after or references != references_after:
        raise UserError(f"cannot pair these reports: they are of different rows ({len(sources)} and "
                        f"{len(sources_after)}); evaluate both models on the same rows")
    paired = paired_sacrebleu if task == "translation" else paired_rouge
    return {"task": task, "n": len(sources), "paired": paired(before, after, references, n_bootstrap),
            "vs_baseline": {"name": BASELINE[task],
                            **paired(baseline_outputs(task, sources), after, references, n_bootstrap)}}


# ---------------------------------------------------------------------------- tables


def render_table(rows: list[list[str]], markdown: bool, left: tuple = (0,)) -> str:
    """Aligned text (columns in ``left`` left-aligned, the others right-aligned) or a markdown table; the
    layout of every evaluation table (:func:`grpo.evaluation.evaluate.format_table` too)."""
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + " --- |" * len(rows[0]))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in rows)


def _cell(report: dict | None, key: str) -> str:
    if report is None or report.get(key) is None:
        return "-"
    ci = report.get(f"{key}_ci")
    return f"{report[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def format_text_table(reports: dict, markdown: bool = False) -> str:
    """The reports side by side (baseline column first), metric rows with their 95 % intervals."""
    present = [r for r in reports.values() if r is not None]
    task = present[0]["task"]
    baseline = next((r["baselines"][BASELINE[task]] for r in present if r.get("baselines")), None)
    columns = ({f"baseline: {BASELINE[task]}": baseline} if baseline else {}) | dict(reports)
    rows = [["metric (95% interval)", *columns]]
    rows.append(["n", *("-" if r is None else str(r.get("n", present[0]["n"])) for r in columns.values())])
    for key in METRICS[task]:
        rows.append([key, *(_cell(r, key) for r in columns.values())])
    lengths = [None if r is None else r.get("mean_completion_length") for r in columns.values()]
    if any(v is not None for v in lengths):
        rows.append(["mean_completion_length", *("-" if v is None else f"{v:.1f}" for v in lengths)])
    return render_table(rows, markdown)


def format_text_comparison(before: str, after: str, comparison: dict, markdown: bool = False) -> str:
    """Rows ``pair | metric | change [interval] | p`` for one :func:`compare_text` result."""
    rows = [["pair", "metric", "before", "after", "change", "paired p", "sign test (w/l, p)"]]
    for pair, entries in ((f"{before} -> {after}", comparison["paired"]),
                          (f"{comparison['vs_baseline']['name']} -> {after}", comparison["vs_baseline"])):
        for key in METRICS[comparison["task"]]:
            e = entries[key]
            ci = e.get("difference_ci")
            change = f"{e['difference']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")
            sign = e.get("sign_test")
            rows.append([pair, key, f"{e['before']:.2f}", f"{e['after']:.2f}", change, f"{e['p']:.4f}",
                         "-" if sign is None else f"{sign['wins']}/{sign['losses']}, {sign['p']:.4f}"])
    test = "sacreBLEU paired bootstrap" if comparison["task"] == "translation" else "paired bootstrap of the mean"
    heading = f"Paired on the same {comparison['n']} rows ({test}, {N_BOOTSTRAP} resamples; p two-sided):"
    return heading + ("\n\n" if markdown else "\n") + render_table(rows, markdown, left=(0, 1))
