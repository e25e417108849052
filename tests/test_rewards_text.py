"""Completion text and answer extractors on hand-written hard cases.

Run: pytest tests/test_rewards_text.py -q
"""

import pytest

from rewards.text import (
    completion_text,
    extract_answer,
    extract_answer_phrase,
    extract_boxed,
    extract_hash,
    extract_last_number,
    extract_tag,
    parse_number,
)


class TestCompletionText:
    def test_standard_string(self):
        assert completion_text("hello") == "hello"

    def test_conversational_single_message(self):
        assert completion_text([{"role": "assistant", "content": "x"}]) == "x"

    def test_conversational_several_messages_joined(self):
        msgs = [{"role": "assistant", "content": "a"}, {"role": "tool", "content": "b"}]
        assert completion_text(msgs) == "a\nb"

    def test_multimodal_parts(self):
        msg = [{"role": "assistant", "content": [{"type": "text", "text": "4"}, {"type": "image"}]}]
        assert completion_text(msg) == "4"

    @pytest.mark.parametrize("odd, expected", [(None, ""), (b"\xff4", "\ufffd4"), (42, "42"),
                                               ({"content": None}, ""), ([], "")])
    def test_odd_inputs_never_raise(self, odd, expected):
        assert completion_text(odd) == expected

    def test_object_with_broken_str(self):
        class Bad:
            def __str__(self):
                raise RuntimeError("no")

        assert completion_text(Bad()) == ""


class TestExtractTag:
    def test_course_layout(self):
        assert extract_tag("<reasoning>\n1+1\n</reasoning>\n<answer>\n2\n</answer>\n") == "2"

    def test_last_tag_wins(self):
        assert extract_tag("<answer>1</answer><answer>2</answer>") == "2"

    def test_unclosed_tag_takes_rest(self):
        assert extract_tag("<answer>\n 17") == "17"

    def test_closing_without_opening(self):
        assert extract_tag("17</answer>") is None

    def test_other_tag_name(self):
        assert extract_tag("<final>9</final>", "final") == "9"

    def test_empty_content(self):
        assert extract_tag("<answer></answer>") == ""


class TestExtractBoxed:
    def test_nested_braces(self):
        assert extract_boxed(r"\boxed{\frac{1}{\sqrt{2}}}") == r"\frac{1}{\sqrt{2}}"

    def test_last_box(self):
        assert extract_boxed(r"\boxed{1} then \boxed{2}") == "2"

    def test_fbox(self):
        assert extract_boxed(r"\fbox{5}") == "5"

    @pytest.mark.parametrize("text", [r"\boxed{", r"\boxed{{1}", "boxed{1}", ""])
    def test_unbalanced_or_absent(self, text):
        assert extract_boxed(text) is None

    def test_deep_nesting_is_linear(self):
        deep = r"\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}"
        assert extract_boxed(deep).startswith("{{")


class TestExtractHash:
    def test_gsm8k_solution(self):
        assert extract_hash("a\nb = <<1+1=2>>2\n#### 2") == "2"

    def test_takes_only_the_line(self):
        assert extract_hash("#### 1,234\nExplanation follows") == "1,234"

    def test_last_marker(self):
        assert extract_hash("#### 1\n#### 2") == "2"

    def test_empty_marker(self):
        assert extract_hash("#### \n") is None


class TestExtractAnswerPhrase:
    @pytest.mark.parametrize("text, expected", [
        ("The answer is 18.", "18"),
        ("the answer is: $1,250", "$1,250"),
        ("Final answer: -3", "-3"),
        ("So the final answer is 3/4 of the cake", "3/4"),
        ("answer = 50%", "50%"),
        ("The answer is 4. Wait, the answer is 5.", "5"),
    ])
    def test_phrases(self, text, expected):
        assert extract_answer_phrase(text) == expected

    def test_phrase_without_number(self):
        assert extract_answer_phrase("the answer is unknown") is None


class TestExtractLastNumber:
    @pytest.mark.parametrize("text, expected", [
        ("3 apples and 4 pears", "4"),
        ("It costs $1,234.56.", "1,234.56"),
        ("temperature -5 degrees", "-5"),
        ("18.", "18"),
        ("version 1,2,3", "3"),
        ("x\u22127", "\u22127"),
    ])
    def test_numbers(self, text, expected):
        assert extract_last_number(text) == expected

    def test_huge_text_only_tail_scanned(self):
        assert extract_last_number("9 " * 500_000 + "answer 7") == "7"


class TestExtractAnswerChain:
    def test_tag_beats_later_numbers(self):
        assert extract_answer("<answer>5</answer> and 6") == "5"

    def test_boxed_beats_last_number(self):
        assert extract_answer(r"\boxed{5} so 6 steps") == "5"

    def test_hash_then_phrase_then_last_number(self):
        assert extract_answer("#### 8") == "8"
        assert extract_answer("the answer is 9, from 3 steps") == "9"
        assert extract_answer("3 steps give 10") == "10"

    def test_order_restricts(self):
        assert extract_answer("3 steps give 10", order=("answer_tag",)) is None

    def test_nothing(self):
        assert extract_answer("no idea") is None


class TestParseNumber:
    @pytest.mark.parametrize("span, value", [("18", "18"), ("18.0", "18.0"), ("$18", "18"), (r"\$18", "18"),
                                             ("1,000", "1000"), ("-2.5", "-2.5"), (" 7. ", "7")])
    def test_plain(self, span, value):
        from decimal import Decimal

        assert parse_number(span) == Decimal(value)

    @pytest.mark.parametrize("span", ["3/4", "50%", "1,00", "abc", "", None, "1" * 200, "nan", "inf"])
    def test_not_plain(self, span):
        assert parse_number(span) is None
