"""Reward families on hand-written hard cases: the course's five, format, numeric, length, cosine,
repetition; picklability, worker threads and TRL's exact call.

Run: pytest tests/test_rewards.py -q
"""

import pickle
import threading
import time

import pytest

import rewards
from rewards.correctness import Correctness, answers_match
from rewards.formats import ReasoningSteps, SoftFormat, StrictFormat, XmlCount
from rewards.length import CosineLength, Length
from rewards.numeric import IntegerAnswer, NumberAnswer
from rewards.repetition import RepetitionPenalty

GOOD = "<reasoning>\n6 * 3 = 18\nso 18\n</reasoning>\n<answer>\n18\n</answer>\n"
GOOD_NO_NEWLINE = GOOD.rstrip("\n")
CHEAP = ["xml_count", "soft_format", "strict_format", "think_format", "code_format", "reasoning_steps", "integer_answer",
         "number_answer", "correctness", "length", "cosine_length", "overlong", "repetition", "group_length"]


def conv(text):
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------- the course's five, by registry name
class TestCourseFive:
    NAMES = {"xml_count": "xmlcount_reward", "soft_format": "soft_format_reward",
             "strict_format": "strict_format_reward", "integer_answer": "int_reward",
             "correctness": "accuracy_reward"}

    @pytest.mark.parametrize("name", NAMES)
    def test_names(self, name):
        assert rewards.get(name).__name__ == self.NAMES[name]

    def test_values_on_perfect_completion(self):
        got = {n: rewards.get(n)([conv(GOOD)], answer=["18"])[0] for n in self.NAMES}
        assert got == {"xml_count": 0.5, "soft_format": 0.5, "strict_format": 0.5, "integer_answer": 0.5,
                       "correctness": 2.0}

    def test_values_on_garbage(self):
        got = {n: rewards.get(n)([conv("I like turtles")], answer=["18"])[0] for n in self.NAMES}
        assert got == dict.fromkeys(self.NAMES, 0.0)

    @pytest.mark.parametrize("written", ["18", "18.0", "$18", "18.00", "\\$18", "18 dollars", "\\boxed{18}",
                                         "$18$", "  18.  "])
    def test_correctness_person_like(self, written):
        text = f"<reasoning>\n...\n</reasoning>\n<answer>\n{written}\n</answer>"
        assert rewards.get("correctness")([text], answer=["18"]) == [2.0]

    def test_thousands_separator_both_ways(self):
        fn = rewards.get("correctness")
        assert fn(["<answer>1,000</answer>", "<answer>1000</answer>"], answer=["1000", "1,000"]) == [2.0, 2.0]

    def test_wrong_answer_in_tag_not_rescued_by_reasoning(self):
        text = "<reasoning>\nit is 18\n</reasoning>\n<answer>\n17\n</answer>"
        assert rewards.get("correctness")([text], answer=["18"]) == [0.0]

    def test_course_extraction_only(self):
        fn = rewards.get("correctness", extractors=["answer_tag"])
        assert fn(["the answer is 18"], answer=["18"]) == [0.0]

    def test_int_reward_cases(self):
        fn = rewards.get("integer_answer")
        texts = ["<answer>\n-3\n</answer>", "<answer>1,000</answer>", "<answer>18.5</answer>",
                 "<answer>eighteen</answer>", "18", "<answer></answer>"]
        assert fn(texts) == [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]


# ---------------------------------------------------------------- format family
class TestXmlCount:
    def test_each_tag_counts(self):
        assert XmlCount().score("<reasoning>\n") == 0.125
        assert XmlCount().score("\n<answer>\nx\n</answer>") == 0.25

    def test_trailing_text_penalty_as_course(self):
        assert XmlCount().score(GOOD + "abc") == pytest.approx(0.5 - 0.006)

    def test_no_final_newline_is_full_credit(self):
        assert XmlCount().score(GOOD_NO_NEWLINE) == 0.5

    def test_exact_course_quirks(self):
        # The course charges the whole text's length when "\n</answer>\n" is absent, and pays +0.001.
        course = XmlCount(exact_course=True).score(GOOD_NO_NEWLINE)
        assert course == pytest.approx(0.5 - len(GOOD_NO_NEWLINE) * 0.001 + 0.001)

    def test_duplicate_tags_lose_credit(self):
        assert XmlCount().score(GOOD + GOOD) < 0.5

    def test_think_tags(self):
        text = "<think>\nx\n</think>\n<answer>\n1\n</answer>"
        assert XmlCount(reasoning_tag="think", per_tag=0.25)([text]) == [1.0]


