"""Extractive question answering: predict the answer span in a context, as in the course's chapter 7.7.

Run:
    python -m recipes.question_answering --config recipes/configs/question_answering.yaml
    grpo recipe question_answering --config recipes/configs/question_answering.yaml --max_steps 20

Data: squad's schema -- ``id``, ``context``, ``question``, ``answers`` = ``{"text": [...],
"answer_start": [...]}`` (character offsets; ``title`` is optional; empty lists = unanswerable, as
in SQuAD v2). Training uses the first answer; evaluation scores against all of them (best match).
No real extractive QA set is on PyPI, so the offline default ``pkg:lee-cloze`` is SQuAD v2 rows
built from real news by a cloze method (recipes/sources/README.md); baselines: "no answer", and
the commonest name of the context missing from the question (:mod:`recipes.baselines`).

Long contexts are split into windows of ``max_length`` tokens overlapping by ``stride`` tokens
(``return_overflowing_tokens``); answers are mapped to token positions through the offset
mapping, and a window that does not hold the whole answer is labelled (0, 0), the [CLS] token.
Predictions take the ``n_best`` start and end logits of every window, keep spans inside the
context no longer than ``max_answer_length`` tokens, and pick the best start+end logit sum. With
``--version_2_with_negative`` (SQuAD v2) the answer is empty when the null score -- the [CLS]
start+end logits, the lowest over the example's windows -- beats that best span by more than
``null_score_diff_threshold``, as transformers' ``run_qa.py`` decides.

Metric: SQuAD EM and F1 (0-100), implemented below (``evaluate.load("squad")`` needs the hub).
Deviations: dynamic padding instead of padding to ``max_length``; transformers 5 removed
``pipeline("question-answering")``, so :func:`answer_questions` is the inference helper.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from functools import partial

import embedded_models
from grpo.common.errors import UserError
from grpo.data.loaders import require_columns
from recipes import _common
from recipes._args import RecipeArgs
from recipes.baselines import exclusive_frequency
from recipes.squad_metric import normalize_answer, squad_scores  # noqa: F401 (part of this recipe's API)

logger = logging.getLogger(__name__)

USAGE = """from transformers import AutoModelForQuestionAnswering, AutoTokenizer
from recipes.question_answering import answer_questions
model = AutoModelForQuestionAnswering.from_pretrained("OUTPUT_DIR")
tokenizer = AutoTokenizer.from_pretrained("OUTPUT_DIR")
answer_questions(model, tokenizer, ["Who founded Ambervale?"], ["Ambervale was founded in 1450 by Talia Varnholt."])"""


@dataclass
class QuestionAnsweringArgs(RecipeArgs):
    # the shared fields' defaults for this task (recipes._args.RecipeArgs)
    model_name_or_path: str = field(default=embedded_models.MINILM, metadata={
        "help": "Model spec: embedded:minilm-l6, a local checkpoint dir or a hub id (course: bert-base-cased)."})
    dataset_name: str = field(default="pkg:lee-cloze", metadata={
        "help": "Train data: pkg:lee-cloze, a local .jsonl/.json/.csv/.parquet in squad's schema or a hub id (squad)."})
    train_split: str = field(default="train", metadata={"help": "Hub split to train on."})
    eval_split: str = field(default="validation", metadata={"help": "Hub split to evaluate on."})
    max_length: int = field(default=384, metadata={"help": "Tokens per window (question + context)."})
    stride: int = field(default=128, metadata={"help": "Tokens shared by consecutive windows of a long context."})
    n_best: int = field(default=20, metadata={"help": "Start/end candidates per window in post-processing."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer span, in tokens."})
    version_2_with_negative: bool = field(default=False, metadata={
        "help": "SQuAD v2: predict no answer when the null ([CLS]) score beats the best span."})
    null_score_diff_threshold: float = field(default=0.0, metadata={
        "help": "SQuAD v2: answer null when null score - best span score > this."})

    def __post_init__(self):
        super().__post_init__()  # the model / dataset aliases
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError(f"stride={self.stride}: must be >= 0 and below max_length/2 ({self.max_length // 2}); "
                             "the course uses max_length 384, stride 128")
        if self.n_best < 1 or self.max_answer_length < 1:
            raise ValueError(f"n_best={self.n_best}, max_answer_length={self.max_answer_length}: both must be >= 1")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def _tokenize(batch: dict, tokenizer, args: QuestionAnsweringArgs):
    # Leading/trailing spaces in questions only waste tokens (some SQuAD questions have them).
    questions = [q.strip() for q in batch["question"]]
    return tokenizer(questions, batch["context"], max_length=args.max_length, truncation="only_second",
                     stride=args.stride, return_overflowing_tokens=True, return_offsets_mapping=True)


def _context_span(sequence_ids: list) -> tuple[int, int]:
    """First and last token index of the context (sequence id 1) in one window."""
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def answer_token_span(offsets: list, sequence_ids: list, start_char: int, end_char: int) -> tuple[int, int]:
    """Token (start, end) of the character span [start_char, end_char) in one window; (0, 0) if outside.

    >>> offsets = [(0, 0), (0, 3), (0, 0), (0, 4), (5, 9), (10, 12), (0, 0)]
    >>> seq = [None, 0, None, 1, 1, 1, None]
    >>> answer_token_span(offsets, seq, 5, 12), answer_token_span(offsets, seq, 5, 20)
    ((4, 5), (0, 0))
    """
    context_start, context_end = _context_span(sequence_ids)
    if offsets[context_start][0] > start_char or offsets[context_end][1] < end_char:
        return 0, 0  # the answer is not fully inside this window: point at [CLS]
    start = context_start
    while start <= context_end and offsets[start][0] <= start_char:
        start += 1
    end = context_end
    while end >= context_start and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _first_answer(answers, where: str) -> tuple[int, int] | None:
    for key in ("text", "answer_start"):
        if not isinstance(answers, dict) or key not in answers:
            raise UserError(f"{where}: missing field 'answers.{key}' (squad schema: answers = "
                            "{\"text\": [...], \"answer_start\": [...]})")
    if not answers["text"]:
        return None  # unanswerable (SQuAD v2 style): the label stays on [CLS]
    start = int(answers["answer_start"][0])
    return start, start + len(answers["text"][0])


def preprocess(batch: dict, tokenizer, args: QuestionAnsweringArgs) -> dict:
    """Training features: one or more windows per example, labelled with answer token positions.

    Args:
        batch: columns ``question``, ``context``, ``answers`` (``Dataset.map(batched=True)``).
        tokenizer: a fast tokenizer (offset mappings need one).
        args: uses ``max_length`` and ``stride``.

    Returns:
        ``input_ids``, ``attention_mask`` (+ ``token_type_ids``), ``start_positions``,
        ``end_positions``; more rows than ``batch`` when contexts overflow.

    Raises:
        UserError: an ``answers`` value without ``text`` or ``answer_start``.
    """
    inputs = _tokenize(batch, tokenizer, args)
    sample_map = inputs.pop("overflow_to_sample_mapping")
    offsets_all = inputs.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offsets_all):
        span = _first_answer(batch["answers"][sample_map[i]], f"row {sample_map[i]} of this batch")
        start, end = (0, 0) if span is None else answer_token_span(offsets, inputs.sequence_ids(i), *span)
        starts.append(start)
        ends.append(end)
    inputs["start_positions"] = starts
    inputs["end_positions"] = ends
    return inputs


def preprocess_validation(batch: dict, tokenizer, args: QuestionAnsweringArgs) -> dict:
    """Eval features: windows plus ``example_id`` and an ``offset_mapping`` that is None outside the context."""
    inputs = _tokenize(batch, tokenizer, args)
    sample_map = inputs.pop("overflow_to_sample_mapping")
    inputs["example_id"] = [str(batch["id"][s]) for s in sample_map]
    inputs["offset_mapping"] = [
        [o if seq == 1 else None for o, seq in zip(offsets, inputs.sequence_ids(i))]
        for i, offsets in enumerate(inputs["offset_mapping"])
    ]
    return inputs


# ---------------------------------------------------------------------------------------------
# Post-processing and metrics


def postprocess(start_logits, end_logits, features, examples, n_best: int = 20, max_answer_length: int = 30,
                return_spans: bool = False, version_2_with_negative: bool = False,
                null_score_diff_threshold: float = 0.0) -> dict:
    """Best answer text per example id from window logits.

    Args:
        start_logits / end_logits: (num_features, T) arrays; T may exceed a window's length
            (dynamic padding), those positions are skipped.
        features: rows with ``example_id`` and ``offset_mapping`` (None outside the context).
        examples: rows with ``id`` and ``context``.
        n_best: candidates per side per window.
        max_answer_length: longest span in tokens.
        return_spans: return ``{"answer", "start", "end", "score"}`` dicts (character offsets,
            start+end logit) instead of the text.
        version_2_with_negative / null_score_diff_threshold: answer "" when the lowest [CLS]
            score of the example's windows exceeds the best span's score by more than the threshold.

    Returns:
        ``{example_id: answer_text}``; "" when no valid span exists or the null answer wins.
    """
    import numpy as np

    by_example = collections.defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(index)
    all_offsets = features["offset_mapping"]
    answers = {}
    for example in examples:
        example_id, context = str(example["id"]), example["context"]
        best_text, best_score, best_span, null_score = "", -float("inf"), (0, 0), float("inf")
        for index in by_example[example_id]:
            offsets = all_offsets[index]
            null_score = min(null_score, float(start_logits[index][0] + end_logits[index][0]))  # [CLS]
            starts = np.argsort(start_logits[index])[-1: -n_best - 1: -1].tolist()
            ends = np.argsort(end_logits[index])[-1: -n_best - 1: -1].tolist()
            for s in starts:
                for e in ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue  # padding or outside the context
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start_logits[index][s] + end_logits[index][e]
                    if score > best_score:
                        best_span, best_score = (offsets[s][0], offsets[e][1]), score
                        best_text = context[best_span[0]: best_span[1]]
        if version_2_with_negative and null_score - best_score > null_score_diff_threshold:
            best_text, best_span, best_score = "", (0, 0), null_score
        answers[example_id] = best_text if not return_spans else {
            "answer": best_text, "start": best_span[0], "end": best_span[1], "score": float(best_score)}
    return answers


def answer_questions(model, tokenizer, questions: list[str], contexts: list[str], max_length: int = 384,
                     stride: int = 128, n_best: int = 20, max_answer_length: int = 30,
                     version_2_with_negative: bool = False, null_score_diff_threshold: float = 0.0) -> list[dict]:
    """Answer questions with a checkpoint: what ``pipeline("question-answering")`` did before transformers 5
    removed that task. Same windows and post-processing as the evaluation above.

    Args:
        model / tokenizer: e.g. ``AutoModelForQuestionAnswering.from_pretrained(output_dir)`` and
            ``AutoTokenizer.from_pretrained(output_dir)``.
        questions / contexts: parallel lists of strings.
        version_2_with_negative / null_score_diff_threshold: as in :func:`postprocess` (a SQuAD v2
            checkpoint may answer "", with start = end = 0 and the null score).

    Returns:
        One ``{"answer", "start", "end", "score"}`` per question (character offsets into its context).
    """
    import torch

    args = QuestionAnsweringArgs(max_length=max_length, stride=stride, n_best=n_best,
                                 max_answer_length=max_answer_length)
    ids = [str(i) for i in range(len(questions))]
    features = preprocess_validation({"id": ids, "question": questions, "context": contexts}, tokenizer, args)
    inputs = tokenizer.pad({k: v for k, v in features.items() if k not in ("example_id", "offset_mapping")},
                           return_tensors="pt")
    model.eval()
    with torch.no_grad():
        out = model(**{k: v.to(model.device) for k, v in inputs.items()})
    spans = postprocess(out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy(), features,
                        [{"id": i, "context": c} for i, c in zip(ids, contexts)], n_best, max_answer_length,
                        return_spans=True, version_2_with_negative=version_2_with_negative,
                        null_score_diff_threshold=null_score_diff_threshold)
    return [spans[i] for i in ids]


def compute_metrics(start_logits, end_logits, features, examples, args: QuestionAnsweringArgs) -> dict:
    """Post-process window logits into answers and score them against the examples' gold answers."""
    predictions = postprocess(start_logits, end_logits, features, examples, args.n_best, args.max_answer_length,
                              version_2_with_negative=args.version_2_with_negative,
                              null_score_diff_threshold=args.null_score_diff_threshold)
    return squad_scores(predictions, {str(ex["id"]): ex["answers"]["text"] for ex in examples})


