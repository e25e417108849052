"""Tests for recipes/question_answering.py: windows + offsets, span post-processing, SQuAD EM/F1; slow: a short run.

Run: pytest tests/test_question_answering.py            (fast)
     pytest -m slow tests/test_question_answering.py    (trains 3 steps, reloads, runs the QA pipeline)
"""

import json
from pathlib import Path

import numpy as np
import pytest

from grpo.common.errors import UserError
from recipes import _common
from recipes import question_answering as qa

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    from grpo.modeling.models import load_tokenizer

    return load_tokenizer("embedded:minilm-l6")


FILLER = " ".join(f"Sentence number {i} talks about the weather in the valley." for i in range(12))
CONTEXT = f"Ambervale lies on the Olm river. {FILLER} The Old Bridge was built by Talia Varnholt in 1450."
ANSWER = "Talia Varnholt"


def _batch():
    start = CONTEXT.index(ANSWER)
    return {"id": ["q1"], "question": ["  Who built the Old Bridge? "], "context": [CONTEXT],
            "answers": [{"text": [ANSWER], "answer_start": [start]}]}


def test_answer_token_span_inside_and_outside():
    offsets = [(0, 0), (0, 3), (0, 0), (0, 4), (5, 9), (10, 12), (0, 0)]
    seq = [None, 0, None, 1, 1, 1, None]
    assert qa.answer_token_span(offsets, seq, 5, 12) == (4, 5)
    assert qa.answer_token_span(offsets, seq, 0, 4) == (3, 3)
    assert qa.answer_token_span(offsets, seq, 10, 30) == (0, 0)  # runs past the window


def test_long_context_is_windowed_and_labelled(tokenizer):
    args = qa.QuestionAnsweringArgs(max_length=64, stride=16)
    batch = _batch()
    out = qa.preprocess(batch, tokenizer, args)
    n = len(out["input_ids"])
    assert n > 3  # the context overflowed into several windows
    assert all(len(ids) <= 64 for ids in out["input_ids"])
    labelled = [i for i in range(n) if out["start_positions"][i] != 0]
    assert labelled and labelled[-1] == n - 1  # the answer sits at the end of the context
    for i in labelled:
        s, e = out["start_positions"][i], out["end_positions"][i]
        assert tokenizer.decode(out["input_ids"][i][s: e + 1]) == ANSWER.lower()
    for i in set(range(n)) - set(labelled):
        assert out["end_positions"][i] == 0  # not (fully) in this window: [CLS]
    # consecutive windows overlap by `stride` context tokens
    first, second = out["input_ids"][0], out["input_ids"][1]
    assert first[-17:-1] == second[second.index(tokenizer.sep_token_id) + 1:][:16]


def test_validation_features_keep_context_offsets_only(tokenizer):
    args = qa.QuestionAnsweringArgs(max_length=64, stride=16)
    out = qa.preprocess_validation(_batch(), tokenizer, args)
    assert set(out["example_id"]) == {"q1"}
    offsets = out["offset_mapping"][0]
    assert offsets[0] is None and offsets[1] is None  # [CLS] and question tokens
    context_offsets = [o for o in offsets if o is not None]
    assert context_offsets and context_offsets[0][0] == 0


def test_postprocess_picks_best_valid_span():
    context = "Ambervale was founded by Talia Varnholt."
    features = {"example_id": ["a"], "offset_mapping": [[None, None, (0, 9), (10, 13), (14, 21), (22, 24),
                                                        (25, 30), (31, 39), None]]}
    start = np.full((1, 10), -10.0)
    end = np.full((1, 10), -10.0)
    start[0, 0], end[0, 0] = 50.0, 50.0  # [CLS] is outside the context: never chosen
    start[0, 6], end[0, 7] = 5.0, 5.0  # "Talia Varnholt"
    start[0, 9], end[0, 9] = 40.0, 40.0  # a padding position past the window: skipped
    examples = [{"id": "a", "context": context}]
    assert qa.postprocess(start, end, features, examples) == {"a": "Talia Varnholt"}
    end[0, 7] = -10.0
    end[0, 2] = 6.0  # best end now before the start: invalid, falls back to other pairs
    assert qa.postprocess(start, end, features, examples, max_answer_length=1)["a"] in {"Talia", "Ambervale"}


