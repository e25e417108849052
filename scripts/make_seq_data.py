"""Write the offline datasets of the translation and summarization recipes (deterministic).

For the tests only: the recipes' default configs train on real text (``pkg:`` sources,
recipes/sources/README.md); template sentences say nothing about how a recipe does on real data.

    python scripts/make_seq_data.py            # rewrites tests/fixtures/recipes/{translation,summarization}.jsonl

Both files are original text generated here from small grammars, in the schemas of the hub
datasets the course uses, so ``--dataset`` can point at the real thing unchanged:

* ``translation.jsonl`` -- KDE4 style (``{"id", "translation": {"en", "fr"}}``): short software
  interface strings (commands, error messages, questions, status lines with ``%1`` placeholders)
  and their French versions, with gender/number agreement and elision done by the grammar.
* ``summarization.jsonl`` -- XSum style (``{"id", "document", "summary"}``): short invented local
  news stories (council votes, football results, new jobs, weather, wildlife sightings,
  festivals) with a one-sentence summary that restates the key facts.

The same seed always gives byte-identical files; running the script twice is a no-op.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recipes"
SEED = 20261121

# ---------------------------------------------------------------------------------------------
# Translation grammar: (english verb, english past participle, french infinitive, french participle)
VERBS = [
    ("open", "opened", "ouvrir", "ouvert"), ("close", "closed", "fermer", "fermé"),
    ("save", "saved", "enregistrer", "enregistré"), ("delete", "deleted", "supprimer", "supprimé"),
    ("print", "printed", "imprimer", "imprimé"), ("rename", "renamed", "renommer", "renommé"),
    ("copy", "copied", "copier", "copié"), ("move", "moved", "déplacer", "déplacé"),
    ("create", "created", "créer", "créé"), ("send", "sent", "envoyer", "envoyé"),
    ("export", "exported", "exporter", "exporté"), ("import", "imported", "importer", "importé"),
    ("edit", "edited", "modifier", "modifié"), ("show", "shown", "afficher", "affiché"),
    ("hide", "hidden", "masquer", "masqué"), ("load", "loaded", "charger", "chargé"),
]
# (english singular, english plural, french singular, french plural, gender "m"/"f")
NOUNS = [
    ("file", "files", "fichier", "fichiers", "m"), ("folder", "folders", "dossier", "dossiers", "m"),
    ("window", "windows", "fenêtre", "fenêtres", "f"), ("image", "images", "image", "images", "f"),
    ("document", "documents", "document", "documents", "m"), ("message", "messages", "message", "messages", "m"),
    ("page", "pages", "page", "pages", "f"), ("list", "lists", "liste", "listes", "f"),
    ("table", "tables", "tableau", "tableaux", "m"), ("account", "accounts", "compte", "comptes", "m"),
    ("bookmark", "bookmarks", "signet", "signets", "m"), ("calendar", "calendars", "calendrier", "calendriers", "m"),
    ("contact", "contacts", "contact", "contacts", "m"), ("archive", "archives", "archive", "archives", "f"),
    ("playlist", "playlists", "liste de lecture", "listes de lecture", "f"),
    ("profile", "profiles", "profil", "profils", "m"), ("session", "sessions", "session", "sessions", "f"),
    ("note", "notes", "note", "notes", "f"), ("report", "reports", "rapport", "rapports", "m"),
    ("theme", "themes", "thème", "thèmes", "m"),
]
# (english, french masculine singular); feminine adds "e", plural adds "s"
ADJECTIVES = [("current", "actuel"), ("selected", "sélectionné"), ("previous", "précédent"),
              ("next", "suivant"), ("default", "par défaut"), ("hidden", "masqué")]
VOWELS = tuple("aeiouéèêhâ")


def _agree(word: str, gender: str, plural: bool) -> str:
    """French adjective/participle agreement (regular forms plus the few the grammar needs)."""
    if word == "par défaut":
        return word
    if gender == "f":
        word = word + "le" if word.endswith("el") else word + "e"
    return word + "s" if plural else word


def _article(noun_fr: str, gender: str, plural: bool) -> str:
    if plural:
        return "les " + noun_fr
    if noun_fr.startswith(VOWELS):
        return "l'" + noun_fr
    return ("le " if gender == "m" else "la ") + noun_fr


def _de(word: str) -> str:
    return ("d'" if word.startswith(VOWELS) else "de ") + word


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def translation_pair(rng: random.Random) -> tuple[str, str]:
    """One (english, french) UI string from one of seven patterns."""
    verb_en, pp_en, verb_fr, pp_fr = rng.choice(VERBS)
    sg_en, pl_en, sg_fr, pl_fr, gender = rng.choice(NOUNS)
    adj_en, adj_fr = rng.choice(ADJECTIVES)
    plural = rng.random() < 0.3
    noun_en, noun_fr = (pl_en, pl_fr) if plural else (sg_en, sg_fr)
    np_fr = _article(noun_fr, gender, plural)
    pattern = rng.randrange(7)
    if pattern == 0:
        return f"{_cap(verb_en)} the {noun_en}", f"{_cap(verb_fr)} {np_fr}"
    if pattern == 1:
        return (f"{_cap(verb_en)} the {adj_en} {noun_en}",
                f"{_cap(verb_fr)} {np_fr} {_agree(adj_fr, gender, plural)}")
    if pattern == 2:
        return f"Unable to {verb_en} the {noun_en} %1.", f"Impossible {_de(verb_fr)} {np_fr} %1."
    if pattern == 3:
        return f"Do you want to {verb_en} the {adj_en} {noun_en}?", \
            f"Voulez-vous {verb_fr} {np_fr} {_agree(adj_fr, gender, plural)} ?"
    if pattern == 4:
        aux = "ont" if plural else "a"
        be_en = "have" if plural else "has"
        return (f"The {noun_en} {be_en} been {pp_en}.",
                f"{_cap(np_fr)} {aux} été {_agree(pp_fr, gender, plural)}.")
    if pattern == 5:
        return (f"%1 {pl_en} {pp_en}", f"%1 {pl_fr} {_agree(pp_fr, gender, True)}")
    could = "n'ont pas pu être" if plural else "n'a pas pu être"
    return (f"The {noun_en} could not be {pp_en}.",
            f"{_cap(np_fr)} {could} {_agree(pp_fr, gender, plural)}.")


def make_translation(n: int, rng: random.Random) -> list[dict]:
    rows, seen = [], set()
    while len(rows) < n:
        en, fr = translation_pair(rng)
        if en in seen:
            continue
        seen.add(en)
        rows.append({"id": str(len(rows)), "translation": {"en": en, "fr": fr}})
    return rows


# ---------------------------------------------------------------------------------------------
# Summarization: invented places, people and organisations.
TOWNS = ["Brindlemoor", "Ashcombe", "Kettleby", "Harrowgate Vale", "Wrenfield", "Dunmarsh", "Pellworth",
         "Orrin Bay", "Caldergate", "Foxley Cross", "Stanwick", "Mirebrook", "Elderholt", "Quenby"]
PEOPLE = ["Alice Marsh", "Tomas Reyes", "Priya Nandakumar", "Owen Bellamy", "Greta Lindqvist", "Samuel Okafor",
          "Hannah Pryce", "Malik Haddad", "Rosa Fenwick", "Declan Moore", "Ines Carvalho", "Yusuf Demir"]
CLUBS = ["Brindlemoor Rovers", "Ashcombe Town", "Kettleby Athletic", "Wrenfield United", "Dunmarsh City",
         "Pellworth Wanderers", "Caldergate FC", "Stanwick Albion"]
COMPANIES = [("Lumen Foods", "food"), ("Corvid Robotics", "robotics"), ("Tidewell Energy", "energy"),
             ("Northgate Textiles", "textile"), ("Pinecrest Software", "software"), ("Halden Cycles", "bicycle")]
PROJECTS = ["build a new public library", "reopen the old swimming baths", "turn the market square into a park",
            "add cycle lanes to the high street", "replace the town's street lights", "build two hundred new homes"]
ANIMALS = [("pine marten", "woodland"), ("white stork", "wetland"), ("water vole", "riverbank"),
           ("barn owl", "farmland"), ("otter", "estuary"), ("red squirrel", "forest")]
WEATHER = [("snow", "schools were closed"), ("flooding", "homes were evacuated"),
           ("high winds", "trees were brought down"), ("ice", "bus services were suspended")]
FESTIVALS = [("music", "bands"), ("food", "stalls"), ("kite", "flyers"), ("book", "authors"), ("film", "screenings")]
MONTHS = ["January", "March", "May", "June", "September", "November"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "fifteen"]


def story(rng: random.Random) -> tuple[str, str]:
    """One (document, summary) news story; the summary restates the story's key facts."""
    town, person, other = rng.choice(TOWNS), rng.choice(PEOPLE), rng.choice(PEOPLE)
    day, month = rng.choice(DAYS), rng.choice(MONTHS)
    kind = rng.randrange(6)
    if kind == 0:
        project, yes, no = rng.choice(PROJECTS), rng.randint(12, 30), rng.randint(2, 11)
        cost = rng.randint(2, 40)
        sentences = [f"Councillors in {town} have voted {yes} to {no} in favour of plans to {project}.",
                     f"The proposal was first put forward in {month} and is expected to cost about {cost} million pounds.",
                     f"Council leader {person} said the scheme would make the town centre a better place to live.",
                     f"{other}, who spoke against the plans, argued that the money should be spent on repairing roads.",
                     "Work is expected to start next year, subject to a final review of the budget."]
        summary = f"Plans to {project} in {town} have been approved by councillors."
    elif kind == 1:
        home, away = rng.sample(CLUBS, 2)
        goals_home, goals_away = rng.randint(2, 5), rng.randint(0, 1)
        sentences = [f"{home} beat {away} {goals_home}-{goals_away} on {day} night.",
                     f"{person} scored twice in the second half after {away} had taken an early lead."
                     if goals_away else f"{person} scored twice in the second half as {away} struggled to create chances.",
                     f"The result lifts {home} to third place in the league table.",
                     f"{away} manager {other} said his side had been second best for most of the match.",
                     f"A crowd of {rng.randint(2, 9)},{rng.randint(100, 999)} watched the game."]
        summary = f"{person} scored twice as {home} beat {away} {goals_home}-{goals_away}."
    elif kind == 2:
        company, industry = rng.choice(COMPANIES)
        jobs = rng.choice([40, 60, 75, 120, 150, 200, 250, 300])
        sentences = [f"{company}, a {industry} company, has announced plans to open a new site in {town}.",
                     f"The firm said the move would create {jobs} jobs over the next three years.",
                     f"Chief executive {person} said {town} had been chosen because of its skilled workforce "
                     "and good transport links.",
                     f"Local MP {other} welcomed the news and said it was a vote of confidence in the area.",
                     f"Recruitment is expected to begin in {month}."]
        summary = f"{company} is to create {jobs} jobs at a new site in {town}."
    elif kind == 3:
        weather, effect = rng.choice(WEATHER)
        sentences = [f"Heavy {weather} hit {town} on {day}, and {effect}.",
                     "Several roads around the town were closed for most of the day.",
                     f"{person} from the county council said teams had been working through the night.",
                     "Forecasters said conditions should improve by the end of the week.",
                     "Residents have been advised to check for updates before travelling."]
        summary = f"Heavy {weather} has caused disruption in {town}, where {effect}."
    elif kind == 4:
        animal, habitat = rng.choice(ANIMALS)
        years = rng.choice(NUMBER_WORDS[3:]) if rng.random() < 0.5 else str(rng.randint(20, 90))
        sentences = [f"A {animal} has been spotted near {town} for the first time in {years} years.",
                     f"The animal was recorded by a camera set up by volunteers in an area of {habitat}.",
                     f"Wildlife officer {person} said the sighting was a sign that the local habitat was recovering.",
                     f"Volunteers, led by {other}, have spent the last five years restoring the area.",
                     "People are asked not to disturb the site and to report any further sightings."]
        summary = f"A {animal} has been seen near {town} for the first time in {years} years."
    else:
        theme, acts = rng.choice(FESTIVALS)
        visitors = rng.choice(NUMBER_WORDS)
        sentences = [f"More than {visitors} thousand people attended the {town} {theme} festival over the weekend.",
                     "Organisers said it was the largest crowd since the event began.",
                     f"This year's festival featured more than {rng.randint(20, 90)} {acts} from across the region.",
                     f"Festival director {person} thanked the volunteers who helped run the event.",
                     f"The dates for next year's festival will be announced in {month}."]
        summary = f"More than {visitors} thousand people attended the {town} {theme} festival."
    # Keep the lead sentence first (the summary restates it); shuffle the rest, drop one sometimes.
    rest = sentences[1:]
    rng.shuffle(rest)
    if rng.random() < 0.4:
        rest = rest[:-1]
    return " ".join([sentences[0]] + rest), summary


def make_summarization(n: int, rng: random.Random) -> list[dict]:
    rows, seen = [], set()
    while len(rows) < n:
        document, summary = story(rng)
        if document in seen:
            continue
        seen.add(document)
        rows.append({"id": str(len(rows)), "document": document, "summary": summary})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    write_jsonl(DATA_DIR / "translation.jsonl", make_translation(300, random.Random(SEED)))
    write_jsonl(DATA_DIR / "summarization.jsonl", make_summarization(240, random.Random(SEED + 1)))
    print(f"wrote {DATA_DIR / 'translation.jsonl'} and {DATA_DIR / 'summarization.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
