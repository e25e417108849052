"""GRPO on the recipes' tasks: reference rows, sacreBLEU / ROUGE evaluation with paired tests, and one GRPO
step of grpo/configs/translate_en_fr.yaml and summarize.yaml from a (tiny, random) recipe checkpoint.

    pytest -q tests/test_reference_tasks.py            # fast tier
    pytest -q -m slow tests/test_reference_tasks.py    # + the GRPO steps
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from grpo.common.errors import UserError
from grpo.data.reference_rows import reference_rows
from grpo.evaluation import text_metrics as tm

PAIRS = [{"translation": {"en": "Open %s", "fr": "Ouvrir %s"}},
         {"translation": {"en": "Close the window", "fr": "Fermer la fenêtre"}},
         {"translation": {"en": "Search results for {0}", "fr": "Résultats de la recherche pour {0}"}},
         {"translation": {"en": "Python", "fr": "Python"}}]
STORIES = [{"document": "Fires burn in NSW. Crews rest at night. Rain is due on Friday.", "summary": "Rain will help crews."},
           {"document": "The bank lifted rates. Markets fell. Economists were surprised.", "summary": "Rates rose."},
           {"document": "A koala was rescued. It is recovering. Vets are hopeful.", "summary": "Koala saved from fire."}]


def test_reference_rows_use_the_recipe_prompt_and_keep_the_source():
    rows = reference_rows(PAIRS, "translation")
    assert rows.column_names == ["prompt", "source", "reference"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Translate this English text to French.\n\nOpen %s"}]
    assert rows[2]["source"] == "Search results for {0}" and rows[2]["reference"].endswith("{0}")
    long = [{"document": " ".join(["word"] * 400), "summary": "s"}]
    summary = reference_rows(long, "summarization")[0]
    assert summary["prompt"][0]["content"].count("word") == 150 and summary["source"].count("word") == 400
    assert len(reference_rows(PAIRS, "translation", limit=2)) == 2


def test_reference_rows_name_the_bad_row():
    with pytest.raises(UserError, match=r"pairs.jsonl row 1: missing or empty 'translation.fr'"):
        reference_rows([PAIRS[0], {"translation": {"en": "x"}}], "translation", where="pairs.jsonl")
    with pytest.raises(UserError, match="'summary'"):
        reference_rows([{"document": "d", "summary": " "}], "summarization")


def test_translation_scores_are_sacrebleu_corpus_scores():
    hyps, refs = ["Ouvrir %s", "Fermer fenêtre", "Résultats pour {0}", "Python"], [p["translation"]["fr"] for p in PAIRS]
    got = tm.translation_scores(hyps, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-4)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-4)
    low, high = got["chrf_ci"]
    assert low < high


def test_summarization_scores_are_rouge_score_means_and_lead1_is_the_recipes():
    from recipes.baselines import lead_sentences

    docs, refs = [s["document"] for s in STORIES], [s["summary"] for s in STORIES]
    assert [tm.lead_sentence(d) for d in docs] == [lead_sentences(d) for d in docs]
    preds = ["Rain helps the crews.", "Rates rose sharply.", "A koala."]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    want = 100 * sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / 3
    assert tm.summarization_scores(preds, refs)["rougeL"] == pytest.approx(want, abs=1e-3)


def test_sign_test_and_paired_bootstrap():
    assert tm.sign_test([0] * 5, [1] * 5)["p"] == pytest.approx(2 / 32)
    assert tm.sign_test([1, 0, 2], [1, 0, 2]) == {"wins": 0, "losses": 0, "ties": 3, "p": 1.0}
    clear = tm.paired_bootstrap_mean([0.0] * 40, [1.0 + (i % 3) for i in range(40)])
    assert clear["p"] < 0.01 and clear["difference_ci"][0] > 0
    noise = tm.paired_bootstrap_mean([float(i % 2) for i in range(40)], [float((i + 1) % 2) for i in range(40)])
    assert noise["p"] > 0.5


def test_compare_text_pairs_with_sacrebleu_and_the_baseline():
    rows = {"source": [p["translation"]["en"] for p in PAIRS] * 5, "reference": [p["translation"]["fr"] for p in PAIRS] * 5}
    before = tm.text_report("translation", list(rows["source"]), rows, n_bootstrap=100)  # = copy source
    after = tm.text_report("translation", list(rows["reference"]), rows, n_bootstrap=100)
    result = tm.compare_text(before, after, n_bootstrap=200)
    assert result["paired"]["bleu"]["after"] == pytest.approx(100.0) and result["paired"]["bleu"]["p"] < 0.05
    assert result["vs_baseline"]["name"] == "copy source"
    assert result["vs_baseline"]["chrf"]["before"] == pytest.approx(before["chrf"], abs=1e-3)
    text = tm.format_text_comparison("sft", "grpo", result)
    assert "sft -> grpo" in text and "copy source -> grpo" in text
    with pytest.raises(UserError, match="different rows"):
        tm.compare_text(before, tm.text_report("translation", ["x"], {"source": ["a"], "reference": ["b"]}))


def test_evaluate_module_dispatches_text_reports():
    from grpo.evaluation.evaluate import compare_columns, format_comparisons, format_table

    rows = {"source": [s["document"] for s in STORIES], "reference": [s["summary"] for s in STORIES]}
    reports = {"base": tm.text_report("summarization", ["Rain.", "Rates.", "Koala."], rows),
               "after GRPO": tm.text_report("summarization", list(rows["reference"]), rows)}
    table = format_table(reports)
    assert "baseline: lead-1" in table and "rougeL" in table and "accuracy" not in table
    assert "lead-1 -> after GRPO" in format_comparisons(compare_columns(reports))


def test_infer_task_from_columns():
    assert tm.infer_task(["translation"]) == "translation"
    assert tm.infer_task(["document", "summary", "id"]) == "summarization"
    assert tm.infer_task(["question", "answer"]) is None


class FakeRecipe:
    """Stands in for ``recipes.get(task)``: records the argv, optionally writes the checkpoint directory."""

    def __init__(self, code=0, make=True):
        self.code, self.make, self.argv = code, make, None

    def main(self, argv):
        self.argv = list(argv)
        if self.make:
            Path(argv[argv.index("--output_dir") + 1]).mkdir(parents=True)
        return self.code


def test_missing_recipe_checkpoint_runs_the_recipe_first(tmp_path, monkeypatch, caplog):
    import recipes
    from grpo.cli.reference_tasks import ensure_recipe_checkpoint

    fake, asked = FakeRecipe(), []
    monkeypatch.setattr(recipes, "get", lambda name: asked.append(name) or fake)
    missing = str(tmp_path / "runs" / "translation")
    args = SimpleNamespace(task="translation", model_name_or_path=missing)
    with caplog.at_level("WARNING", logger="grpo.cli.reference_tasks"):
        assert ensure_recipe_checkpoint(args) is True
    assert asked == ["translation"]
    config = Path(fake.argv[fake.argv.index("--config") + 1])
    assert config.name == "translation.yaml" and config.exists()
    assert fake.argv[fake.argv.index("--output_dir") + 1] == missing
    assert f"grpo recipe translation --config recipes/configs/translation.yaml --output_dir {missing}" in caplog.text
    assert ensure_recipe_checkpoint(args) is False and asked == ["translation"]  # now it exists: nothing runs
    for other in (SimpleNamespace(task="gsm8k", model_name_or_path=str(tmp_path / "nope")),
                  SimpleNamespace(task="summarization", model_name_or_path="HuggingFaceTB/SmolLM2-135M"),
                  SimpleNamespace(task="summarization", model_name_or_path="embedded:smollm2-135m-instruct")):
        assert ensure_recipe_checkpoint(other) is False
    assert asked == ["translation"]


def test_missing_recipe_checkpoint_that_cannot_be_made_names_the_command(tmp_path, monkeypatch, capsys):
    import recipes
    from grpo.cli import commands as cli

    monkeypatch.setattr(recipes, "get", lambda name: FakeRecipe(code=1, make=False))
    missing = str(tmp_path / "no-such-checkpoint")
    code = cli.main(["train", "--config", "grpo/configs/summarize.yaml", "--model_name_or_path", missing,
                     "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"grpo recipe summarization --config recipes/configs/summarization.yaml --output_dir {missing}" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_missing_recipe_checkpoint_under_a_multi_process_launch_is_not_made(tmp_path, monkeypatch):
    import recipes
    from grpo.cli.reference_tasks import ensure_recipe_checkpoint

    fake = FakeRecipe()
    monkeypatch.setattr(recipes, "get", lambda name: fake)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="in one process: grpo recipe translation"):
        ensure_recipe_checkpoint(SimpleNamespace(task="translation", model_name_or_path=str(tmp_path / "x")))
    assert fake.argv is None


# ---------------------------------------------------------------------------- one GRPO step per config


def tiny_recipe_checkpoint(path):
    """A stand-in for a recipe checkpoint: SmolLM2's tokenizer (chat template) on a tiny random Llama."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rewards.reward_model import resolve_local_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_local_model("embedded:smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config, metric", [("grpo/configs/translate_en_fr.yaml", "chrf_reward"),
                                            ("grpo/configs/summarize.yaml", "rouge_reward")])