def test_squad_scores_hand_made():
    refs = {"exact": ["Talia Varnholt"], "norm": ["Old Bridge"], "none": ["1450"],
            "multi": ["Olm", "the Olm river"], "partial": ["Talia Varnholt"]}
    preds = {"exact": "Talia Varnholt", "norm": "the old bridge!", "none": "Lake Orrin",
             "multi": "Olm river", "partial": "Varnholt"}
    scores = qa.squad_scores(preds, refs)
    # EM: exact, norm, multi (matches the 2nd gold after normalisation) -> 3 of 5.
    # F1: 1 + 1 + 0 + max(2/3 vs "olm", 1 vs "olm river") + 2/3 ("varnholt" vs "talia varnholt").
    assert scores["exact_match"] == pytest.approx(60.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 + 0 + 1 + 2 / 3) / 5)
    assert qa.squad_scores({}, {"x": ["a b"]}) == {"exact_match": 0.0, "f1": 0.0}  # missing prediction
    assert qa.squad_scores({"x": ""}, {"x": []}) == {"exact_match": 100.0, "f1": 100.0, "HasAns_f1": 0.0,
                                                      "NoAns_exact": 100.0}  # unanswerable: "" is right


def test_squad_v2_scores_split_answerable_and_unanswerable():
    refs = {"a": ["Olm"], "b": [], "c": [], "d": ["Talia Varnholt"]}
    preds = {"a": "Olm", "b": "", "c": "Ambervale", "d": ""}  # right, right null, answered a null, missed
    scores = qa.squad_scores(preds, refs)
    assert scores == {"exact_match": 50.0, "f1": 50.0, "HasAns_f1": 50.0, "NoAns_exact": 50.0}


V2_CONTEXT = "Ambervale was founded by Talia Varnholt."
V2_OFFSETS = [None, None, (0, 9), (10, 13), (14, 21), (22, 24), (25, 30), (31, 39), None]


def _v2_logits(null, span):
    """Window logits with [CLS] (position 0) at ``null`` each and "Talia Varnholt" (6..7) at ``span`` each."""
    start, end = np.full((1, 9), -10.0), np.full((1, 9), -10.0)
    start[0, 0] = end[0, 0] = null
    start[0, 6] = end[0, 7] = span
    return start, end


@pytest.mark.parametrize("null, span, threshold, expected", [
    (4.0, 3.0, 0.0, ""),                 # null 8 beats the span 6
    (2.0, 3.0, 0.0, "Talia Varnholt"),   # the span 6 beats null 4
    (4.0, 3.0, 2.5, "Talia Varnholt"),   # null - span = 2 is not above the threshold
    (3.0, 3.0, 0.0, "Talia Varnholt"),   # a tie keeps the span (null must be strictly better)
])
def test_v2_null_answer_when_its_score_beats_the_best_span(null, span, threshold, expected):
    features = {"example_id": ["a"], "offset_mapping": [V2_OFFSETS]}
    start, end = _v2_logits(null, span)
    examples = [{"id": "a", "context": V2_CONTEXT}]
    got = qa.postprocess(start, end, features, examples, version_2_with_negative=True,
                         null_score_diff_threshold=threshold)
    assert got == {"a": expected}
    assert qa.postprocess(start, end, features, examples) == {"a": "Talia Varnholt"}  # v1 never answers null