class TestSoftStrict:
    def test_soft_multiline_reasoning(self):
        assert SoftFormat()(["<reasoning>line1\nline2</reasoning>\n\n<answer>4</answer>"]) == [0.5]

    def test_soft_course_regex_rejects_multiline(self):
        assert SoftFormat(exact_course=True)(["<reasoning>line1\nline2</reasoning><answer>4</answer>"]) == [0.0]

    def test_soft_trailing(self):
        text = "<reasoning>r</reasoning><answer>4</answer> extra"
        assert SoftFormat()([text]) == [0.5]
        assert SoftFormat(allow_trailing=False)([text]) == [0.0]

    @pytest.mark.parametrize("text", ["<answer>4</answer><reasoning>r</reasoning>", "<reasoning>r</reasoning>",
                                      "<reasoning>r<answer>4</answer>", "x<reasoning>r</reasoning><answer>4</answer>",
                                      "<reasoning>r</reasoning> text <answer>4</answer>"])
    def test_soft_rejects(self, text):
        assert SoftFormat()([text]) == [0.0]

    def test_strict_accepts_no_final_newline_and_multiline(self):
        assert StrictFormat()([GOOD, GOOD_NO_NEWLINE, GOOD + "\n\n"]) == [0.5, 0.5, 0.5]

    def test_strict_course_regex_needs_final_newline(self):
        single = "<reasoning>\nr\n</reasoning>\n<answer>\n4\n</answer>"
        assert StrictFormat(exact_course=True)([single, single + "\n"]) == [0.0, 0.5]

    @pytest.mark.parametrize("text", ["<reasoning>r</reasoning>\n<answer>\n4\n</answer>",
                                      " " + GOOD, GOOD + "x", GOOD + GOOD,
                                      "<reasoning>\nr\n</reasoning><answer>\n4\n</answer>"])
    def test_strict_rejects(self, text):
        assert StrictFormat()([text]) == [0.0]

    def test_adversarial_repeated_tags_are_fast(self):
        text = "<reasoning>" + "</reasoning>" * 80_000 + "<answer>"
        start = time.perf_counter()
        for fn in (SoftFormat(), StrictFormat(), XmlCount(), SoftFormat(allow_trailing=False)):
            fn([text])
        assert time.perf_counter() - start < 2.0

    def test_bad_tag_name(self):
        with pytest.raises(rewards.RewardConfigError, match="tag name"):
            SoftFormat(reasoning_tag="<think>")


class TestThinkFormatAndSteps:
    @pytest.mark.parametrize("text, expected", [
        ("<think>Some reasoning</think><answer>The answer</answer>", 1.0),
        ("<think>\nmulti\nline\n</think>\n<answer>9</answer>", 1.0),
        ("<think>Only thinking</think>", 0.0),
        ("<answer>Only answer</answer>", 0.0),
        ("<think>Missing closing</think><answer>Missing closing", 0.0),
        ("<think>Wrong order</answer><answer>Wrong order</think>", 0.0),
    ])
    def test_think_format(self, text, expected):
        assert rewards.get("think_format")([conv(text)]) == [expected]

    @pytest.mark.parametrize("text, expected", [
        ("Step 1: a\nStep 2: b\nStep 3: c", 1.0), ("First, a.\nSecond, b.\nFinally, c.", 1.0),
        ("Step 1: only", 1 / 3), ("First, a.\nFinally, b.", 2 / 3), ("plain text", 0.0),
        ("1. a\n2. b\n- c\n* d", 1.0),
    ])
    def test_reasoning_steps(self, text, expected):
        assert ReasoningSteps()([text])[0] == pytest.approx(expected)


