"""Reference-based rewards (chrf, bleu, rouge) and the translation guards, against sacreBLEU / rouge-score.

    pytest -q tests/test_rewards_reference.py
"""

import math
import pickle

import pytest
import sacrebleu
from rouge_score import rouge_scorer

import rewards
from rewards.reference import identifiers, placeholders

ROWS = [  # (completion, reference): real Sphinx-like UI strings and news-like sentences
    ("Impossible d'ouvrir le fichier %s.", "Impossible d'ouvrir le fichier %s."),
    ("Ouvrir le fichier", "Ouvre le fichier"),
    ("Le mode hors ligne est activé", "Mode hors ligne activé"),
    ("Émission de l'index de recherche en %(lang)s…", "Génération de l'index de recherche en %(lang)s…"),
    ("Les pompiers ont maîtrisé l'incendie près de Sydney", "Les pompiers luttent contre un incendie à Sydney"),
]


def test_chrf_matches_sacrebleu_sentence_chrf():
    completions, refs = zip(*ROWS)
    got = rewards.get("chrf")(list(completions), reference=list(refs))
    want = [sacrebleu.sentence_chrf(c, [r]).score / 100 for c, r in ROWS]
    assert got == pytest.approx(want, abs=1e-9)
    assert got[0] == 1.0 and 0 < got[1] < 1  # not a constant


def test_chrf_plus_plus_and_scale():
    c, r = ROWS[2]
    got = rewards.get("chrf", word_order=2, scale=1.0)([c], reference=[r])[0]
    assert got == pytest.approx(sacrebleu.sentence_chrf(c, [r], word_order=2).score)
    assert got != pytest.approx(sacrebleu.sentence_chrf(c, [r]).score)


def test_bleu_matches_sacrebleu_sentence_bleu():
    completions, refs = zip(*ROWS)
    got = rewards.get("bleu")(list(completions), reference=list(refs))
    want = [min(100.0, sacrebleu.sentence_bleu(c, [r]).score) / 100 for c, r in ROWS]
    assert got == pytest.approx(want, abs=1e-9)
    assert all(0.0 <= g <= 1.0 for g in got)


@pytest.mark.parametrize("variant", ["rouge1", "rouge2", "rougeL"])
def test_rouge_matches_rouge_score(variant):
    scorer = rouge_scorer.RougeScorer([variant], use_stemmer=True)
    completions, refs = zip(*ROWS)
    got = rewards.get("rouge", variant=variant)(list(completions), reference=list(refs))
    assert got == pytest.approx([scorer.score(r, c)[variant].fmeasure for c, r in ROWS])


def test_rouge_recall_and_best_of_several_references():
    fn = rewards.get("rouge", variant="rouge1", measure="recall")
    assert fn(["the cat"], reference=[["the cat sat on the mat", "a cat"]]) == [pytest.approx(0.5)]


def test_custom_column_and_missing_rows():
    fn = rewards.get("chrf", column="summary")
    assert fn(["a b", "c"], summary=["a b", None]) == [1.0, None]
    assert fn(["a b"], reference=["a b"]) == [None]  # the named column is absent


@pytest.mark.parametrize("name", ["chrf", "bleu", "rouge"])
def test_tricky_inputs_never_raise(name):
    fn = rewards.get(name)
    completions = ["", "   ", "日本語のテキスト", "%s {0} %(name)s", "\x00\ufffd", "a" * 20000,
                   [{"role": "assistant", "content": "Ouvrir"}]]
    refs = ["Ouvrir", "", "日本語のテキスト", "%s {0} %(name)s", "x", "a", "Ouvrir"]
    out = rewards.call_reward(fn, completions, reference=refs)
    assert out[1] is None  # empty reference: not applicable
    assert out[0] == 0.0  # empty completion, real reference
    assert out[6] == 1.0  # conversational completion read as its text
    assert all(v is None or (math.isfinite(v) and 0.0 <= v <= 1.0) for v in out)
    assert rewards.call_reward(fn, completions) == [None] * len(completions)  # no reference column at all
    assert fn([]) == []


def test_unicode_reference_scores_like_sacrebleu():
    c, r = "東京は日本の首都です", "東京は日本の首都である"
    assert rewards.get("chrf")([c], reference=[r])[0] == pytest.approx(sacrebleu.sentence_chrf(c, [r]).score / 100)


def test_placeholder_extraction():
    assert placeholders("%(count)d files in {0} and {name!r}, %1 of %2, 50%% done, %5.2f s") == \
        ["%(count)d", "{0}", "{name!r}", "%1", "%2", "%5.2f"]
    assert placeholders("100 % sûr, {{literal}}") == []


