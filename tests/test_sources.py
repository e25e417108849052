"""Real-data loaders of recipes/sources on the installed packages (the `recipes-data` extra): counts,
known rows, split rules, and how ``pkg:`` specs flow through ``_common.load_splits``.

    pytest -q tests/test_sources.py
"""

import pytest

from grpo.common.errors import UserError
from recipes import _common, sources
from recipes.sources import ner, news, po


def test_wnut16_counts_and_first_tweet():
    train, validation = sources.rows("pkg:wnut16", "train"), sources.rows("pkg:wnut16", "validation")
    assert (len(train), len(validation)) == (1916, 478)  # WNUT-16's 2,394 training tweets, every 5th held out
    first = train[0]
    assert first["tokens"][:3] == ["@paulwalk", "It", "'s"]
    assert first["tokens"][14:17] == ["Empire", "State", "Building"]
    assert first["ner_tags"][14:17] == ["B-facility", "I-facility", "I-facility"]
    assert validation[0]["tokens"][:2] == ["4Dbling", "'s"] and validation[0]["ner_tags"][0] == "B-person"
    types = {t[2:] for row in train for t in row["ner_tags"] if t != "O"}
    assert types == {"person", "geo-loc", "company", "facility", "product", "musicartist", "movie",
                     "sportsteam", "tvshow", "other"}
    assert all(len(r["tokens"]) == len(r["ner_tags"]) for r in train + validation)


def test_parse_conll_rejects_a_line_without_a_tag():
    with pytest.raises(UserError, match="x:2: expected 'token<TAB>tag'"):
        ner.parse_conll("a\tO\nbroken\n", "x")


def test_po_pairs_hold_out_the_sphinx_catalog():
    train, validation = sources.rows("pkg:po-en-fr", "train"), sources.rows("pkg:po-en-fr", "validation")
    assert 3500 <= len(train) <= 4500 and 700 <= len(validation) <= 1000  # 3,983 / 855 with the pinned versions
    assert {r["catalog"].split(":")[0] for r in train} == {"django", "jupyterlab-language-pack-fr-FR"}
    assert {r["catalog"] for r in validation} == {"sphinx:sphinx/locale/fr/LC_MESSAGES/sphinx.po"}
    assert not {r["translation"]["en"] for r in validation} & {r["translation"]["en"] for r in train}
    pairs = {(r["translation"]["en"], r["translation"]["fr"]) for r in train}
    assert ("Save", "Enregistrer") in pairs  # django admin's button
    assert any(r["translation"]["en"] == "invalid CVE number %s" and r["translation"]["fr"] == "numéro CVE non valide %s"
               for r in validation)
    assert len(pairs) == len(train)  # each pair once


def test_catalog_pairs_skip_fuzzy_plural_and_untranslated(tmp_path):
    catalog = tmp_path / "x.po"
    catalog.write_text('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                       'msgid "Open"\nmsgstr "Ouvrir"\n\n#, fuzzy\nmsgid "Close"\nmsgstr "Fermer"\n\n'
                       'msgid "Empty"\nmsgstr ""\n\nmsgid "%d file"\nmsgid_plural "%d files"\n'
                       'msgstr[0] "%d fichier"\nmsgstr[1] "%d fichiers"\n', encoding="utf-8")
    assert po.catalog_pairs(catalog) == [("Open", "Ouvrir")]


def test_lee_views_share_the_story_split():
    stories = news.lee_news("train") + news.lee_news("validation")
    assert len(stories) == 300 and len(news.lee_news("validation")) == 60
    assert stories[0]["text"].startswith("Hundreds of people have been forced to vacate their homes")
    lead = news.lee_lead("train")
    assert (len(lead), len(news.lee_lead("validation"))) == (239, 60)
    assert lead[0]["summary"].endswith("towards the town of Hill Top.")
    assert lead[0]["document"].startswith("A new blaze near Goulburn")
    assert {r["id"] for r in news.lee_lead("validation")} <= {r["id"] for r in news.lee_news("validation")}


def test_lee_cloze_is_squad_v2_with_exact_spans():
    train, validation = news.lee_cloze("train"), news.lee_cloze("validation")
    assert (len(train), len(validation)) == (509, 139)
    for row in train + validation:
        assert news.PLACEHOLDER in row["question"]
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start:start + len(text)] == text
    unanswerable = [r for r in validation if not r["answers"]["text"]]
    assert len(unanswerable) == 73 and all(r["answers"]["answer_start"] == [] for r in unanswerable)
    israeli = next(r for r in validation if r["question"].startswith("The @placeholder army has killed three Palestinian"))
    assert israeli["answers"]["text"] == ["Israeli"]


def test_split_sentences_and_names():
    assert news.split_sentences("It rained. Then, at 4:00pm, it stopped!") == ["It rained.", "Then, at 4:00pm, it stopped!"]
    assert [n for _, n in news.names_in("Yesterday the Prime Minister met Mr Ruddock in Canberra.")] == \
        ["Prime Minister", "Ruddock", "Canberra"]


def test_unknown_source_and_split_are_user_errors():
    with pytest.raises(UserError, match="unknown data source 'pkg:nope'.*pkg:wnut16"):
        sources.rows("pkg:nope", "train")
    with pytest.raises(UserError, match="not 'dev'"):
        sources.rows("pkg:wnut16", "dev")
    assert sources.rows("pkg:wnut16", "test") == sources.rows("pkg:wnut16", "validation")


def test_missing_package_names_the_extra():
    with pytest.raises(UserError,
                       match=r"not installed; install the recipe data packages: pip install 'grpo-toolkit\[recipes-data\]'"):
        sources.package_file("no-such-distribution-xyz", "a.txt")


def test_load_splits_uses_the_source_validation_split_or_an_eval_file(tmp_path):
    train, evaluation = _common.load_splits("pkg:wnut16", "", columns=["tokens", "ner_tags"])
    assert (len(train), len(evaluation)) == (1916, 478)
    own = tmp_path / "mine.jsonl"
    own.write_text('{"tokens": ["Oslo", "rocks"], "ner_tags": ["B-geo-loc", "O"]}\n', encoding="utf-8")
    train, evaluation = _common.load_splits("pkg:wnut16", str(own), columns=["tokens", "ner_tags"])
    assert len(train) == 1916 and evaluation[0]["tokens"] == ["Oslo", "rocks"]
    train, evaluation = _common.load_splits(str(own), "pkg:wnut16", columns=["tokens", "ner_tags"])
    assert len(train) == 1 and len(evaluation) == 478