# ---------------------------------------------------------------- correctness details
class TestCorrectness:
    @pytest.mark.parametrize("pred, gold", [
        ("\\frac{1}{2}", "0.5"), ("0.5", "\\frac{1}{2}"), ("1/2", "0.5"), ("50%", "0.5"), ("50%", "50"),
        ("\\frac{63}{400}", "\\frac{63}{400}"), ("x = 3", "3"), ("07", "7"), ("3.50", "$3.50"),
    ])
    def test_math_verify_equivalences(self, pred, gold):
        assert answers_match(pred, gold) is True

    @pytest.mark.parametrize("pred, gold", [("17", "18"), ("18.5", "18"), ("-18", "18"), ("\\frac{64}{400}", "\\frac{63}{400}"),
                                            ("", "18"), (None, "18"), ("eighteen", "18")])
    def test_mismatches(self, pred, gold):
        assert answers_match(pred, gold) is False

    # Issue 15: LaTeX inside \boxed{} reaches math-verify with math delimiters (bare, it misreads it).
    BOXED = [("\\boxed{\\dfrac{1}{2}}", "\\boxed{\\dfrac{1}{3}}", "\\frac{1}{2}"),
             ("\\boxed{x^2+1}", "\\boxed{x^2-1}", "$x^2+1$"),
             ("\\boxed{3, 5}", "\\boxed{5}", "$3, 5$"),
             ("\\boxed{[0,1)}", "\\boxed{[0,1]}", "$[0,1)$"),
             ("\\boxed{\\{1,2\\}}", "\\boxed{\\{1,3\\}}", "$\\{1,2\\}$"),
             ("\\boxed{25\\%}", "\\boxed{26\\%}", "0.25")]

    @pytest.mark.parametrize("right, wrong, gold", BOXED)
    def test_boxed_latex_rows(self, right, wrong, gold):
        fn = rewards.get("correctness", correct=1.0, column="solution")
        texts = [f"So the answer is {right}.", f"So the answer is {wrong}.", f"<answer>{right}</answer>"]
        assert fn([conv(t) for t in texts], solution=[gold] * 3) == [1.0, 0.0, 1.0]

    @pytest.mark.parametrize("pred, gold, expected", [
        ("3, 5", "5", False), ("5, 3", "$3, 5$", True), ("x^2+1", "x^2 + 1", True), ("\\{1,2\\}", "\\{2,1\\}", True),
        ("(0,1)", "$[0,1)$", False), ("25\\%", "25", True), ("18 dollars", "18", True), ("\\text{eighteen}", "18", False),
    ])
    def test_bare_latex_edges(self, pred, gold, expected):
        assert answers_match(pred, gold) is expected

    def test_gold_forms(self):
        fn = Correctness()
        texts = ["<answer>72</answer>"] * 4
        golds = ["72", "Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", 72, "\\boxed{72}"]
        assert fn(texts, answer=golds) == [2.0] * 4

    def test_missing_or_unparsable_gold_is_none(self):
        assert Correctness()(["<answer>1</answer>"] * 3, answer=[None, "", "\\frac{"]) == [None, None, None]

    def test_gold_column_fallback_and_option(self):
        assert Correctness()(["<answer>1</answer>"], solution=["1"]) == [2.0]
        assert Correctness(column="gold")(["<answer>1</answer>"], gold=["1"], answer=["2"]) == [2.0]

    def test_missing_column_is_a_clear_error(self):
        with pytest.raises(rewards.RewardError, match="'answer' or 'solution'.*columns passed: question"):
            Correctness()(["x"], question=["q"], trainer_state=None)

    def test_column_length_mismatch(self):
        with pytest.raises(rewards.RewardError, match="one value per completion"):
            Correctness()(["x", "y"], answer=["1"])

    @pytest.mark.parametrize("bomb", ["\\boxed{9^{9^{9^{9}}}}", "<answer>9**9**9**9</answer>",
                                      "<answer>$10^{10^{10^{10}}}$</answer>", "\\boxed{(10^{8})!}"])
    def test_adversarial_answer_is_time_limited(self, bomb):
        start = time.perf_counter()
        assert Correctness(timeout_seconds=0.3)([bomb], answer=["18"]) == [0.0]
        assert time.perf_counter() - start < 1.5

    def test_time_limit_restores_outer_alarm(self):
        import signal

        fired = []
        previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
        try:
            signal.setitimer(signal.ITIMER_REAL, 1.0)
            Correctness(timeout_seconds=0.2)(["\\boxed{9^{9^{9^{9}}}}", "<answer>\\frac{36}{2}</answer>"], answer=["18"] * 2)
            assert signal.getsignal(signal.SIGALRM) is not None and 0 < signal.getitimer(signal.ITIMER_REAL)[0] < 1.0
            time.sleep(1.0)
            assert fired == [1]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def test_worker_thread(self):
        results = {}

        def work():
            fn = Correctness()
            results["v"] = fn(["<answer>$18</answer>", "<answer>\\frac{36}{2}</answer>", "\\boxed{9^{9^{9^{9}}}}",
                               "<answer>17</answer>"], answer=["18"] * 4)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=30)
        assert results["v"] == [2.0, 2.0, 0.0, 0.0]

    def test_bad_params(self):
        with pytest.raises(rewards.RewardConfigError, match="extractor"):
            Correctness(extractors=["nope"])
        with pytest.raises(rewards.RewardConfigError, match="timeout_seconds"):
            Correctness(timeout_seconds=-1)


