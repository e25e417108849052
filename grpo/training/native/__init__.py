"""The native GRPO backend: our own loop, no Trainer, no callbacks.

    grpo train --config grpo/configs/gsm8k.yaml --backend native

Modules, in the order a step uses them:

- :mod:`~grpo.training.native.plan`: :func:`build_plan` checks the config once, before any work, and derives
  every setting the loop reads (:class:`NativePlan`); :mod:`~grpo.training.native.fields` lists which
  ``trl.GRPOConfig`` fields the backend honours, ignores or refuses.
- :mod:`~grpo.training.native.experience`: one generation batch, TRL's ``_generate_and_score_completions``
  (generate, score, advantages, dynamic sampling, collate, old/reference log-probs), and the :class:`LoopState`.
- :mod:`~grpo.training.native.loop`: :func:`train`, the optimizer steps.
- :mod:`~grpo.training.native.checkpoint`: save and resume the weights, optimizer, RNG and :class:`LoopState`.
- :mod:`~grpo.training.native.frozen_casts`, :mod:`~grpo.training.native.optim`: the step's bf16 weight casts
  and its optimizer.
"""

from grpo.training.native.loop import train

__all__ = ["train"]
