"""Native GRPO loss vs trl.GRPOTrainer's own `_compute_loss` on the same tensors, over the whole config grid.

Run:  python scripts/check_loss_parity.py          (offline, about a minute on 2 CPU cores)

How: build a real `trl.GRPOTrainer` from each GRPOConfig around a tiny randomly initialised Llama and
an in-memory word-level tokenizer (no hub access), then replace only its model forward
(`_get_per_token_logps_and_entropies`) by one returning given per-token log-probs and entropies. TRL's
loss code then runs unmodified on our (logps, entropies, old/ref/sampling log-probs, advantages,
mask); the native `grpo.maths.loss.grpo_loss` gets the same tensors with the options the native
loop derives from the same GRPOConfig (`grpo.training.native.plan.build_plan(...).loss_kwargs` and
its entropy controller). Each configuration runs two optimiser steps of `gradient_accumulation_steps`
micro-batches, so the adaptive entropy coefficient moves between them.

Compared on every micro-batch: the loss, its gradients with respect to the log-probs and the
entropies, and every metric both sides log (clip ratios, kl, cispo_clip_ratio, vespo/phi_seq_mean,
policy_loss, entropy_coef). Grid: every loss_type x importance_sampling_level x knob (`KNOBS`).
Prints one line per failing configuration, then the count and the worst absolute difference;
exits 1 if any exceeds 1e-6.

`CASES`, `compare(case)` and `worst(result)` are imported by tests/test_loss_parity_trl.py through
importlib (scripts/ is not a package).
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

MAX_COMPLETION_LENGTH = 6
TOLERANCE = 1e-6
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo")
LEVELS = ("token", "sequence")
ADAPTIVE = {"use_adaptive_entropy": True, "entropy_coef": 0.05, "entropy_target": 0.6, "entropy_coef_delta": 0.02}
# knob name -> (GRPOConfig fields, harness options). Harness options: beta (set after construction: a
# reference model would be loaded from the hub otherwise), sampling (inputs carry engine log-probs),
# correction (TRL's vLLM importance-sampling ratio, fed to both sides as the same tensor).
KNOBS = {
    "base": ({}, {}),
    "base_ga1": ({"gradient_accumulation_steps": 1}, {}),
    "beta": ({}, {"beta": 0.04}),
    "beta_no_bias_correction": ({"use_bias_correction_kl": False}, {"beta": 0.04}),
    "delta": ({"delta": 1.25}, {}),
    "epsilon_high": ({"epsilon_high": 0.28}, {}),
    "top_entropy_quantile": ({"top_entropy_quantile": 0.4}, {}),
    "top_entropy_quantile_0": ({"top_entropy_quantile": 0.0}, {}),
    "entropy_coef": ({"entropy_coef": 0.05}, {}),
    "adaptive_entropy": (ADAPTIVE, {}),
    "adaptive_entropy_masked": ({**ADAPTIVE, "top_entropy_quantile": 0.5}, {}),
    "off_policy_mask": ({"off_policy_mask_threshold": 0.02}, {}),
    "off_policy_mask_sampling": ({"off_policy_mask_threshold": 0.02}, {"sampling": True}),
    "correction_token": ({}, {"sampling": True, "correction": "token_truncate"}),
    "correction_sequence": ({}, {"sampling": True, "correction": "sequence_mask"}),
    "params": ({}, {}),  # the loss type's own parameters, from PARAMS
    "everything": ({"delta": 1.25, "top_entropy_quantile": 0.5, "off_policy_mask_threshold": 0.02, **ADAPTIVE},
                   {"beta": 0.04, "sampling": True, "correction": "token_mask"}),
}
PARAMS = {"sapo": {"sapo_temperature_pos": 1.6, "sapo_temperature_neg": 0.6},
          "vespo": {"vespo_k_pos": 1.5, "vespo_lambda_pos": 2.5, "vespo_k_neg": 2.5, "vespo_lambda_neg": 1.5},
          "cispo": {"epsilon_high": 1.3}}


def _cases():
    for lt in LOSS_TYPES:
        for lvl in LEVELS:
            for knob, (config, harness) in KNOBS.items():
                if knob == "params":
                    config = PARAMS.get(lt, {"epsilon": 0.1, "epsilon_high": 0.3})
                if lt == "vespo" and harness.get("correction", "").startswith("sequence"):
                    continue  # TRL refuses it (GRPOTrainer.__init__), and so does build_plan
                yield {"loss_type": lt, "importance_sampling_level": lvl, "knob": knob,
                       "config": {"gradient_accumulation_steps": 2, **config}, **harness}


CASES = list(_cases())


def tiny_tokenizer():
    """A word-level tokenizer built in memory: 20 tokens, pad and eos distinct."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(17)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def make_trainer(loss_type: str, level: str, output_dir: str, **config):
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
    return trainer


def make_batch(seed: int = 0, batch: int = 4, length: int = MAX_COMPLETION_LENGTH):
    """Random log-probs (current, old, ref, sampling), entropies, advantages and a ragged mask, spread so both
    clips, the delta cap, the off-policy mask and the entropy quantile all bite."""
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(batch, length, generator=g) * 3  # (B, T)
    old = logps - (torch.rand(batch, length, generator=g) - 0.5) * 0.8  # (B, T) ratios in [0.67, 1.5]
    ref = logps - (torch.rand(batch, length, generator=g) - 0.5)  # (B, T)
    sampling = old + (torch.rand(batch, length, generator=g) - 0.5) * 0.3  # (B, T)
    adv = torch.tensor([0.8, -0.5, 0.3, -1.1])[:batch] * (1.0 + 0.1 * seed)  # (B,) signs chosen so both clips fire
    lengths = torch.tensor([length, 3, 1 + seed % 2, length - 1])[:batch]  # (B,)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B, T)
    entropies = torch.rand(batch, length, generator=g)  # (B, T) nats, around the adaptive target 0.6
    return logps, old, ref, sampling, adv, mask, entropies


