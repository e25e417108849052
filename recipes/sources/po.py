"""``pkg:po-en-fr``: English -> French pairs from software message catalogs (the genre of KDE4).

Train: the French catalogs of Django (13 ``.po`` files: ``django/**/locale/fr/LC_MESSAGES``) and
of the JupyterLab French language pack (17 compiled ``.mo`` catalogs). Validation: Sphinx's French
catalog (``sphinx/locale/fr/LC_MESSAGES/sphinx.po``), a whole held-out catalog, minus pairs whose
English text also occurs in train, ordered by a hash of the English text (so ``--max_eval_samples N``
takes a spread sample). Catalogs are read with ``polib``; fuzzy, obsolete, untranslated
and plural entries are skipped, and repeated (en, fr) pairs are kept once per split.

Rows follow KDE4's schema: ``{"id", "translation": {"en": ..., "fr": ...}, "catalog": "<package>:<file>"}``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from recipes.sources import package_file

# (distribution, directory inside it, glob) per split; directories are found through the metadata.
CATALOGS = {
    "train": [("django", "django", "**/locale/fr/LC_MESSAGES/*.po"),
              ("jupyterlab-language-pack-fr-FR", "jupyterlab_language_pack_fr_FR/locale/fr_FR/LC_MESSAGES", "*.mo")],
    "validation": [("sphinx", "sphinx/locale/fr/LC_MESSAGES", "sphinx.po")],
}


def catalog_pairs(path) -> list[tuple[str, str]]:
    """(msgid, msgstr) of the usable entries of one ``.po`` / ``.mo`` catalog, in file order."""
    import polib

    catalog = polib.mofile(str(path)) if str(path).endswith(".mo") else polib.pofile(str(path))
    pairs = []
    for entry in catalog:
        if entry.obsolete or "fuzzy" in entry.flags or entry.msgid_plural:
            continue
        source, target = entry.msgid.strip(), entry.msgstr.strip()
        if source and target:
            pairs.append((source, target))
    return pairs


def catalog_files(split: str) -> list[tuple[str, object]]:
    """``(label, path)`` of the catalogs of a split, sorted within each package."""
    files = []
    for distribution, directory, pattern in CATALOGS[split]:
        root = package_file(distribution, directory)
        files += [(f"{distribution}:{directory}/{p.relative_to(root).as_posix()}", p) for p in sorted(root.glob(pattern))]
    return files


@lru_cache(maxsize=2)
def _pairs(split: str) -> tuple:
    seen, out = set(), []
    for label, path in catalog_files(split):
        for pair in catalog_pairs(path):
            if pair not in seen:
                seen.add(pair)
                out.append((label, *pair))
    return tuple(out)


def po_en_fr(split: str) -> list[dict]:
    """Rows of one split (see the module docstring)."""
    pairs = _pairs(split)
    if split == "validation":  # the held-out catalog must not repeat a training source
        train_sources = {en for _, en, _ in _pairs("train")}
        pairs = [p for p in pairs if p[1] not in train_sources]
        # Catalog order follows Sphinx's source files; a hash order makes "the first N" a spread sample.
        pairs.sort(key=lambda p: hashlib.md5(p[1].encode("utf-8")).hexdigest())
    return [{"id": f"{split}-{i}", "translation": {"en": en, "fr": fr}, "catalog": label}
            for i, (label, en, fr) in enumerate(pairs)]