def test_v2_null_score_is_the_lowest_over_windows():
    # Two windows of one example: the answer is in the second, whose [CLS] score is low; the first
    # window's high [CLS] score (answer not in it) must not make the example unanswerable.
    features = {"example_id": ["a", "a"], "offset_mapping": [V2_OFFSETS, V2_OFFSETS]}
    first, second = _v2_logits(9.0, -10.0), _v2_logits(1.0, 3.0)
    start, end = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    got = qa.postprocess(start, end, features, [{"id": "a", "context": V2_CONTEXT}], version_2_with_negative=True,
                         return_spans=True)
    assert got["a"]["answer"] == "Talia Varnholt" and got["a"]["score"] == pytest.approx(6.0)


def test_compute_metrics_v2_end_to_end_on_hand_made_rows():
    args = qa.QuestionAnsweringArgs(version_2_with_negative=True)
    features = {"example_id": ["yes", "no"], "offset_mapping": [V2_OFFSETS, V2_OFFSETS]}
    s_yes, e_yes = _v2_logits(0.0, 5.0)
    s_no, e_no = _v2_logits(5.0, 0.0)
    examples = [{"id": "yes", "context": V2_CONTEXT, "answers": {"text": ["Talia Varnholt"], "answer_start": [25]}},
                {"id": "no", "context": V2_CONTEXT, "answers": {"text": [], "answer_start": []}}]
    scores = qa.compute_metrics(np.concatenate([s_yes, s_no]), np.concatenate([e_yes, e_no]), features, examples, args)
    assert scores == {"exact_match": 100.0, "f1": 100.0, "HasAns_f1": 100.0, "NoAns_exact": 100.0}
    args.version_2_with_negative = False  # v1 post-processing answers the unanswerable one
    assert qa.compute_metrics(np.concatenate([s_yes, s_no]), np.concatenate([e_yes, e_no]), features, examples,
                              args)["NoAns_exact"] == 0.0


def test_unanswerable_rows_are_labelled_on_cls(tokenizer):
    batch = {"id": ["n"], "question": ["Who built @placeholder?"], "context": [V2_CONTEXT],
             "answers": [{"text": [], "answer_start": []}]}
    out = qa.preprocess(batch, tokenizer, qa.QuestionAnsweringArgs())
    assert out["start_positions"] == [0] and out["end_positions"] == [0]


def test_missing_answer_start_is_a_user_error(tokenizer):
    batch = _batch()
    batch["answers"] = [{"text": [ANSWER]}]
    with pytest.raises(UserError, match="answers.answer_start"):
        qa.preprocess(batch, tokenizer, qa.QuestionAnsweringArgs())


def test_wrong_schema_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"id": str(i), "context": "c", "question": "q"}) + "\n" for i in range(3)))
    with pytest.raises(UserError, match="missing field.*answers"):
        qa.main(["--dataset", str(bad), "--eval_dataset", "", "--output_dir", str(tmp_path / "out")])


def test_stride_validation():
    with pytest.raises(ValueError, match="stride=200"):
        qa.QuestionAnsweringArgs(max_length=384, stride=200)


def test_shipped_data_spans_match():
    for name in ("squad_train.jsonl", "squad_validation.jsonl"):
        rows = [json.loads(line) for line in open(FIXTURES / name)]
        for row in rows:
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start: start + len(text)] == text
    assert any(len(r["answers"]["text"]) > 1 for r in rows)  # validation has multiple golds


def test_answer_questions_helper_returns_context_spans(tokenizer):
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(config)
    contexts = [CONTEXT, "Ambervale was founded by Talia Varnholt."]
    out = qa.answer_questions(model, tokenizer, ["Who built the Old Bridge?", "Who founded it?"], contexts,
                              max_length=64, stride=16, n_best=64, max_answer_length=5)
    # n_best covers every position, so some one-token context span is always valid
    assert len(out) == 2
    for span, context in zip(out, contexts):
        assert span["answer"] and span["answer"] == context[span["start"]: span["end"]]
    kw = dict(max_length=64, stride=16, n_best=64, max_answer_length=5, version_2_with_negative=True)
    never_null = qa.answer_questions(model, tokenizer, ["Who founded it?"], contexts[1:], null_score_diff_threshold=1e9, **kw)
    always_null = qa.answer_questions(model, tokenizer, ["Who founded it?"], contexts[1:], null_score_diff_threshold=-1e9, **kw)
    assert never_null[0]["answer"] == out[1]["answer"]
    assert always_null[0] == {"answer": "", "start": 0, "end": 0, "score": always_null[0]["score"]}


