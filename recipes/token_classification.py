"""Token classification (NER): fine-tune an encoder to tag each word, as in the course's chapter 7.2.

Run:
    python -m recipes.token_classification --config recipes/configs/token_classification.yaml
    grpo recipe token_classification --config recipes/configs/token_classification.yaml --max_steps 20

Data: conll2003's schema -- ``tokens`` (list of words) and ``ner_tags`` (list of tag names such as
``"B-person"``, or of label ids). The offline default is ``pkg:wnut16``, 2,394 real tweets with 10
entity types (recipes/sources/README.md); ``--eval_dataset my.jsonl`` scores on your own rows in
the same schema. The tag set is read from the data: a ``ClassLabel`` feature's names (hub
conll2003), else the distinct tag strings of train + eval (``O`` first, then ``B-``/``I-`` per type),
else -- ids without names -- ``--tag_names`` (conll2003's nine tags if unset, the order of the
template files ``tests/fixtures/recipes/ner_*.jsonl``). Words are split into word pieces; special tokens get
-100 and a word's continuation pieces get the word's label with ``B-X`` turned into ``I-X`` (the
chapter's rule) -- or -100 with ``--label_all_tokens false`` (the chapter's "your turn" variant).

Metric: seqeval precision / recall / F1 / accuracy over entity spans of *words* (each word's first
piece), so the model and the entity-lookup baseline (:func:`recipes.baselines.entity_lookup`,
every train entity string tagged wherever it occurs) are scored on the same units.
``evaluate.load("seqeval")`` fetches its script from the hub, which fails offline, so the
``seqeval`` package is called directly with the same settings (default IOB2, micro averages).

Output: ``output_dir`` holds the checkpoint (``pipeline("ner", model=output_dir)`` loads it),
``metrics.json`` and a model card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import partial

import embedded_models
from grpo.common.errors import UserError
from recipes import _common
from recipes._args import RecipeArgs
from recipes.baselines import entity_lookup

logger = logging.getLogger(__name__)

CONLL2003_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
USAGE = """from transformers import pipeline
ner = pipeline("ner", model="OUTPUT_DIR", aggregation_strategy="simple")
ner("Talia Varnholt joined Kestrel Labs in Port Calloway.")"""


@dataclass
class TokenClassificationArgs(RecipeArgs):
    # Model
    model_name_or_path: str = field(default=embedded_models.MINILM, metadata={
        "help": "Model spec: embedded:minilm-l6, a local checkpoint dir or a hub id (course: bert-base-cased)."})
    # Data
    dataset_name: str = field(default="pkg:wnut16", metadata={
        "help": "Train data: pkg:wnut16 (real tweets), a local .jsonl/.json/.csv/.parquet in conll2003's "
                "schema or a hub id (conll2003)."})
    train_split: str = field(default="train", metadata={"help": "Hub split to train on."})
    eval_split: str = field(default="validation", metadata={"help": "Hub split to evaluate on."})
    tokens_column: str = field(default="tokens", metadata={"help": "Column with the list of words."})
    tags_column: str = field(default="ner_tags", metadata={"help": "Column with the per-word tags."})
    tag_names: list[str] = field(default_factory=list, metadata={
        "help": "Tag names by id, for data whose tags are ids without ClassLabel names (empty: conll2003's "
                "nine); string tags and ClassLabel names are read from the data instead."})
    label_all_tokens: bool = field(default=True, metadata={
        "help": "Label continuation word pieces (B- becomes I-) as the chapter does; false = -100 on them."})
    max_length: int = field(default=256, metadata={"help": "Truncate tokenized sentences to this many tokens."})

    def __post_init__(self):
        super().__post_init__()
        if len(set(self.tag_names)) != len(self.tag_names):
            raise ValueError(f"tag_names={self.tag_names}: must be distinct names")
        if self.max_length < 8:
            raise ValueError(f"max_length={self.max_length}: too small, use at least 8 (course: 512)")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def continuation_label_ids(label_names: list[str]) -> list[int]:
    """For each label id, the id a word's continuation piece gets: ``B-X`` -> ``I-X``, others unchanged.

    >>> continuation_label_ids(["O", "B-PER", "I-PER"])
    [0, 2, 2]
    """
    index = {name: i for i, name in enumerate(label_names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(label_names)]


def align_labels_with_tokens(labels: list[int], word_ids: list[int | None], inside: list[int],
                             label_all_tokens: bool = True) -> list[int]:
    """Word labels -> one label per token.

    Args:
        labels: one label id per word.
        word_ids: the tokenizer's ``word_ids()`` for the sentence (None for special tokens).
        inside: :func:`continuation_label_ids` of the label set.
        label_all_tokens: label continuation pieces (``B-`` -> ``I-``); False gives them -100.

    Returns:
        One id per token; -100 (ignored by the loss) on special tokens.

    >>> align_labels_with_tokens([3, 0], [None, 0, 0, 1, None], inside=[0, 2, 2, 4, 4])
    [-100, 3, 4, 0, -100]
    """
    aligned, previous = [], None
    for word_id in word_ids:
        if word_id is None:
            aligned.append(-100)
        elif word_id != previous:
            aligned.append(labels[word_id])
        else:
            aligned.append(inside[labels[word_id]] if label_all_tokens else -100)
        previous = word_id
    return aligned


def tag_ids(tags: list, label_names: list[str], where: str) -> list[int]:
    """Tags as ids: ints are range-checked, strings are looked up in ``label_names``.

    Raises:
        UserError: an unknown tag name or an id outside ``label_names``, naming ``where``.
    """
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for tag in tags:
        if isinstance(tag, str):
            if tag not in index:
                raise UserError(f"{where}: tag {tag!r} is not in label_names {label_names}")
            out.append(index[tag])
        elif isinstance(tag, int) and 0 <= tag < len(label_names):
            out.append(tag)
        else:
            raise UserError(f"{where}: tag {tag!r} is not a label id 0..{len(label_names) - 1} (label_names: {label_names})")
    return out


def preprocess(batch: dict, tokenizer, args: TokenClassificationArgs) -> dict:
    """Tokenize pre-split words and align the word tags to word pieces (``Dataset.map(batched=True)``).

    Args:
        batch: columns ``args.tokens_column`` (list of words per row) and ``args.tags_column``.
        tokenizer: a fast tokenizer (``word_ids`` needs one).
        args: uses ``tag_names``, ``label_all_tokens``, ``max_length``.

    Returns:
        ``input_ids``, ``attention_mask`` (+ ``token_type_ids``) and ``labels``, unpadded (the
        collator pads labels with -100).

    Raises:
        UserError: a row whose words and tags differ in length, or an unknown tag.
    """
    words, tags = batch[args.tokens_column], batch[args.tags_column]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=args.max_length)
    inside = continuation_label_ids(args.tag_names)
    lines = batch.get("_line") or [None] * len(words)
    all_labels = []
    for i, (row_words, row_tags) in enumerate(zip(words, tags)):
        where = f"line {lines[i]}" if lines[i] is not None else f"row {i} of this batch"
        if len(row_words) != len(row_tags):
            raise UserError(f"{where}: {len(row_words)} {args.tokens_column} but {len(row_tags)} {args.tags_column}")
        labels = tag_ids(row_tags, args.tag_names, where)
        all_labels.append(align_labels_with_tokens(labels, encoded.word_ids(i), inside, args.label_all_tokens))
    encoded["labels"] = all_labels
    return encoded


# ---------------------------------------------------------------------------------------------
# Metrics


def seqeval_scores(references: list[list[str]], predictions: list[list[str]]) -> dict:
    """Entity-level precision / recall / F1 (micro) and token accuracy, as ``evaluate``'s seqeval.

    >>> ref = [["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]]
    >>> pred = [["B-ORG", "O", "O", "O", "O", "O", "B-MISC", "O", "O"]]
    >>> {k: round(v, 2) for k, v in seqeval_scores(ref, pred).items()}
    {'precision': 1.0, 'recall': 0.67, 'f1': 0.8, 'accuracy': 0.89}
    """
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "precision": float(precision_score(references, predictions, zero_division=0)),
        "recall": float(recall_score(references, predictions, zero_division=0)),
        "f1": float(f1_score(references, predictions, zero_division=0)),
        "accuracy": float(accuracy_score(references, predictions)),
    }


def compute_metrics(eval_pred, label_names: list[str]) -> dict:
    """``Trainer`` hook: argmax the logits, drop -100 positions, score with :func:`seqeval_scores`.

    Args:
        eval_pred: ``(logits (N, T, num_labels), labels (N, T))`` numpy arrays.
        label_names: names by label id.
    """
    import numpy as np

    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)  # (N, T)
    references = [[label_names[t] for t in row if t != -100] for row in labels]
    predicted = [[label_names[p] for p, t in zip(prow, lrow) if t != -100] for prow, lrow in zip(predictions, labels)]
    return seqeval_scores(references, predicted)


# ---------------------------------------------------------------------------------------------
# Main


def dataset_label_names(ds, column: str) -> list[str] | None:
    """Label names from a ``Sequence(ClassLabel)`` feature (hub conll2003), else None."""
    feature = getattr(ds.features.get(column), "feature", None)
    return list(feature.names) if getattr(feature, "names", None) else None


def tag_set_from_data(tag_lists, where: str) -> list[str] | None:
    """The tag set of rows tagged with strings: ``O``, then ``B-``/``I-`` of each type (types sorted).

    Both prefixes are listed for every type seen, so a continuation piece always has its ``I-`` label.
    Returns None when the tags are ids (ints) rather than names.

    >>> tag_set_from_data([["O", "B-loc"], ["I-per", "B-per", "O"]], "x")
    ['O', 'B-loc', 'I-loc', 'B-per', 'I-per']

    Raises:
        UserError: a tag that is not ``O`` / ``B-<type>`` / ``I-<type>``, or names and ids mixed.
    """
    kinds, ids, names = set(), False, False
    for tags in tag_lists:
        for tag in tags:
            if not isinstance(tag, str):
                ids = True
                continue
            names = True
            if tag != "O":
                if tag[:2] not in ("B-", "I-") or len(tag) < 3:
                    raise UserError(f"{where}: tag {tag!r} is not BIO ('O', 'B-<type>' or 'I-<type>')")
                kinds.add(tag[2:])
    if ids and names:
        raise UserError(f"{where}: tags mix names and ids; use one or the other")
    return None if ids else ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds) for prefix in "BI"]


def resolve_tag_names(args: TokenClassificationArgs, train_raw, eval_raw) -> list[str]:
    """ClassLabel names, else the data's tag strings (``--tag_names`` kept if it covers them), else ids' names."""
    column = args.tags_column
    names = dataset_label_names(train_raw, column)
    if names:
        return names
    found = tag_set_from_data([*train_raw[column], *eval_raw[column]], f"{args.dataset_name} / eval data")
    if found is not None:
        return args.tag_names if args.tag_names and set(found) <= set(args.tag_names) else found
    return args.tag_names or list(CONLL2003_LABELS)


def main(argv=None) -> int:
    import transformers

    args, training_args = _common.parse_args(TokenClassificationArgs, argv)
    columns = [args.tokens_column, args.tags_column]
    train_raw, eval_raw = _common.load_splits(
        args.dataset_name, args.eval_dataset, columns=columns, train_split=args.train_split,
        eval_split=args.eval_split, eval_fraction=args.eval_fraction, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, seed=training_args.seed, keep_line=True)
    args.tag_names = resolve_tag_names(args, train_raw, eval_raw)
    logger.info("%d tags: %s", len(args.tag_names), " ".join(args.tag_names))
    id2label = dict(enumerate(args.tag_names))
    model, tokenizer = _common.load_model_and_tokenizer(
        args.model_name_or_path, "token-classification", seed=training_args.seed, require_fast=True,
        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    if model.config.num_labels != len(args.tag_names):
        raise UserError(f"model {args.model_name_or_path!r} has {model.config.num_labels} labels but tag_names has "
                        f"{len(args.tag_names)}; pass matching --tag_names")

    train_ds = train_raw.map(partial(preprocess, tokenizer=tokenizer, args=args), batched=True,
                             remove_columns=train_raw.column_names)
    # Scored on words (first pieces only), like the baseline, whatever label_all_tokens does in training.
    eval_ds = eval_raw.map(partial(preprocess, tokenizer=tokenizer, args=replace(args, label_all_tokens=False)),
                           batched=True, remove_columns=eval_raw.column_names)
    as_names = lambda rows: [[args.tag_names[t] if isinstance(t, int) else t for t in tags] for tags in rows]  # noqa: E731
    lookup = entity_lookup(train_raw[args.tokens_column], as_names(train_raw[args.tags_column]),
                           eval_raw[args.tokens_column])
    baselines = {"entity lookup": seqeval_scores(as_names(eval_raw[args.tags_column]), lookup)}
    trainer = transformers.Trainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=transformers.DataCollatorForTokenClassification(tokenizer=tokenizer),
        compute_metrics=partial(compute_metrics, label_names=args.tag_names), processing_class=tokenizer)

    def evaluate() -> dict:
        metrics = trainer.evaluate()
        return {k: float(metrics[f"eval_{k}"]) for k in ("precision", "recall", "f1", "accuracy", "loss")}

    before, after, _ = _common.train_and_evaluate(trainer, evaluate)
    _common.finish(trainer, args, training_args, task="token_classification", pipeline_tag="token-classification",
                   before=before, after=after, argv=argv, baselines=baselines,
                   train_data={"spec": args.dataset_name, "rows": len(train_raw), "features": len(train_ds)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset_name} ({args.eval_split})", "rows": len(eval_raw)},
                   usage=USAGE.replace("OUTPUT_DIR", str(training_args.output_dir)))
    return 0


if __name__ == "__main__":
    _common.cli(main)