# ---------------------------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    import transformers

    args, training_args = _common.parse_args(QuestionAnsweringArgs, argv)
    train_raw, eval_raw = _common.load_splits(
        args.dataset_name, args.eval_dataset, columns=["context", "question", "answers"], train_split=args.train_split,
        eval_split=args.eval_split, eval_fraction=args.eval_fraction, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, seed=training_args.seed)
    require_columns(eval_raw, ["id"], args.eval_dataset or args.dataset_name)
    for index, row in enumerate(eval_raw):
        _common.check_row_fields(row, ["answers.text", "answers.answer_start"], args.eval_dataset or args.dataset_name, index)
    model, tokenizer = _common.load_model_and_tokenizer(
        args.model_name_or_path, "question-answering", seed=training_args.seed, require_fast=True)

    train_ds = train_raw.map(partial(preprocess, tokenizer=tokenizer, args=args), batched=True,
                             remove_columns=train_raw.column_names)
    eval_features = eval_raw.map(partial(preprocess_validation, tokenizer=tokenizer, args=args), batched=True,
                                 remove_columns=eval_raw.column_names)
    logger.info("%d train examples -> %d windows; %d eval examples -> %d windows",
                len(train_raw), len(train_ds), len(eval_raw), len(eval_features))
    trainer = transformers.Trainer(
        model=model, args=training_args, train_dataset=train_ds,
        data_collator=transformers.DataCollatorWithPadding(tokenizer=tokenizer), processing_class=tokenizer)
    model_inputs = eval_features.remove_columns(["example_id", "offset_mapping"])

    def evaluate() -> dict:
        start_logits, end_logits = trainer.predict(model_inputs).predictions
        return compute_metrics(start_logits, end_logits, eval_features, eval_raw, args)

    references = {str(ex["id"]): ex["answers"]["text"] for ex in eval_raw}
    baselines = {"exclusive frequency": squad_scores(
        {str(ex["id"]): exclusive_frequency(ex["question"], ex["context"]) for ex in eval_raw}, references)}
    if args.version_2_with_negative:
        baselines["always null"] = squad_scores({}, references)
    before, after, _ = _common.train_and_evaluate(trainer, evaluate)
    _common.finish(trainer, args, training_args, task="question_answering", pipeline_tag="question-answering",
                   before=before, after=after, argv=argv, baselines=baselines,
                   train_data={"spec": args.dataset_name, "rows": len(train_raw), "windows": len(train_ds)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset_name} ({args.eval_split})", "rows": len(eval_raw),
                              "windows": len(eval_features)},
                   usage=USAGE.replace("OUTPUT_DIR", str(training_args.output_dir)))
    return 0


if __name__ == "__main__":
    _common.cli(main)