def test_placeholders_kept():
    fn = rewards.get("placeholders_kept")
    src = ["Copy %s to {0}", "Copy %s to {0}", "Copy %s to {0}", "Hello", "Hello", "Delete %(name)s?"]
    out = fn(["Copier %s vers {0}", "Copier vers {0}", "Copier %s %s vers {0}", "Bonjour", "Bonjour %s",
              [{"role": "assistant", "content": "Supprimer %(name)s ?"}]], source=src)
    assert out == [1.0, 0.5, pytest.approx(2 / 3), None, 0.0, 1.0]
    assert fn(["x"]) == [None]  # no source column


def test_identifier_extraction():
    # real held-out Sphinx sources: names, files, options, versions and acronyms are kept verbatim by translators
    assert identifiers("locale_dir %s does not exist") == ["locale_dir"]
    assert identifiers("use make-mode for Makefile/make.bat") == ["Makefile/make.bat"]
    assert identifiers("writing META-INF/container.xml file...") == ["META-INF/container.xml"]
    assert identifiers("See 'sphinx --help'.") == ["--help"]
    assert identifiers("copying TeX support files for EPUB3 (PEP 3102)") == ["TeX", "EPUB3", "PEP", "3102"]
    assert identifiers("[autosummary] writing to %s, version 2.5.1.") == ["[autosummary]", "2.5.1"]
    # prose is not code: abbreviations, slash-joined words, two-letter acronyms, placeholders, French
    assert identifiers("e.g. copy/cut/paste the ID at 10 a.m. into %(name)s or {0}") == ["10"]
    assert identifiers("Échec de l'annulation du rebase. Paramètres d'impression") == []


def test_identifiers_kept():
    fn = rewards.get("identifiers_kept")
    src = ["Set html_static_path in conf.py"] * 4 + ["Hello", "Hello"]
    out = fn(["Définir html_static_path dans conf.py", "Définir html_static_pat dans conf.py",
              "Définir le chemin", "Définir html_static_path dans conf.py et index.rst", "Bonjour", "Bonjour 2.0"],
             source=src)
    assert out == [1.0, 0.5, 0.0, pytest.approx(2 / 3), None, 0.0]  # kept; one rewritten; dropped; invented
    assert fn(["x"]) == [None]


def test_copy_source_penalty():
    fn = rewards.get("copy_source", penalty=0.5)
    out = fn(["Open the file", "open the  FILE", "Ouvrir le fichier", "Python", ""],
             source=["Open the file"] * 3 + ["Python", "Open"],
             reference=["Ouvrir le fichier"] * 3 + ["Python", "Ouvrir"])
    assert out == [-0.5, -0.5, 0.0, 0.0, 0.0]
    assert fn(["Open"], reference=["Ouvrir"]) == [None]


def test_bad_parameters_are_config_errors():
    with pytest.raises(rewards.RewardConfigError, match="variant"):
        rewards.get("rouge", variant="rougeX")
    with pytest.raises(rewards.RewardConfigError, match="measure"):
        rewards.get("rouge", measure="f1")
    with pytest.raises(rewards.RewardConfigError, match="smooth_method"):
        rewards.get("bleu", smooth_method="nope")


@pytest.mark.parametrize("name", ["chrf", "bleu", "rouge", "placeholders_kept", "identifiers_kept", "copy_source"])
def test_picklable_after_use_and_described(name):
    fn = rewards.get(name)
    fn(["Ouvrir"], reference=["Ouvrir"], source=["Open"])  # builds the lazy metric
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.__name__ == fn.__name__
    assert clone(["Ouvrir"], reference=["Ouvrir"], source=["Open"]) == fn(["Ouvrir"], reference=["Ouvrir"], source=["Open"])
    assert rewards.describe(name)["doc"]


@pytest.mark.parametrize("name", ["placeholders_kept", "identifiers_kept", "copy_source"])
def test_guards_on_tricky_inputs_never_raise(name):
    fn = rewards.get(name)
    completions = ["", "Ouvrir %s", "日本語 {0}", "%(name)s", "Open %s", "\x00\ufffd", "100 % sûr", "conf.py ünïcode_nom"]
    sources = ["Open %s", "", "日本語 {0}", "%(name)s", "Open %s", "x", "100% sure", "conf.py ünïcode_nom"]
    refs = ["Ouvrir %s", "Ouvrir", "日本語 {0}", "%(name)s", "Ouvrir %s", None, "100 % sûr", "conf.py ünïcode_nom"]
    out = rewards.call_reward(fn, completions, source=sources, reference=refs)
    assert out[1] is None  # empty source: not applicable
    assert all(v is None or math.isfinite(v) for v in out)
    if name == "placeholders_kept":
        assert out[0] == 0.0 and out[2] == 1.0 and out[3] == 1.0  # dropped; unicode around {0}; kept
    elif name == "identifiers_kept":
        assert out[0] is None and out[7] == 1.0  # no code-like token on either side; a unicode snake_case name kept
    else:
        assert out[4] == -1.0 and out[2] == 0.0 and out[0] == 0.0  # copied; copy that is the reference; empty
    assert rewards.call_reward(fn, completions) == [None] * len(completions)  # no source column at all
