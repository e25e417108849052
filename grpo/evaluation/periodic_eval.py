"""Accuracy on a small held-out problem set every N training steps, so the curves show learning as it happens.

The final evaluation (hundreds of test problems, ``eval_*.json``) says where a run ended; this one says how
it got there: every ``periodic_eval_steps`` optimizer steps (and once before the first) the policy answers
``periodic_eval_size`` problems greedily and the accuracy and format rate go into that step's metrics
(``eval/accuracy``, ``eval/format_rate``, ``eval/placeholder_reasoning_rate`` ... in ``metrics.jsonl``, a panel of
``curves.png``, columns of
the console table). The problems are held out of the training split (never the test split: the curve is
watched while choosing settings), so 64 problems give a 95 % interval of about +-12 points: a trend, not a
result.
"""

from __future__ import annotations

import time

from grpo.evaluation.evaluate import evaluate

__all__ = ["PeriodicEval", "METRICS"]

# report key -> metrics key
METRICS = {"accuracy": "eval/accuracy", "format_rate": "eval/format_rate",
           "numeric_answer_rate": "eval/numeric_answer_rate",
           "placeholder_reasoning_rate": "eval/placeholder_reasoning_rate", "clipped": "eval/clipped"}


class PeriodicEval:
    """Greedy evaluation of the training policy on a fixed problem set at a fixed step interval.

    Args:
        tokenizer: the policy's tokenizer.
        problems: rows with ``prompt`` and ``answer`` (:func:`grpo.data.loaders.load_gsm8k`), held out of training.
        every: evaluate when ``step % every == 0`` (step 0 = before training) and at the last step; must be >= 1.
        max_new_tokens: generation budget per problem (tokens).
        batch_size: problems per generation batch.
        prompt_format: as :func:`grpo.evaluation.evaluate.score_completions`.
        dtype: generate in this precision (bf16 on the sampler's fast path); None = the model's own.

    Raises:
        ValueError: ``every`` < 1 or no problems.
    """

    def __init__(self, tokenizer, problems, every: int, max_new_tokens: int, batch_size: int,
                 prompt_format: str = "tags", dtype=None):
        if every < 1:
            raise ValueError(f"periodic evaluation every {every} steps: must be >= 1")
        if problems is None or len(problems) == 0:
            raise ValueError("periodic evaluation needs at least one problem")
        self.tokenizer, self.problems, self.every = tokenizer, problems, every
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.prompt_format, self.dtype = prompt_format, dtype
        self.last_step: int | None = None

    def due(self, step: int, max_steps: int) -> bool:
        """Whether ``step`` (optimizer steps done) gets an evaluation: every ``every`` steps and the last one."""
        return step != self.last_step and (step % self.every == 0 or step == max_steps)

    def __call__(self, model, step: int, rank: int = 0, world: int = 1, device=None) -> dict:
        """Evaluate ``model`` now; the model is left in the train/eval mode it was in.

        With several processes every one of them must call this at the same step (it is a collective): each
        answers its share of the problems (``problems[rank::world]``) and the counts are summed across
        processes, so every process returns the same metrics, those of the whole problem set.

        Args:
            model: the policy (a full copy on this process: DDP, not FSDP / ZeRO-3 shards).
            step: optimizer steps done.
            rank, world: this process and the number of processes.
            device: the training device, where the collective's tensor is created (NCCL needs the GPU).

        Returns:
            ``{"eval/accuracy", "eval/format_rate", "eval/numeric_answer_rate", "eval/placeholder_reasoning_rate",
            "eval/clipped"}`` (fractions in [0, 1]; the placeholder rate and its 95 % Wilson interval
            ``eval/placeholder_reasoning_rate_ci_low`` / ``_ci_high`` only for ``tags`` prompts), ``"eval/n"`` and
            ``"eval/seconds"``
            (wall time of this evaluation).
        """
        import torch

        from grpo.common.distributed import all_sum

        share = self.problems.select(range(rank, len(self.problems), world)) if world > 1 else self.problems
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        try:
            with torch.no_grad():
                report = evaluate(model, self.tokenizer, share, self.max_new_tokens, self.batch_size,
                                  progress=False, prompt_format=self.prompt_format,
                                  dtype=self.dtype) if len(share) else None
        finally:
            model.train(was_training)
        self.last_step = step
        n = len(share)
        if world == 1:
            metrics = {key: report[name] for name, key in METRICS.items() if name in report}
            interval = report.get("placeholder_reasoning_rate_ci")
        else:  # the same list on every process (a process with no problems has no report)
            names = list(METRICS)
            counts = [report.get(name, 0.0) * n if n else 0.0 for name in names] + [float(n)]  # rates back to counts
            totals = all_sum(torch.tensor(counts, dtype=torch.float64, device=device), world, device).tolist()
            n = int(totals[-1])
            metrics = {METRICS[name]: total / n for name, total in zip(names, totals)}
            interval = None
            if "placeholder_reasoning_rate" in names:
                from grpo.evaluation.statistics import wilson_interval

                k = round(totals[names.index("placeholder_reasoning_rate")])
                interval = list(wilson_interval(k, n)) if n else None
        if interval:  # two scalars: trackers log numbers, not lists
            metrics.update({"eval/placeholder_reasoning_rate_ci_low": interval[0],
                            "eval/placeholder_reasoning_rate_ci_high": interval[1]})
        metrics.update({"eval/n": n, "eval/seconds": round(time.perf_counter() - start, 2)})
        return metrics