# ---------------------------------------------------------------- numeric, length, cosine, repetition
class TestNumber:
    def test_number_answer(self):
        texts = ["<answer>$1,000.50</answer>", "<answer>3/4</answer>", "<answer>25%</answer>",
                 "<answer>-2</answer>", "<answer>two</answer>", "42"]
        assert NumberAnswer()(texts) == [0.5, 0.5, 0.5, 0.5, 0.0, 0.0]

    def test_integer_any_extractor(self):
        assert IntegerAnswer(extractors=["answer_tag", "last_number"])(["so 42", "so 4.5"]) == [0.5, 0.0]


class TestLength:
    def test_course_setting(self):
        assert Length(ideal=50)(["x" * 50, "x" * 10, "x" * 80]) == [0.0, -40.0, -30.0]

    def test_default_is_course(self):
        assert rewards.get("length")(["x" * 50]) == [0.0]

    def test_range_words(self):
        assert Length(min_len=3, unit="words")(["a b", "a b c d e f"]) == [-1.0, 0.0]

    def test_tokens_from_completion_ids(self):
        fn = Length(ideal=3, unit="tokens")
        assert fn(["ignored", "ignored"], completion_ids=[[1, 2, 3], [1]]) == [0.0, -2.0]

    def test_tokens_with_tokenizer_object(self):
        class Splitter:
            def encode(self, text):
                return text.split()

        assert Length(ideal=2, unit="tokens", tokenizer=Splitter())(["a b c"]) == [-1.0]

    def test_tokens_without_source_says_how(self):
        with pytest.raises(rewards.RewardError, match="tokenizer"):
            Length(unit="tokens")(["abc"])

    @pytest.mark.parametrize("kwargs", [{"ideal": 5, "min_len": 1}, {"min_len": 5, "max_len": 1}, {"unit": "bytes"}])
    def test_bad_config(self, kwargs):
        with pytest.raises(rewards.RewardConfigError):
            Length(**kwargs)


class TestCosine:
    PARAMS = dict(min_value_wrong=-1.0, max_value_wrong=-0.5, min_value_correct=0.5, max_value_correct=1.0,
                  max_len=100, column="solution")

    @pytest.mark.parametrize("content, pad_to, expected", [
        ("\\boxed{\\frac{63}{400}}", 20, 0.943), ("\\boxed{\\frac{63}{400}}", 80, 0.547),
        ("\\boxed{\\frac{64}{400}}", 20, -0.942), ("\\boxed{\\frac{64}{400}}", 80, -0.547),
    ])
    def test_open_r1_values(self, content, pad_to, expected):
        padded = content + " " * (pad_to - len(content))
        assert CosineLength(**self.PARAMS)([conv(padded)], solution=["\\frac{63}{400}"])[0] == pytest.approx(expected, abs=0.01)

    def test_longer_than_max_len_is_clipped(self):
        fn = CosineLength(**self.PARAMS)
        assert fn(["\\boxed{17}" + " " * 500], solution=["18"]) == [pytest.approx(-0.5)]

    def test_unparsable_gold_is_none(self):
        assert CosineLength(**self.PARAMS)(["1"], solution=[""]) == [None]


