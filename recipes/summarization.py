"""Summarization (course chapter 7, "Summarization"): fine-tune a model to write one-line summaries.

    python -m recipes.summarization --config recipes/configs/summarization.yaml
    grpo recipe summarization --config recipes/configs/summarization.yaml --max_steps 10

The sequence-to-sequence task of :mod:`recipes.seq2seq` (encoder-decoder: the course's ``google/mt5-small``,
``t5-small`` on XSum, bart; decoder-only: the offline default, embedded SmolLM2-135M-Instruct) with a document
as the source and its summary as the target.

Data: XSum rows ``{"document": ..., "summary": ...}`` (column names set by ``text_column`` /
``summary_column``, e.g. ``review_body``/``review_title`` for the course's Amazon reviews). The
offline default ``pkg:lee-lead`` is real news built the way XSum was: each ABC story's lead
sentence is the summary, the rest of the story the document (recipes/sources/README.md).
``--eval_dataset my.jsonl`` scores on your own rows. The lead-1 baseline (the document's first
sentence, :func:`recipes.baselines.lead_sentences`) is reported next to the model, as the course does.

Metric: ROUGE-1/2/L/Lsum F1 x 100 (mean over examples) from the ``rouge_score`` package, because
``evaluate.load("rouge")`` fetches its script from the hub and fails offline. ROUGE-Lsum needs
one sentence per line; nltk's punkt model is a download too, so sentences are split on end
punctuation followed by whitespace (:func:`split_sentences`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recipes import seq2seq
from recipes.baselines import lead_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

INSTRUCTION = "Summarize this article in one sentence."


@dataclass
class SummarizationArgs(seq2seq.Seq2SeqArgs):
    text_column: str = field(default="document", metadata={"help": "Column holding the text to summarize."})
    summary_column: str = field(default="summary", metadata={"help": "Column holding the reference summary."})
    SOURCE_AND_TARGET = ("text_column", "summary_column")
    # the shared fields' defaults for this task
    dataset_name: str = field(default="pkg:lee-lead", metadata={
        "help": "Rows with a document and a summary column: pkg:lee-lead, a local file or a hub id."})
    max_source_length: int = field(default=512, metadata={"help": "Document tokens kept (truncation)."})
    max_target_length: int = field(default=64, metadata={"help": "Summary tokens kept (truncation)."})
    instruction: str = field(default=INSTRUCTION, metadata={"help": "Decoder-only only: instruction before the "
                                                                     "document in the prompt."})


def pairs(rows: dict, args: SummarizationArgs) -> tuple[list[str], list[str]]:
    """``(documents, summaries)`` of rows given as columns (a ``map`` batch, or ``dataset[:]``)."""
    return list(rows[args.text_column]), list(rows[args.summary_column])


def preprocess(batch: dict, tokenizer, args: SummarizationArgs) -> dict:
    """Training features of a batch of document/summary rows (:func:`recipes.seq2seq.tokenize`)."""
    return seq2seq.tokenize(*pairs(batch, args), tokenizer, args)


# ---------------------------------------------------------------------------------------------
# Metric

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, as ROUGE-Lsum expects (a punctuation split instead of nltk punkt).

    >>> split_sentences("It rained. Roads shut! Why?")
    'It rained.\\nRoads shut!\\nWhy?'
    """
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def compute_metrics(predictions: list[str], references: list[str]) -> dict:
    """ROUGE-1/2/L/Lsum F1 x 100, averaged over examples (stemming on, as the course's metric).

    >>> compute_metrics(["the cat sat"], ["the cat sat"])["rouge1"]
    100.0
    """
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    count = max(len(predictions), 1)
    return {key: round(100 * value / count, 4) for key, value in totals.items()}


def baselines(train_raw, eval_raw, args: SummarizationArgs) -> dict:
    """ROUGE of the lead-1 summary (the document's first sentence, :func:`recipes.baselines.lead_sentences`)."""
    documents, summaries = pairs(eval_raw[:], args)
    return {"lead-1": compute_metrics([lead_sentences(d) for d in documents], summaries)}


USAGE = seq2seq.usage(INSTRUCTION, "DOCUMENT", "summarization")
TASK = seq2seq.Seq2SeqTask(
    name="summarization", pipeline_tag="summarization", args_cls=SummarizationArgs,
    columns=lambda args: [args.text_column, args.summary_column],
    fields=lambda args: [args.text_column, args.summary_column],
    pairs=pairs, compute_metrics=compute_metrics, metric_keys=ROUGE_TYPES, baselines=baselines, unit="documents",
    usage=USAGE)


def main(argv=None) -> int:
    """Parse the config, train, evaluate before/after, save the checkpoint. Returns the exit code."""
    return seq2seq.main(TASK, argv)


if __name__ == "__main__":
    from recipes import _common

    _common.cli(main)
