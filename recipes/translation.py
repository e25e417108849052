"""Translation (course chapter 7, "Translation"): fine-tune a model to translate English to French.

    python -m recipes.translation --config recipes/configs/translation.yaml
    grpo recipe translation --config recipes/configs/translation.yaml --max_steps 10

The sequence-to-sequence task of :mod:`recipes.seq2seq` (encoder-decoder: Marian ``Helsinki-NLP/opus-mt-en-fr``
as in the course, t5, mt5, bart; decoder-only: the offline default, embedded SmolLM2-135M-Instruct) with an
English string as the source and its French translation as the target, scored with sacreBLEU.

Data: KDE4 rows ``{"translation": {"en": ..., "fr": ...}}`` (language keys set by
``source_lang``/``target_lang``). The offline default ``pkg:po-en-fr`` holds real software-UI
strings, KDE4's genre: Django's and JupyterLab's French catalogs for training, Sphinx's whole
catalog held out for eval (recipes/sources/README.md). Any file in the schema works with
``--dataset`` / ``--eval_dataset path.jsonl``; a local train file with no ``--eval_dataset`` has a
fraction held out, as the course splits KDE4's single split.

Baselines on the same eval rows (:mod:`recipes.baselines`): *copy source* (the English string
unchanged -- UI strings share names, placeholders and code with their translations) and *copy
nearest* (the French of the most similar training source).

Deviation from the course: sacreBLEU comes from the ``sacrebleu`` package, because
``evaluate.load("sacrebleu")`` fetches its metric script from the hub and fails offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recipes import seq2seq
from recipes.baselines import copy_nearest

INSTRUCTION = "Translate this English text to French."


@dataclass
class TranslationArgs(seq2seq.Seq2SeqArgs):
    source_lang: str = field(default="en", metadata={"help": "Key of the source text inside 'translation'."})
    target_lang: str = field(default="fr", metadata={"help": "Key of the target text inside 'translation'."})
    SOURCE_AND_TARGET = ("source_lang", "target_lang")
    # the shared fields' defaults for this task (max_source_length / max_target_length: Seq2SeqArgs' 128)
    dataset_name: str = field(default="pkg:po-en-fr", metadata={
        "help": "KDE4-schema rows {'translation': {src: ..., tgt: ...}}: pkg:po-en-fr, a local file or a hub id."})
    instruction: str = field(default=INSTRUCTION, metadata={"help": "Decoder-only only: instruction before the "
                                                                     "source in the prompt."})


def pairs(rows: dict, args: TranslationArgs) -> tuple[list[str], list[str]]:
    """``(sources, targets)`` of KDE4 rows given as columns: ``{"translation": [{source_lang: ..., target_lang: ...}]}``."""
    return ([pair[args.source_lang] for pair in rows["translation"]],
            [pair[args.target_lang] for pair in rows["translation"]])


def preprocess(batch: dict, tokenizer, args: TranslationArgs) -> dict:
    """Training features of a batch of KDE4 rows (:func:`recipes.seq2seq.tokenize`)."""
    return seq2seq.tokenize(*pairs(batch, args), tokenizer, args)


def compute_metrics(predictions: list[str], references: list[str]) -> dict:
    """Corpus sacreBLEU (0-100, higher is better) of predictions against one reference each.

    >>> compute_metrics(["Impossible d'ouvrir le fichier %1."], ["Impossible d'ouvrir le fichier %1."])["bleu"]
    100.0
    >>> compute_metrics(["Ouvrir le fichier"], ["Ouvrir le fichier"])["bleu"]  # no 4-gram: BLEU is 0
    0.0
    """
    import sacrebleu

    result = sacrebleu.corpus_bleu([p.strip() for p in predictions], [[r.strip() for r in references]])
    return {"bleu": round(float(result.score), 4)}


def baselines(train_raw, eval_raw, args: TranslationArgs) -> dict:
    """sacreBLEU of copying the source, and of copying the target of the nearest training source."""
    sources, references = pairs(eval_raw[:], args)
    nearest = copy_nearest(*pairs(train_raw[:], args), sources)
    return {"copy source": compute_metrics(sources, references), "copy nearest": compute_metrics(nearest, references)}


USAGE = seq2seq.usage(INSTRUCTION, '"Open the file"', "translation")
TASK = seq2seq.Seq2SeqTask(
    name="translation", pipeline_tag="translation", args_cls=TranslationArgs, columns=lambda args: ["translation"],
    fields=lambda args: [f"translation.{args.source_lang}", f"translation.{args.target_lang}"],
    pairs=pairs, compute_metrics=compute_metrics, metric_keys=("bleu",), baselines=baselines, unit="pairs",
    usage=USAGE)


def main(argv=None) -> int:
    """Parse the config, train, evaluate before/after, save the checkpoint. Returns the exit code."""
    return seq2seq.main(TASK, argv)


if __name__ == "__main__":
    from recipes import _common

    _common.cli(main)