@pytest.mark.slow
def test_short_run_checkpoint_reloads_with_same_predictions_and_pipeline(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    question, context = "Who built the Old Bridge?", "The Old Bridge was built by Talia Varnholt in 1450."
    captured = {}
    real_save = _common.save_checkpoint

    def spy(model, tokenizer, output_dir, **kw):
        model.eval()
        with torch.no_grad():
            out = model(**tokenizer(question, context, return_tensors="pt"))
        captured["start"], captured["end"], captured["model"] = out.start_logits, out.end_logits, model
        return real_save(model, tokenizer, output_dir, **kw)

    monkeypatch.setattr(_common, "save_checkpoint", spy)
    out_dir = tmp_path / "qa"
    code = qa.main(["--config", "recipes/configs/question_answering.yaml", "--output_dir", str(out_dir),
                    "--max_steps", "3", "--max_train_samples", "32", "--max_eval_samples", "12"])
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    # the answerable-only / unanswerable-only scores join when the eval split has both kinds (the config's has)
    assert {"exact_match", "f1"} <= set(metrics["after"]) <= {"exact_match", "f1", "HasAns_f1", "NoAns_exact"}

    reloaded = AutoModelForQuestionAnswering.from_pretrained(out_dir).eval()
    tok = AutoTokenizer.from_pretrained(out_dir)
    with torch.no_grad():
        again = reloaded(**tok(question, context, return_tensors="pt"))
    assert torch.allclose(again.start_logits, captured["start"], atol=1e-5)
    assert torch.allclose(again.end_logits, captured["end"], atol=1e-5)

    # transformers 5 removed pipeline("question-answering"); the recipe's helper takes its place.
    with pytest.raises(KeyError, match="question-answering"):
        pipeline("question-answering", model=str(out_dir))
    before, after = qa.answer_questions(captured["model"], tok, [question], [context]), \
        qa.answer_questions(reloaded, tok, [question], [context])
    assert before == after
    assert after[0]["answer"] == context[after[0]["start"]: after[0]["end"]]


def test_v2_run_on_own_eval_file_reports_null_metrics_and_baselines(tmp_path, one_torch_thread):
    context = "Ambervale was founded by Talia Varnholt. The bridge opened later."
    answerable = {"id": "a", "context": context, "question": "Who founded Ambervale?",
                  "answers": {"text": ["Talia Varnholt"], "answer_start": [25]}}
    unanswerable = {"id": "n", "context": context, "question": "Who painted the bridge?",
                    "answers": {"text": [], "answer_start": []}}
    train, evaluation = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps({**row, "id": f"{row['id']}{i}"}) + "\n"
                             for i in range(4) for row in (answerable, unanswerable)))
    evaluation.write_text(json.dumps(answerable) + "\n" + json.dumps(unanswerable) + "\n")
    out = tmp_path / "qa"
    assert qa.main(["--dataset", str(train), "--eval_dataset", str(evaluation), "--version_2_with_negative", "true",
                    "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
                    "--max_length", "64", "--stride", "16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["after"]) == {"exact_match", "f1", "HasAns_f1", "NoAns_exact"}
    assert metrics["baselines"]["always null"] == {"exact_match": 50.0, "f1": 50.0, "HasAns_f1": 0.0,
                                                   "NoAns_exact": 100.0}
    assert "exclusive frequency" in metrics["baselines"]