class TestRepetition:
    @pytest.mark.parametrize("n, text, expected", [
        (2, "this is a test sentence", 0.0), (2, "this this this this this", -0.75),
        (2, "this is a this is a test", -1 / 3), (3, "word word word word", -0.5), (3, "A B C A B C", -0.25),
        (3, "A B C A B C E F G A B C A B C", -0.3846), (3, "two words", 0.0), (2, "", 0.0),
    ])
    def test_values(self, n, text, expected):
        assert RepetitionPenalty(ngram_size=n)([conv(text)])[0] == pytest.approx(expected, abs=1e-4)

    def test_case_insensitive(self):
        fn = RepetitionPenalty(ngram_size=2)
        assert fn(["This is A Test"]) == fn(["this IS a test"])

    def test_positive_penalty_rejected_as_value_error(self):
        with pytest.raises(ValueError, match="max_penalty 1.5 should not be positive"):
            RepetitionPenalty(ngram_size=2, max_penalty=1.5)


class TestRepetitionWithoutSpaces:
    """Chinese / Japanese: whitespace splitting sees one 'word' per sentence; chars and jieba see the loop."""

    LOOP_ZH = "我们再试一次。" * 6
    FRESH_ZH = "今天天气很好，我们去公园散步，然后回家吃饭。"
    LOOP_JA = "今日はいい天気ですね。" * 5

    def test_whitespace_misses_the_loop(self):
        assert RepetitionPenalty(ngram_size=3)([self.LOOP_ZH, self.LOOP_JA]) == [0.0, 0.0]

    @pytest.mark.parametrize("tokenizer", ["chars", "jieba"])
    def test_loop_is_penalised_fresh_text_is_not(self, tokenizer):
        fn = RepetitionPenalty(ngram_size=3, tokenizer=tokenizer)
        loop_zh, loop_ja, fresh = fn([self.LOOP_ZH, self.LOOP_JA, self.FRESH_ZH])
        assert loop_zh < -0.5 and loop_ja < -0.5 and fresh == 0.0

    def test_chars_mixed_script_keeps_latin_words(self):
        from rewards.repetition import tokenize

        assert tokenize("用Python写代码 Python code", "chars") == ["用", "python", "写", "代", "码", "python", "code"]
        assert tokenize("   ", "chars") == [] and tokenize("", "jieba") == []

    def test_jieba_word_ngrams(self):
        pytest.importorskip("jieba")
        from rewards.repetition import tokenize

        words = tokenize("我们再试一次。我们再试一次。", "jieba")
        assert "我们" in words and len(words) < 14  # words, not characters

    def test_jieba_missing_falls_back_to_chars(self, monkeypatch, caplog):
        from rewards import repetition

        monkeypatch.setattr(repetition, "_jieba", lambda: None)
        fn = RepetitionPenalty(ngram_size=3, tokenizer="jieba")
        assert fn([self.LOOP_ZH]) == RepetitionPenalty(ngram_size=3, tokenizer="chars")([self.LOOP_ZH])

    def test_unknown_tokenizer(self):
        with pytest.raises(rewards.RewardConfigError, match="tokenizer must be one of whitespace, chars, jieba"):
            RepetitionPenalty(tokenizer="spacy")

    @pytest.mark.parametrize("tokenizer", ["chars", "jieba"])
    def test_odd_input_and_pickle(self, tokenizer):
        fn = pickle.loads(pickle.dumps(RepetitionPenalty(tokenizer=tokenizer)))
        out = fn(["", "\x00\ud7ff𝟙", conv("重复重复重复重复"), None, "a" * 10_000])
        assert len(out) == 5 and all(-1.0 <= v <= 0.0 for v in out)