def compare(case: dict, output_dir: str | None = None, steps: int = 2) -> dict:
    """Run TRL's `_compute_loss` and ours on ``steps`` optimiser steps of micro-batches; per-micro-batch results."""
    from grpo.maths.loss import grpo_loss, sampling_correction
    from grpo.training.native.plan import build_plan

    lt, lvl, config = case["loss_type"], case["importance_sampling_level"], case["config"]
    beta, mode = case.get("beta", 0.0), case.get("correction")
    ga = config["gradient_accumulation_steps"]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(lt, lvl, output_dir or tmp, **config)
    trainer.beta = beta  # the loss reads self.beta and takes the reference log-probs from the inputs
    if mode:  # the loss reads these two attributes; use_vllm=True in the config would need vllm installed
        trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = ga
    plan = build_plan(trainer.args)
    control = plan.new_entropy_control()
    results = []
    for step in range(steps):
        micro = [make_batch(seed=step * ga + i) for i in range(ga)]
        num_items = sum(b[5].sum() for b in micro)  # tokens of this generation batch (one process)
        for i, (logps, old, ref, sampling, adv, mask, entropies) in enumerate(micro):
            weights = None
            if mode:
                weights, _ = sampling_correction(old, sampling, mask, mode=mode, clip_min=0.9, clip_max=1.1)
            trl_logps, trl_ent = logps.clone().requires_grad_(True), entropies.clone().requires_grad_(True)
            trainer._get_per_token_logps_and_entropies = lambda *a, _l=trl_logps, _e=trl_ent, **k: (_l, _e, None)
            trainer.accelerator.gradient_state._set_sync_gradients(i == ga - 1)
            trainer._metrics["train"].clear()
            inputs = {"prompt_ids": torch.ones(4, 2, dtype=torch.long), "prompt_mask": torch.ones(4, 2, dtype=torch.long),
                      "completion_ids": torch.ones_like(mask), "completion_mask": mask, "advantages": adv,
                      "old_per_token_logps": old, "num_items_in_batch": num_items}
            if beta:
                inputs["ref_per_token_logps"] = ref
            if case.get("sampling"):
                inputs["sampling_per_token_logps"] = sampling
            if weights is not None:
                inputs["importance_sampling_ratio"] = weights
            trl_loss = trainer._compute_loss(trainer.model, inputs)
            trl_loss.backward()
            trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

            ours_logps, ours_ent = logps.clone().requires_grad_(True), entropies.clone().requires_grad_(True)
            loss, metrics = grpo_loss(
                ours_logps, adv, mask, old_logps=old, ref_logps=ref if beta else None,
                num_items_in_batch=num_items, entropies=ours_ent, entropy_control=control, sampling_weights=weights,
                sampling_logps=sampling if case.get("sampling") else None,
                **{**plan.loss_kwargs, "beta": beta, "steps_per_generation": trainer.args.steps_per_generation})
            loss.backward()
            if control is not None and i == ga - 1:
                metrics["entropy_coef"] = control.end_step()
            ent_grad = (torch.zeros_like(entropies) if trl_ent.grad is None else trl_ent.grad) - (
                torch.zeros_like(entropies) if ours_ent.grad is None else ours_ent.grad)
            results.append({"trl_loss": trl_loss.item(), "loss": loss.item(),
                            "grad_diff": (trl_logps.grad - ours_logps.grad).abs().max().item(),
                            "entropy_grad_diff": ent_grad.abs().max().item(),
                            "trl_metrics": trl_metrics, "metrics": metrics})
    return {"case": case, "micro_batches": results}


def metric_diffs(r: dict) -> dict[str, float]:
    """|TRL - ours| for each metric both report on one micro-batch."""
    ours, theirs = r["metrics"], r["trl_metrics"]
    return {k: abs(ours[k] - theirs[k]) for k in ours if k in theirs}


def worst(result: dict) -> float:
    """The largest absolute difference of a configuration: loss, gradients, metrics, over its micro-batches."""
    return max(max(abs(r["trl_loss"] - r["loss"]), r["grad_diff"], r["entropy_grad_diff"],
                   max(metric_diffs(r).values(), default=0.0)) for r in result["micro_batches"])


def main() -> int:
    import logging
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    failed, worst_case, worst_value, micro = 0, None, -1.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            result = compare(case, output_dir=tmp)
            w, micro = worst(result), micro + len(result["micro_batches"])
            if w > worst_value:
                worst_case, worst_value = case, w
            if w > TOLERANCE:
                failed += 1
                print(f"FAIL {case}: max |TRL - native| = {w:.2e}")
    print(f"{len(CASES) - failed}/{len(CASES)} configurations ({micro} micro-batches: loss, d/dlogp, d/dentropy, "
          f"metrics) match trl.GRPOTrainer._compute_loss within {TOLERANCE:g}")
    print(f"worst case: {worst_value:.2e} at {worst_case['loss_type']} / {worst_case['importance_sampling_level']} / "
          f"{worst_case['knob']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
