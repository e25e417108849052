"""Write the small offline datasets of the NER, QA and masked-LM recipes into tests/fixtures/recipes/.

For the tests only: the recipes' default configs train on real text (``pkg:`` sources,
recipes/sources/README.md); template sentences say nothing about how a recipe does on real data.

Run: python scripts/make_recipe_data.py        (deterministic: the same files every time)

All text is invented here from templates and made-up names; nothing is copied from a real
dataset. Each file uses its hub dataset's own schema, so a real export in that schema can
replace it with ``--dataset path.jsonl``:

* ``ner_{train,validation}.jsonl`` -- conll2003 schema: ``id`` (str), ``tokens`` (list of words),
  ``ner_tags`` (list of ints). Label names, in conll2003's order:
  ``0 O, 1 B-PER, 2 I-PER, 3 B-ORG, 4 I-ORG, 5 B-LOC, 6 I-LOC, 7 B-MISC, 8 I-MISC``.
* ``squad_{train,validation}.jsonl`` -- squad schema: ``id``, ``title``, ``context``,
  ``question``, ``answers`` = ``{"text": [str...], "answer_start": [int...]}`` (character offsets
  into ``context``; validation rows may carry several gold answers, as SQuAD's do). Some
  contexts are long (> 256 word pieces) so the recipe's sliding window is exercised.
* ``imdb_{train,test}.jsonl`` -- imdb schema: ``text`` (a review), ``label`` (0 negative, 1 positive).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recipes"
LABEL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

FIRST = ["Talia", "Oren", "Maribel", "Kasimir", "Wendeline", "Ysolde", "Bram", "Fenna", "Idris", "Lucan",
         "Sabine", "Teodor", "Anouk", "Cormac", "Elodie", "Jorrit", "Mireille", "Nuno", "Priya", "Quillon",
         "Rosalind", "Stellan", "Ulla", "Vesna", "Wim", "Xandra", "Yorick", "Zofia"]
LAST = ["Varnholt", "Brakstad", "Delacourt", "Fennimore", "Halvorsen", "Iskander", "Morrow", "Quennell",
        "Rask", "Solberg", "Thistlewood", "Ulverston", "Whitcombe", "Zeller", "Abernethy", "Cardew",
        "Dunstable", "Ekwueme", "Gravesend", "Holloway", "Lindqvist", "Marchetti", "Oyelaran", "Pemberton"]
ORGS = [["Kestrel", "Labs"], ["Northwind", "Freight"], ["Bluegate", "Bank"], ["Harbor", "Mutual"],
        ["Ferrow", "Motors"], ["Lantern", "Press"], ["Copperleaf", "Foods"], ["Orrin", "Rail"],
        ["Saltmarsh", "Energy"], ["the", "Calloway", "Institute"], ["Greyfield", "United"], ["Tessaly", "Telecom"],
        ["Mossbank"], ["Quarrystone", "Group"], ["Velder", "Aerospace"], ["the", "Dunmere", "Council"]]
LOCS = [["Dunmere"], ["Port", "Calloway"], ["Lake", "Orrin"], ["Eastmarch"], ["Kilvarra"], ["New", "Tessaly"],
        ["Brightwater"], ["Halden"], ["Saltmarsh"], ["the", "Arden", "Hills"], ["Velmont"], ["Corrigan", "Falls"],
        ["Ostreva"], ["North", "Vale"], ["Greyhaven"], ["Marrow", "Island"]]
MISC = [["Tessalian"], ["Orrinese"], ["Calloway", "Cup"], ["Winter", "Lantern", "Festival"], ["Velmontian"],
        ["Kilvarran"], ["Harvest", "Regatta"], ["Eastmarch", "Open"], ["Dunmerian"], ["Silver", "Quill", "Prize"]]
MONTHS = ["January", "March", "April", "June", "September", "October", "November"]

# Templates: words, or a slot name in braces. PER slots get one or two name words.
NER_TEMPLATES = [
    "{PER} joined {ORG} in {LOC} last {MONTH} .",
    "{ORG} said on Tuesday that {PER} would lead its office in {LOC} .",
    "The {MISC} team beat {LOC} 3 - 1 on Sunday .",
    "{PER} , a spokesman for {ORG} , declined to comment .",
    "Shares in {ORG} rose 4 percent after the {MISC} results .",
    "{PER} won the {MISC} for the second year in a row .",
    "Heavy rain closed roads between {LOC} and {LOC} on Friday .",
    "{PER} told reporters in {LOC} that talks with {ORG} had stalled .",
    "The {MISC} government appointed {PER} as its new envoy to {LOC} .",
    "{ORG} will build a new factory near {LOC} , {PER} said .",
    "Police in {LOC} are looking for witnesses , officers said .",
    "{PER} and {PER} met in {LOC} to sign the deal .",
    "Fans gathered in {LOC} ahead of the {MISC} final .",
    "{ORG} hired {PER} from {ORG} in {MONTH} .",
    "Prices fell sharply in {MONTH} , according to {ORG} .",
    "{PER} scored twice as {ORG} won in {LOC} .",
]
SLOT_TYPE = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "MISC": "MISC"}


def _entity(rng: random.Random, kind: str, pools: dict) -> list[str]:
    if kind == "PER":
        first, last = rng.choice(pools["first"]), rng.choice(pools["last"])
        return rng.choice([[first, last], [first, last], [last]])
    return list(rng.choice(pools[kind]))


def make_ner(n: int, seed: int, pools: dict) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tokens, tags = [], []
        for piece in rng.choice(NER_TEMPLATES).split():
            if piece == "{MONTH}":
                tokens.append(rng.choice(MONTHS))
                tags.append(0)
            elif piece.startswith("{"):
                kind = SLOT_TYPE[piece.strip("{}")]
                words = _entity(rng, kind, pools)
                tokens += words
                tags += [LABEL_NAMES.index(f"B-{kind}")] + [LABEL_NAMES.index(f"I-{kind}")] * (len(words) - 1)
            else:
                tokens.append(piece)
                tags.append(0)
        rows.append({"id": str(i), "tokens": tokens, "ner_tags": tags})
    return rows


TOWNS = ["Ambervale", "Brisk Hollow", "Caddenport", "Dovermere", "Elmstrand", "Farrowgate", "Glenmarsh",
         "Hollinford", "Ivybridge Cross", "Juniper Reach", "Kettleby", "Larkhaven", "Millbrook End", "Norrowby",
         "Oakhurst", "Pellingham", "Quenby", "Rothwick", "Stavenor", "Thornvale", "Underhill", "Valdmoor",
         "Westerby", "Yarrowmead", "Zennor Vale", "Ashcombe", "Brackenridge", "Coldharbour", "Drysdale",
         "Emberton", "Fallowfield", "Greystoke Vale", "Harrowden", "Inchmore", "Jessop Ford", "Kirkwall Moss",
         "Lindenholm", "Marlowe Point", "Netherby", "Orchard Crest", "Penwyth", "Quarry Bend", "Redmere",
         "Silverdale Cross", "Tamsford", "Umberleigh", "Vinterby", "Wrexford", "Yelverton Moor", "Zelham"]
RIVERS = ["Olm", "Tarrow", "Wendle", "Brisk", "Caddon", "Elva", "Fenn", "Larch", "Moss", "Quill"]
PROVINCES = ["Eastmarch", "North Vale", "Ostreva", "Halden", "Velmont", "Kilvarra"]
PROFESSIONS = ["miller", "shipwright", "wool merchant", "stonemason", "clockmaker", "ferryman", "physician"]
PRODUCTS = ["blue cheese", "copper kettles", "woven baskets", "apple brandy", "glass beads", "smoked eels",
            "wooden clogs", "honey cakes", "slate roof tiles", "linen sails"]
LANDMARKS = ["Old Bridge", "Clock Tower", "Salt Hall", "Lantern Gate", "Mill Museum", "Harbour Chapel"]
FILLER = [
    "In the years that followed, the town grew slowly as new roads linked it to the surrounding farms.",
    "A weekly market is held in the main square, where traders sell vegetables, cloth and tools.",
    "The local school was rebuilt after a fire damaged the older building during a dry summer.",
    "Several walking trails start near the edge of town and follow the hills to the north.",
    "The railway station closed for some decades but reopened after a campaign by residents.",
    "Winters are cold and wet, while summers are mild and bring many visitors to the area.",
    "A small newspaper reports on council meetings, sports results and the annual fair.",
    "Many of the older houses are built from grey stone quarried in the nearby valley.",
]


def _paragraph(rng: random.Random, town: str, long: bool) -> tuple[str, dict]:
    facts = {
        "river": rng.choice(RIVERS), "province": rng.choice(PROVINCES),
        "year": str(rng.randint(1120, 1890)), "founder": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "profession": rng.choice(PROFESSIONS), "product": rng.choice(PRODUCTS),
        "population": f"{rng.randint(2, 95)},{rng.randint(100, 999)}", "census": str(rng.randint(1950, 2020)),
        "landmark": rng.choice(LANDMARKS), "builder": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
    }
    sentences = [
        f"{town} is a market town on the {facts['river']} river in the province of {facts['province']}.",
        f"It was founded in {facts['year']} by {facts['founder']}, a {facts['profession']} who settled by the water.",
        f"The town is best known for its {facts['product']}, which are sold in markets across the province.",
        f"In {facts['census']} the population was about {facts['population']} people.",
        f"Its best-known landmark is the {facts['landmark']}, which was built by {facts['builder']}.",
    ]
    fillers = rng.sample(FILLER, k=len(FILLER) if long else 2)
    # Long contexts put the later facts after the filler, so the answer sits in a later window.
    body = sentences[:2] + fillers[: len(fillers) // 2] + sentences[2:4] + fillers[len(fillers) // 2:] + sentences[4:]
    return " ".join(body), facts


def _questions(town: str, facts: dict, rng: random.Random) -> list[tuple[str, list[str], str]]:
    """(question, gold answers, anchor); golds are searched from the anchor (the fact's sentence) on,
    so a river named like the town is not matched inside the town's name."""
    return [
        (rng.choice([f"Who founded {town}?", f"By whom was {town} founded?"]),
         [facts["founder"], facts["founder"].split()[-1]], "It was founded"),
        (rng.choice([f"When was {town} founded?", f"In what year was {town} founded?"]), [facts["year"]], "It was founded"),
        (rng.choice([f"Which river is {town} on?", f"On what river does {town} lie?"]),
         [facts["river"], f"the {facts['river']} river"], "is a market town on"),
        (rng.choice([f"What is {town} known for?", f"What is {town} best known for?"]),
         [facts["product"], f"its {facts['product']}"], "best known for its"),
        (f"What was the population of {town} in {facts['census']}?",
         [f"about {facts['population']}", facts["population"]], f"In {facts['census']} the population"),
        (rng.choice([f"Who built the {facts['landmark']} in {town}?", f"Who built {town}'s {facts['landmark']}?"]),
         [facts["builder"]], "which was built by"),
    ]


def make_squad(towns: list[str], seed: int, split: str, multi_gold: bool) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for t, town in enumerate(towns):
        context, facts = _paragraph(rng, town, long=(t % 4 == 0))
        for q, (question, golds, anchor) in enumerate(_questions(town, facts, rng)):
            golds = golds if multi_gold else golds[:1]
            starts = []
            for gold in golds:
                start = context.find(gold, context.index(anchor))
                assert start >= 0, (gold, context)
                starts.append(start)
            rows.append({"id": f"{split}-{t:03d}-{q}", "title": town, "context": context, "question": question,
                         "answers": {"text": golds, "answer_start": starts}})
    return rows


FILMS = ["The Quiet Harbour", "Ninefold", "Lanterns Over Kettleby", "A Season of Salt", "Brass Meridian",
         "The Last Ferry", "Orchard Ghosts", "Copper Sky", "Midnight at Marlowe Point", "The Clockmaker's Son",
         "Glass Rivers", "Thornvale Nights", "The Weaver", "Cold Harbour Blues", "Paper Crowns", "Driftwood"]
GOOD = ["wonderful", "moving", "beautifully shot", "clever", "gripping", "charming", "funny", "heartfelt"]
BAD = ["dull", "clumsy", "boring", "confusing", "lifeless", "predictable", "messy", "tedious"]
PLOTS = ["a ferryman who finds a letter from his missing brother", "two sisters who inherit a failing bakery",
         "a detective chasing a forger across the islands", "a young clockmaker who builds a talking owl",
         "a retired teacher who joins a rowing club", "a band touring small towns in a broken bus",
         "a village that hides a stolen painting", "a lighthouse keeper and a stranded pilot"]


def make_imdb(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        adj = GOOD if label else BAD
        film, actor = rng.choice(FILMS), f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        parts = [
            rng.choice([f"I watched {film} last night.", f"{film} finally came out on video.",
                        f"My friends talked me into seeing {film}."]),
            f"It tells the story of {rng.choice(PLOTS)}.",
            rng.choice([f"The acting by {actor} is {rng.choice(adj)}", f"{actor} gives a {rng.choice(adj)} performance"])
            + rng.choice([".", ", and the music is " + rng.choice(adj) + "."]),
            rng.choice([f"The script is {rng.choice(adj)} and the ending feels {rng.choice(adj)}.",
                        f"The story is {rng.choice(adj)} from start to finish.",
                        f"Every scene in the second half is {rng.choice(adj)}."]),
            (rng.choice(["I would happily watch it again.", "Highly recommended.", "One of the best films this year."])
             if label else rng.choice(["I would not watch it again.", "Save your money.", "A waste of two hours."])),
        ]
        if rng.random() < 0.3:
            parts.insert(3, rng.choice(["The camera work is worth a mention.", "The film runs a little over two hours.",
                                        "It was shot on location near the coast."]))
        rows.append({"text": " ".join(parts), "label": label})
    return rows


def write(name: str, rows: list[dict]) -> None:
    path = OUT / name
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # Validation uses partly unseen names so the NER score is not pure memorisation.
    train_pools = {"first": FIRST[:20], "last": LAST[:18], "ORG": ORGS[:13], "LOC": LOCS[:13], "MISC": MISC[:8]}
    val_pools = {"first": FIRST, "last": LAST, "ORG": ORGS, "LOC": LOCS, "MISC": MISC}
    write("ner_train.jsonl", make_ner(300, seed=1, pools=train_pools))
    write("ner_validation.jsonl", make_ner(80, seed=2, pools=val_pools))
    write("squad_train.jsonl", make_squad(TOWNS[:40], seed=3, split="train", multi_gold=False))
    write("squad_validation.jsonl", make_squad(TOWNS[40:], seed=4, split="validation", multi_gold=True))
    write("imdb_train.jsonl", make_imdb(300, seed=5))
    write("imdb_test.jsonl", make_imdb(80, seed=6))


if __name__ == "__main__":
    main()
