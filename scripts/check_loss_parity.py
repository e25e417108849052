"""Native GRPO loss vs trl.GRPOTrainer's own `_compute_loss` on the same batch.

Run:  python scripts/check_loss_parity.py          (offline, a few seconds on CPU)

How: build a real `trl.GRPOTrainer` around a tiny randomly initialised Llama and an in-memory
word-level tokenizer (no hub access), then replace only its model forward
(`_get_per_token_logps_and_entropies`) by one returning given per-token log-probs. TRL's loss
code then runs unmodified on our (logps, old logps, ref logps, advantages, mask); the native
`grpo.maths.loss.grpo_loss` gets the same tensors. Loss values and input gradients must agree for
every loss_type, with and without KL, at token and sequence importance level, and TRL's logged
clip/kl metrics must match ours. Prints one line per case and exits 1 on any mismatch.

`compare(case)` is imported by tests/test_loss_parity_trl.py through importlib (scripts/ is not
a package).
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

CASES = [
    {"loss_type": lt, "beta": beta, "importance_sampling_level": lvl, "grad_accum": ga}
    for lt in ("grpo", "bnpo", "dr_grpo", "dapo")
    for beta in (0.0, 0.04)
    for lvl in ("token", "sequence")
    for ga in (1, 2)
]
MAX_COMPLETION_LENGTH = 6


def tiny_tokenizer():
    """A word-level tokenizer built in memory: 20 tokens, pad and eos distinct."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(17)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def make_trainer(loss_type: str, beta: float, level: str, output_dir: str, **config):
    """A GRPOTrainer on a 2-layer, 32-wide random Llama; never trains, only scores."""
    import warnings

    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)

    def dummy_reward(completions, **kwargs):
        return [0.0] * len(completions)

    args = GRPOConfig(
        output_dir=output_dir, report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=4,
        num_generations=2, max_completion_length=MAX_COMPLETION_LENGTH, loss_type=loss_type, beta=0.0,
        importance_sampling_level=level, logging_steps=1, **config,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=dummy_reward, args=args, processing_class=tok,
                              train_dataset=Dataset.from_dict({"prompt": ["w1 w2", "w3"]}))
    # beta is set after construction: with beta != 0 a non-PEFT model makes TRL load a reference copy
    # from the hub id in the config, which a random model does not have; the loss only reads
    # `self.beta` and takes the reference log-probs from the inputs dict.
    trainer.beta = beta
    return trainer


def make_batch(seed: int = 0, batch: int = 4, length: int = MAX_COMPLETION_LENGTH):
    """Random logps / old / ref log-probs, advantages and a ragged mask, spread so both clips fire."""
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(batch, length, generator=g) * 3  # (B, T)
    old = logps - (torch.rand(batch, length, generator=g) - 0.5) * 0.8  # (B, T) ratios in [0.67, 1.5]
    ref = logps - (torch.rand(batch, length, generator=g) - 0.5)  # (B, T)
    adv = torch.tensor([0.8, -0.5, 0.3, -1.1])[:batch]  # (B,) signs chosen so both clips fire
    lengths = torch.tensor([length, 3, 1, length - 1])[:batch]  # (B,)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B, T)
    entropies = torch.rand(batch, length, generator=g)  # (B, T)
    return logps, old, ref, adv, mask, entropies


def compare(case: dict, seed: int = 0, output_dir: str | None = None) -> dict:
    """Run TRL's `_compute_loss` and ours on one batch; return both losses, grads and metrics."""
    from grpo.maths.loss import grpo_loss

    beta, lt, lvl, ga = case["beta"], case["loss_type"], case["importance_sampling_level"], case["grad_accum"]
    logps, old, ref, adv, mask, entropies = make_batch(seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(lt, beta, lvl, output_dir or tmp, gradient_accumulation_steps=ga)
    trl_logps = logps.clone().requires_grad_(True)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (trl_logps, entropies, None)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = ga
    num_items = mask.sum() * ga  # the generation batch holds GA micro-batches like this one
    inputs = {
        "prompt_ids": torch.ones(4, 2, dtype=torch.long), "prompt_mask": torch.ones(4, 2, dtype=torch.long),
        "completion_ids": torch.ones_like(mask), "completion_mask": mask, "advantages": adv,
        "old_per_token_logps": old, "num_items_in_batch": num_items,
    }
    if beta:
        inputs["ref_per_token_logps"] = ref
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    trl_loss.backward()
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    ours_logps = logps.clone().requires_grad_(True)
    loss, metrics = grpo_loss(
        ours_logps, adv, mask, old_logps=old, ref_logps=ref if beta else None, beta=beta,
        epsilon=trainer.args.epsilon, epsilon_high=trainer.args.epsilon_high, loss_type=lt,
        importance_sampling_level=lvl, use_bias_correction_kl=trainer.args.use_bias_correction_kl,
        grad_accum_steps=ga, max_completion_length=MAX_COMPLETION_LENGTH, num_items_in_batch=num_items,
        steps_per_generation=trainer.args.steps_per_generation,
    )
    loss.backward()
    return {
        "trl_loss": trl_loss.item(), "loss": loss.item(),
        "grad_diff": (trl_logps.grad - ours_logps.grad).abs().max().item(),
        "trl_metrics": trl_metrics, "metrics": metrics,
    }


def metric_diffs(result: dict) -> dict[str, float]:
    """|TRL - ours| for each metric both report (kl, clip_ratio/*)."""
    ours, theirs = result["metrics"], result["trl_metrics"]
    return {k: abs(ours[k] - theirs[k]) for k in ours if k in theirs}


def main() -> int:
    import logging
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            r = compare(case, output_dir=tmp)
            worst_metric = max(metric_diffs(r).values(), default=0.0)
            ok = abs(r["trl_loss"] - r["loss"]) < 1e-6 and r["grad_diff"] < 1e-6 and worst_metric < 1e-6
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {case}  trl={r['trl_loss']:+.8f}  native={r['loss']:+.8f}  "
                  f"max|dgrad|={r['grad_diff']:.1e}  max|dmetric|={worst_metric:.1e}")
    print(f"{len(CASES) - failed}/{len(CASES)} cases match trl.GRPOTrainer._compute_loss")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