def test_one_grpo_step_from_a_recipe_checkpoint(config, metric, tmp_path):
    from grpo.cli import commands as cli

    checkpoint = tiny_recipe_checkpoint(tmp_path / "recipe")
    run = tmp_path / "grpo"
    code = cli.main(["train", "--config", config, "--model_name_or_path", str(checkpoint), "--output_dir", str(run),
                     "--max_steps", "1", "--num_generations", "2", "--per_device_train_batch_size", "2",
                     "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--train_limit", "4",
                     "--eval_size", "3", "--eval_max_new_tokens", "4", "--save_steps", "0", "--disable_tqdm", "true"])
    assert code == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines and f"rewards/{metric}/mean" in lines[-1]
    before, after = (json.loads((run / name).read_text()) for name in ("eval_before.json", "eval_after.json"))
    assert before["n"] == after["n"] == 3 and before["task"] == after["task"]
    comparison = json.loads((run / "eval_comparison.json").read_text())
    assert comparison and "paired" in comparison[0]


def write_pairs(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return data


def test_grpo_eval_infers_the_task_from_columns(tmp_path):
    from grpo.cli.reference_tasks import eval_task_rows

    task, rows = eval_task_rows(str(write_pairs(tmp_path)), "test", 3, None)
    assert task == "translation" and len(rows) == 3
    assert eval_task_rows("gsm8k", "test", 3, None) == ("gsm8k", None)
    stories = tmp_path / "stories.jsonl"
    stories.write_text("".join(json.dumps(s) + "\n" for s in STORIES))
    assert eval_task_rows(str(stories), "test", None, None)[0] == "summarization"


@pytest.mark.slow  # ~5 s alone, 20+ s on a loaded machine
def test_grpo_eval_scores_a_checkpoint_with_its_baseline(tmp_path, capsys):
    from grpo.cli import commands as cli

    data = write_pairs(tmp_path)
    checkpoint = tiny_recipe_checkpoint(tmp_path / "recipe")
    report_path = tmp_path / "report.json"
    code = cli.main(["eval", "--model", str(checkpoint), "--dataset", str(data), "--max_new_tokens", "3",
                     "--dtype", "float32", "--output", str(report_path)])
    out = capsys.readouterr().out
    assert code == 0 and "baseline: copy source" in out and "chrf" in out
    report = json.loads(report_path.read_text())
    assert report["task"] == "translation" and report["n"] == 4 and len(report["samples"]) == 4
