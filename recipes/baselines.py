"""Trivial baselines the recipes report next to the model, so a score on real data means something.

Each one needs no model and no training beyond counting; the recipes score their outputs with
their own metric (seqeval, sacreBLEU, ROUGE, SQuAD EM/F1, perplexity):

* :func:`entity_lookup` (NER): tag every string that was an entity in train, with its commonest type.
* :func:`copy_nearest` (translation): the target of the most similar training source.
* :func:`lead_sentences` (summarization): the document's first sentence (lead-1), as in the course.
* :func:`unigram_perplexity` (masked / causal LM): a token-frequency model of the training tokens.
* :func:`exclusive_frequency` / always-null (extractive QA): the commonest capitalised name of the
  context that the question does not contain (Hermann et al., 2015); the empty answer (SQuAD v2).
"""

from __future__ import annotations

import collections
import math
import re

_WORD = re.compile(r"\w+")


def _spans(tags: list[str]):
    """``(start, end, type)`` of BIO entity spans (an ``I-`` without a ``B-`` opens a span, as seqeval does)."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and (tag == "O" or tag.startswith("B-") or tag[2:] != kind):
            spans.append((start, i, kind))
            start = None
        if tag != "O" and start is None:
            start, kind = i, tag[2:]
    return spans


def entity_lookup(train_tokens: list[list[str]], train_tags: list[list[str]], eval_tokens: list[list[str]],
                  lowercase: bool = False) -> list[list[str]]:
    """Tag eval sentences with the entity strings seen in train (greedy longest match, left to right).

    Case-sensitive by default: on WNUT-16 tweets that scores higher than matching lower-cased words
    (F1 0.34 vs 0.28), and a baseline should be the stronger of the two.

    >>> entity_lookup([["I", "love", "New", "York"]], [["O", "O", "B-loc", "I-loc"]], [["New", "York", "now"]])
    [['B-loc', 'I-loc', 'O']]
    """
    norm = (lambda w: w.lower()) if lowercase else (lambda w: w)
    types: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for tokens, tags in zip(train_tokens, train_tags):
        for start, end, kind in _spans(tags):
            types[tuple(norm(w) for w in tokens[start:end])][kind] += 1
    lexicon = {words: counts.most_common(1)[0][0] for words, counts in types.items()}
    longest = max(map(len, lexicon), default=0)
    predictions = []
    for tokens in eval_tokens:
        words, tags, i = [norm(w) for w in tokens], ["O"] * len(tokens), 0
        while i < len(words):
            for length in range(min(longest, len(words) - i), 0, -1):
                kind = lexicon.get(tuple(words[i:i + length]))
                if kind:
                    tags[i:i + length] = [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
                    i += length
                    break
            else:
                i += 1
        predictions.append(tags)
    return predictions


def copy_nearest(train_sources: list[str], train_targets: list[str], eval_sources: list[str]) -> list[str]:
    """For each eval source, the training target whose source is nearest (tf-idf cosine of words).

    Sources sharing no word with any training source get "" (nothing to copy).

    >>> copy_nearest(["Open the file", "Close the window"], ["Ouvrir le fichier", "Fermer la fenêtre"],
    ...              ["Open a file", "Resize"])
    ['Ouvrir le fichier', '']
    """
    docs = [collections.Counter(_WORD.findall(s.lower())) for s in train_sources]
    df = collections.Counter(w for doc in docs for w in doc)
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}
    index: dict[str, list[int]] = collections.defaultdict(list)
    norms = []
    for j, doc in enumerate(docs):
        for w in doc:
            index[w].append(j)
        norms.append(math.sqrt(sum((c * idf[w]) ** 2 for w, c in doc.items())) or 1.0)
    out = []
    for source in eval_sources:
        query = collections.Counter(w for w in _WORD.findall(source.lower()) if w in idf)
        scores: dict[int, float] = collections.defaultdict(float)
        for w, c in query.items():
            for j in index[w]:
                scores[j] += c * docs[j][w] * idf[w] ** 2
        best = max(scores, key=lambda j: (scores[j] / norms[j], -j), default=None)
        out.append(train_targets[best] if best is not None else "")
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z0-9])")


def lead_sentences(document: str, n: int = 1) -> str:
    """The first ``n`` sentences of a document (split at end punctuation before a capital).

    >>> lead_sentences("Fires burn in NSW. Rain is due on Friday. Crews rest.")
    'Fires burn in NSW.'
    """
    return " ".join(s.strip() for s in _SENTENCE_END.split(document.strip())[:n])


def unigram_perplexity(train_ids, eval_ids) -> float:
    """Perplexity of an add-one unigram model of the training token ids on the eval token ids.

    Args:
        train_ids: iterable of token-id lists the counts come from.
        eval_ids: iterable of the token ids to predict (e.g. the masked positions, or every
            next-token target of the eval chunks).

    >>> round(unigram_perplexity([[1, 1, 2]], [1, 2]), 4)  # p(1) = 3/6, p(2) = 2/6, p(unseen) = 1/6
    2.4495
    """
    counts = collections.Counter(t for ids in train_ids for t in ids)
    total, vocab = sum(counts.values()), len(counts) + 1  # +1: one bucket for unseen ids
    targets = list(eval_ids)
    nll = -sum(math.log((counts.get(t, 0) + 1) / (total + vocab)) for t in targets)
    return math.exp(nll / max(len(targets), 1))


_NAME = re.compile(r"\b[A-Z][\w'&-]*\w(?:\s+[A-Z][\w'&-]*\w)*")
_FUNCTION_WORDS = {"The", "A", "An", "He", "She", "It", "They", "We", "I", "In", "On", "At", "But", "And", "Mr",
                   "Mrs", "Ms", "Dr", "This", "That", "There", "His", "Her", "Its", "Their", "After", "As", "For",
                   "If", "When"}


def exclusive_frequency(question: str, context: str) -> str:
    """The commonest capitalised name in ``context`` that ``question`` does not contain ("" if none).

    >>> exclusive_frequency("Police in @placeholder said Tom left.", "Tom was in Perth. Perth police said so.")
    'Perth'
    """
    names = []
    for match in _NAME.finditer(context):
        words = match.group(0).split()
        while words and words[0] in _FUNCTION_WORDS:
            words = words[1:]
        if words:
            names.append(" ".join(words))
    counts = collections.Counter(n for n in names if n not in question)
    return max(counts, key=lambda n: (counts[n], -names.index(n)), default="")
