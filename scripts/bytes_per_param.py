"""Bytes per model parameter alive during native GRPO training, for each precision / adapter mode (docs/memory.md).

    python scripts/bytes_per_param.py --mode lora-bf16                 # the CPU default: with the sampler's bf16 copy
    python scripts/bytes_per_param.py --mode lora-bf16 --no-copy       # what an accelerator does: no copy
    for m in full-fp32 full-bf16 lora-fp32 lora-bf16 qlora-fp32 qlora-bf16; do
        /usr/bin/time -v python scripts/bytes_per_param.py --mode $m; done   # one process each, for its peak RSS

Two native GRPO steps on the embedded SmolLM2-135M (2 completions of 8 tokens: the activations are negligible).
Right before step 2's gradient clipping (gradients, AdamW moments from step 1, and the sampler copy all alive;
the loss step's activations and bf16 casts already freed) every CPU tensor storage reachable from Python is
counted once and split into: the policy (its parameters and bitsandbytes quantization state), gradients,
optimizer state, the sampler's weight copy, and the rest. Each is printed in bytes per parameter of the model.
"""

from __future__ import annotations

import argparse
import gc
import json

import torch

MODES = {  # name: (use_peft, bits, bf16)
    "full-fp32": (False, None, False), "full-bf16": (False, None, True),
    "lora-fp32": (True, None, False), "lora-bf16": (True, None, True),
    "qlora-fp32": (True, 4, False), "qlora-bf16": (True, 4, True),
}


def storages(tensors) -> dict[int, int]:
    """{storage pointer: bytes} of the given tensors' storages (opaque oneDNN layouts: their own bytes)."""
    out = {}
    for t in tensors:
        try:
            s = t.untyped_storage()
            key, size = s.data_ptr(), s.nbytes()
        except (RuntimeError, NotImplementedError):
            key, size = id(t), t.numel() * t.element_size()
        if key:
            out[key] = size
    return out


def alive() -> dict[int, int]:
    gc.collect()
    return storages(o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.device.type == "cpu")


def quant_state_tensors(model):
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        while qs is not None:
            yield from (v for v in vars(qs).values() if isinstance(v, torch.Tensor))
            qs = getattr(qs, "state2", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--no-copy", action="store_true", help="no sampler weight copy (what an accelerator does)")
    args = parser.parse_args()
    use_peft, bits, bf16 = MODES[args.mode]

    from datasets import Dataset
    from trl import GRPOConfig

    import grpo.generation.sampler as sampler
    from grpo.config.script_args import ScriptArgs
    from grpo.generation import inference_copy
    from grpo.modeling.loading import load_for_training
    from grpo.modeling.models import EMBEDDED_SMOLLM2, apply_lora
    from grpo.runs.run_dir import MetricsLogger
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    if args.no_copy:
        sampler.uses_weight_copy = lambda model: False
    baseline = alive()
    script_args = ScriptArgs(load_in_4bit=bits == 4, use_peft=use_peft, warm_start=False)
    model, tokenizer = load_for_training(EMBEDDED_SMOLLM2, script_args)
    n_params = sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in model.parameters())
    if use_peft:
        model = apply_lora(model, r=16, lora_alpha=32, lora_dropout=0.0)
    out = "/tmp/bytes_per_param_run"
    plan = build_plan(GRPOConfig(output_dir=out, report_to=[], use_cpu=True, bf16=bf16, per_device_train_batch_size=2,
                                 gradient_accumulation_steps=1, num_generations=2, max_completion_length=8,
                                 learning_rate=1e-4, max_steps=2, logging_steps=1, save_steps=0, seed=0,
                                 disable_tqdm=True))
    measured = {}
    clip = torch.nn.utils.clip_grad_norm_

    def measuring_clip(params, *a, **k):
        if measured.get("steps", 0) == 1:  # step 2: AdamW state exists
            policy = storages(list(model.parameters()) + list(quant_state_tensors(model)))
            grads = storages(p.grad for p in model.parameters() if p.grad is not None)
            optim = {}
            for o in gc.get_objects():
                if isinstance(o, torch.optim.Optimizer):
                    optim |= storages(v for s in o.state.values() for v in s.values() if isinstance(v, torch.Tensor))
            copies = {}
            for clones in inference_copy._COPIES.values():
                for clone in clones.values():
                    copies |= storages([*clone.parameters(), *(m.packed for m in clone.modules()
                                                                 if isinstance(m, inference_copy.PackedLinear))])
            parts = {"policy": policy, "gradients": grads, "optimizer": optim, "sampler copy": copies}
            # after the parts: a gradient made by autograd has no Python object (invisible to gc) until read above
            now = {k_: v for k_, v in alive().items() if k_ not in baseline}
            counted = set()
            for name, part in parts.items():
                part = {k_: v for k_, v in part.items() if k_ in now and k_ not in counted}
                counted |= set(part)
                measured[name] = sum(part.values()) / n_params
            measured["other"] = sum(v for k_, v in now.items() if k_ not in counted) / n_params
            measured["total"] = sum(now.values()) / n_params
        measured["steps"] = measured.get("steps", 0) + 1
        return clip(params, *a, **k)

    torch.nn.utils.clip_grad_norm_ = measuring_clip

    def reward(completions, **kwargs):
        return [float(len(c)) for c in completions]

    rows = Dataset.from_dict({"prompt": ["What is 2 + 3?", "Name a colour."] * 2})
    train(model, tokenizer, rows, [reward], plan, MetricsLogger(out, enabled=False))
    measured.pop("steps")
    print(json.dumps({"mode": args.mode, "sampler_copy": not args.no_copy and bf16, "parameters": n_params,
                      "bytes_per_parameter": {k: round(v, 3) for k, v in measured.items()}}))


if __name__ == "__main__":
    main()