class TestTrlRewardSemantics:
    """The behaviours of trl.rewards (think format, overlong, reasoning accuracy, cosine on token ids)."""

    @pytest.mark.parametrize("text, expected", [
        ("<think>reasoning</think>answer", 1.0), ("<think>\nmulti\nline\n</think>\nanswer", 1.0),
        ("<think>\nwith <other> tag</think>\nanswer", 1.0), ("<think></think>\nanswer", 1.0),
        ("<think>\nno closing\nanswer", 0.0), ("plain text", 0.0), ("no opening</think>\nanswer", 0.0),
        ("x<think>middle</think>\nanswer", 0.0), ("<think>a<think>nested</think></think>answer", 0.0),
        ("<think>a</think>\nb\n<think>again</think>\nanswer", 0.0),
    ])
    def test_think_format_without_answer_tag(self, text, expected):
        assert rewards.get("think_format", require_answer=False)([conv(text)]) == [expected]

    @pytest.mark.parametrize("n, expected", [(50, 0.0), (80, 0.0), (90, -0.5), (100, 0.0 - 1.0), (110, -1.0)])
    def test_overlong(self, n, expected):
        fn = rewards.get("overlong", max_completion_len=100, soft_punish_cache=20)
        assert fn(["x"], completion_ids=[[1] * n]) == [pytest.approx(expected)]

    def test_overlong_bad_config(self):
        with pytest.raises(rewards.RewardConfigError, match="soft_punish_cache"):
            rewards.get("overlong", max_completion_len=10, soft_punish_cache=20)

    def test_reasoning_end(self):
        fn = rewards.get("correctness", correct=1.0, column="solution", reasoning_end="</think>")
        texts = ["<think> r </think> \\boxed{\\frac{63}{400}}", "r </think> \\boxed{\\frac{63}{400}}",
                 "<think> \\boxed{42} </think> other text", "<think> \\boxed{42} </think> wrong: \\boxed{43}",
                 "<think> no closing \\boxed{42}", "<think> r </think> \\boxed{42}"]
        golds = ["\\frac{63}{400}"] * 2 + ["\\boxed{42}"] * 3 + ["forty two"]
        assert fn([conv(t) for t in texts], solution=golds) == [1.0, 1.0, 0.0, 0.0, 0.0, None]

    def test_accuracy_gold_forms_and_unparsable(self):
        fn = rewards.get("correctness", correct=1.0, column="solution")
        texts = ["\\boxed{\\frac{63}{400}}", "\\boxed{\\frac{63}{400}}", "\\boxed{3}", "Answer is forty two.",
                 "Some other content. \\boxed{43}."]
        golds = ["\\frac{63}{400}", "63/400", "6", "Answer is forty two.", "Answer is forty three."]
        assert fn([conv(t) for t in texts], solution=golds) == [1.0, 1.0, 0.0, None, None]

    @pytest.mark.parametrize("ids, expected", [([25, 75], [0.92678, 0.57322]), ([0, 100], [1.0, 0.5]),
                                               ([50, 200], [0.75, 0.5])])
    def test_cosine_on_token_ids(self, ids, expected):
        fn = rewards.get("cosine_length", max_len=100, unit="tokens", column="solution")
        out = fn([conv("\\boxed{\\frac{1}{3}}")] * 2, solution=["\\frac{1}{3}"] * 2,
                 completion_ids=[[1] * n for n in ids])
        assert out == [pytest.approx(e, abs=1e-4) for e in expected]


# ---------------------------------------------------------------- contract: pickling, names, TRL's call
@pytest.mark.parametrize("name", CHEAP + ["reward_model", "code_execution"])
def test_picklable_and_named(name):
    fn = rewards.get(name)
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.__name__ == fn.__name__ == rewards.registry.canonical(name)  # the metric is the registry name


@pytest.mark.parametrize("name", CHEAP)
def test_accepts_trl_call(name):
    """The exact keywords GRPOTrainer._calculate_rewards passes (trl 1.16), conversational and standard."""
    prompts = [[{"role": "system", "content": "sys"}, {"role": "user", "content": "q?"}]] * 2
    kwargs = dict(prompts=prompts, completion_ids=[[1, 2, 3], [4]], answer=["18", "18"], question=["q?", "q?"],
                  trainer_state=object(), log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
    for completions in ([conv(GOOD), conv("")], [GOOD, ""]):
        out = rewards.get(name)(completions=completions, **kwargs)
        assert len(out) == 2 and all(v is None or isinstance(v, float) for v in out)


@pytest.mark.parametrize("name", CHEAP)
def test_empty_batch(name):
    assert rewards.get(name)([], answer=[]) == []
