"""grpo.modeling.quantization: bitsandbytes QLoRA and 8-bit AdamW, on this CPU machine.

Run: ``pytest -q tests/test_quantization.py`` (fast: config errors, 8-bit AdamW steps on the
embedded SmolLM2, 4-bit LoRA gradients on a tiny Llama, bf16 evaluation and rollouts of 4-bit and
8-bit tiny Llamas) and ``pytest -q -m slow tests/test_quantization.py`` (the 4-bit gradient check on
SmolLM2; ``grpo train`` with 4-bit weights + 8-bit AdamW in bf16, both backends, 2 steps each with
every evaluation on, native after a QLoRA warm-start).
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from grpo.common.errors import UserError

bnb = pytest.importorskip("bitsandbytes", reason="pip install 'grpo-toolkit[quant]'")
GSM8K_YAML = str(Path(__file__).resolve().parents[1] / "grpo" / "configs" / "gsm8k.yaml")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parse(*overrides, output_dir="/tmp/unused-quant-test"):
    from trl import GRPOConfig

    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs

    return parse_config(["--config", GSM8K_YAML, "--output_dir", output_dir, *overrides], (ScriptArgs, GRPOConfig))


# ---------------------------------------------------------------------------- config and environment errors


@pytest.mark.parametrize("overrides, message", [
    (["--load_in_4bit", "true", "--use_peft", "false"], "load_in_4bit=true with use_peft=false.*set use_peft true"),
    (["--load_in_8bit", "true", "--use_peft", "false"], "load_in_8bit=true with use_peft=false"),
    (["--load_in_4bit", "true", "--load_in_8bit", "true"], "both true: pick one"),
    # TRL's field declares the choices
    (["--bnb_4bit_quant_type", "int4"], r"bnb_4bit_quant_type.*invalid choice: 'int4' \(choose from 'fp4', 'nf4'\)"),
    (["--bnb_4bit_compute_dtype", "bf16"], "bnb_4bit_compute_dtype='bf16': use one of bfloat16"),
])
def test_bad_quantization_fields_are_refused_at_parse_time(overrides, message):
    with pytest.raises(UserError, match=message):
        parse(*overrides)


def test_trl_model_config_names_and_defaults():
    script_args, _ = parse("--load_in_4bit", "true", "--use_bnb_nested_quant", "true", "--warm_start", "false")
    from grpo.modeling.quantization import build_bnb_config

    cfg = build_bnb_config(script_args)
    assert cfg.load_in_4bit and not cfg.load_in_8bit
    assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16
    script_args, _ = parse("--load_in_8bit", "true", "--warm_start", "false")
    assert build_bnb_config(script_args).load_in_8bit
    script_args, _ = parse()
    assert build_bnb_config(script_args) is None  # nothing asked, nothing built
    from grpo.modeling.quantization import load_kwargs

    assert load_kwargs(script_args) == {}
    script_args, _ = parse("--load_in_4bit", "true", "--warm_start", "false")
    assert set(load_kwargs(script_args)) == ({"quantization_config", "device_map"} if torch.cuda.is_available()
                                             else {"quantization_config"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="paged optimizers work with CUDA")
@pytest.mark.parametrize("backend", ["trl", "native"])
def test_paged_optimizer_without_cuda_says_what_to_set(backend):
    from grpo.modeling.quantization import check_quantization_supported

    script_args, training_args = parse("--optim", "paged_adamw_8bit", "--backend", backend)
    with pytest.raises(UserError, match="optim=paged_adamw_8bit .* no CUDA GPU .* set optim adamw_8bit"):
        check_quantization_supported(script_args, training_args)


def test_missing_bitsandbytes_names_the_install(monkeypatch):
    from grpo.modeling.quantization import check_quantization_supported

    script_args, training_args = parse("--load_in_4bit", "true", "--warm_start", "false")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(UserError, match=r"load_in_4bit needs the bitsandbytes package: pip install 'grpo-toolkit\[quant\]'"):
        check_quantization_supported(script_args, training_args)
    script_args, training_args = parse("--optim", "adamw_8bit")
    with pytest.raises(UserError, match="optim=adamw_8bit needs the bitsandbytes package.*set optim adamw_torch"):
        check_quantization_supported(script_args, training_args)


def test_grpo_sft_without_bitsandbytes_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from grpo.cli.commands import main

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    out = tmp_path / "run"
    code = main(["sft", "--config", GSM8K_YAML, "--load_in_4bit", "true", "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "error: load_in_4bit needs the bitsandbytes package" in err, err
    assert not out.exists()  # refused before data, model or evaluation


def test_quantized_weights_with_vllm_are_refused():
    from grpo.modeling.quantization import check_quantization_supported

    script_args, training_args = parse("--load_in_4bit", "true", "--warm_start", "false")
    training_args.use_vllm = True  # set after parsing: GRPOConfig itself checks that vllm is importable
    with pytest.raises(UserError, match="load_in_4bit with use_vllm: .* set use_vllm false"):
        check_quantization_supported(script_args, training_args)


def test_adapter_dir_with_quantization_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo.modeling.models import apply_lora, load_model
    from grpo.modeling.quantization import build_bnb_config

    base = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    base.save_pretrained(tmp_path / "base")
    _tiny_tokenizer().save_pretrained(tmp_path / "base")
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base")  # so the adapter records its base's path
    apply_lora(base, r=2).save_pretrained(tmp_path / "adapter")
    script_args, _ = parse("--load_in_4bit", "true", "--warm_start", "false")
    with pytest.raises(UserError, match="is a LoRA adapter; merging it into quantized weights"):
        load_model(str(tmp_path / "adapter"), quantization_config=build_bnb_config(script_args))
    load_model(str(tmp_path / "adapter"))  # the same adapter loads (and merges) without quantization


# ---------------------------------------------------------------------------- 8-bit AdamW (native backend's optimizer)


def _moment_dtypes(optimizer_state_dict) -> set:
    """dtypes of the AdamW moments in a (bitsandbytes) optimizer state_dict, which nests them for FSDP."""
    states = [s.get("__bnb_optimizer_quant_state__", s) for s in optimizer_state_dict["state"].values()]
    return {v.dtype for s in states for k, v in s.items() if k in ("state1", "state2", "exp_avg", "exp_avg_sq")}


def _lm_loss(model, tokenizer):
    batch = tokenizer(["Natalia sold clips to 48 of her friends in April."], return_tensors="pt")
    return model(**batch, labels=batch["input_ids"]).loss


def test_8bit_adamw_trains_lora_on_embedded_smollm2():
    from trl import GRPOConfig

    from grpo.modeling.models import EMBEDDED_SMOLLM2, apply_lora, load_model
    from grpo.training.native.optim import make_optimizer

    model, tokenizer = load_model(EMBEDDED_SMOLLM2)
    model = apply_lora(model, r=8, lora_dropout=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    args = GRPOConfig(output_dir="/tmp/unused", optim="adamw_8bit", learning_rate=1e-3, bf16=False, report_to=[])
    optimizer = make_optimizer([{"params": params}], args, model)
    assert isinstance(optimizer, bnb.optim.AdamW)
    losses = []
    for _ in range(2):
        loss = _lm_loss(model, tokenizer)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] < losses[0]
    assert sum(not torch.equal(b, p) for b, p in zip(before, params)) == len(params)  # every adapter matrix moved
    big = [p for p in params if p.numel() >= 4096]  # bitsandbytes keeps 32-bit state for tensors under 4096 elements
    assert big and all(optimizer.state[p]["state1"].dtype == torch.uint8 and optimizer.state[p]["state2"].dtype == torch.uint8
                       for p in big)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(17)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _word_reward(completions, **kwargs):
    """Mean word index (w12 -> 12) / 16: differs between samples, so advantages are non-zero."""
    return [sum(int(w[1:]) for w in c.split()) / max(1, len(c.split())) / 16 for c in completions]


def _config(tmp_path, **overrides):
    from trl import GRPOConfig

    values = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=4,
                  gradient_accumulation_steps=2, num_generations=4, max_completion_length=6, learning_rate=5e-3,
                  max_steps=2, logging_steps=1, save_steps=0, seed=7, temperature=1.0)
    return GRPOConfig(**(values | overrides))


def test_native_backend_runs_8bit_adamw_and_checkpoints_its_state(tmp_path):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo.runs.run_dir import MetricsLogger
    from grpo.training.native import train
    from grpo.training.native.fields import check_supported
    from grpo.training.native.plan import build_plan

    config, tiny_tokenizer, word_reward = _config, _tiny_tokenizer, _word_reward
    dataset = Dataset.from_dict({"prompt": [f"w{3 + i % 10} w{4 + i % 7}" for i in range(8)]})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=1,
                                         bos_token_id=None))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for optim in ("adamw_8bit", "adamw_bnb_8bit"):  # transformers' two names for the same optimizer
        check_supported(config(tmp_path, optim=optim))
    log = MetricsLogger(tmp_path)
    train(model, tiny_tokenizer(), dataset, [word_reward], build_plan(config(tmp_path, optim="adamw_8bit", save_steps=2)),
          log)
    metrics = log.read()
    assert len(metrics) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    mlp = "model.layers.0.mlp.up_proj.weight"  # 64 x 128 = 8192 elements: 8-bit state
    assert not torch.equal(before[mlp], dict(model.named_parameters())[mlp])
    payload = torch.load(tmp_path / "checkpoint-2" / "trainer_state.pt", weights_only=True)  # nothing pickled but tensors
    assert torch.uint8 in _moment_dtypes(payload["optimizer"])  # big matrices: 8-bit (small ones stay fp32)


# ---------------------------------------------------------------------------- 4-bit weights (QLoRA) on CPU


def _check_4bit_lora_gradients(spec, tokenizer_texts):
    """LoRA gradients of a 4-bit model (after an eval pass) == those of a float model holding its dequantized weights.

    bitsandbytes repacks 4-bit weights for inference on their first eval-mode forward on CPU, after
    which their matmul has no backward; grpo.modeling.models.load_model must prevent that.
    """
    import bitsandbytes.functional as F
    from peft import LoraConfig, get_peft_model

    from grpo.modeling.models import load_model
    from grpo.modeling.quantization import build_bnb_config, prepare_for_training

    script_args, _ = parse("--load_in_4bit", "true", "--bnb_4bit_compute_dtype", "float32", "--warm_start", "false")
    quant, tokenizer = load_model(spec, quantization_config=build_bnb_config(script_args))
    reference, _ = load_model(spec)
    quantized_layers = 0
    for name, module in quant.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):  # reference = float model holding exactly the 4-bit values
            reference.get_submodule(name).weight.data.copy_(F.dequantize_4bit(module.weight.data, module.weight.quant_state))
            quantized_layers += 1
    assert quantized_layers > 0
    batch = tokenizer(tokenizer_texts, return_tensors="pt")
    quant.eval()
    with torch.no_grad():  # evaluation / rollout: the moment bitsandbytes would repack
        quant(**batch)
    grads = []
    for model in (prepare_for_training(quant), reference):
        torch.manual_seed(0)
        lora = LoraConfig(r=4, target_modules=["q_proj", "down_proj"], lora_dropout=0.0, init_lora_weights=False,
                          task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lora).train()
        peft_model(**batch, labels=batch["input_ids"]).loss.backward()
        grads.append({n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad})
    first_layer = [n for n in grads[1] if ".layers.0." in n]
    assert first_layer and all(grads[0][n].abs().sum() > 0 for n in first_layer)
    for name, expected in grads[1].items():
        torch.testing.assert_close(grads[0][name], expected, rtol=1e-3, atol=1e-6)


def test_4bit_lora_gradients_match_the_dequantized_model_after_an_eval_pass(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                                 num_attention_heads=4, num_key_value_heads=4, pad_token_id=0, eos_token_id=1,
                                 bos_token_id=None)).save_pretrained(tmp_path / "tiny")
    _tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    _check_4bit_lora_gradients(str(tmp_path / "tiny"), ["w3 w7 w12 w5 w9 w1 w16 w4"])


@pytest.mark.slow
def test_4bit_lora_gradients_on_embedded_smollm2():
    from grpo.modeling.models import EMBEDDED_SMOLLM2

    _check_4bit_lora_gradients(EMBEDDED_SMOLLM2, ["Natalia sold clips to 48 of her friends in April."])


# ---------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
@pytest.mark.parametrize("backend, warm_start", [("native", True), ("trl", False)])
def test_qlora_with_8bit_adamw_trains_through_grpo_train(tmp_path, backend, warm_start):
    """The README's QLoRA command (``--load_in_4bit true --optim adamw_8bit``) in bf16, tiny: 2 GRPO steps on 4-bit
    SmolLM2 with 8-bit AdamW (native: after a 2-step QLoRA warm-start), every evaluation on (base, after the
    warm-start, periodic, after GRPO): each generates from the 4-bit policy."""
    from safetensors.torch import load_file

    from grpo.cli.commands import main
    from grpo.modeling.models import EMBEDDED_SMOLLM2, resolve_model_path

    out = tmp_path / backend
    code = main(["train", "--config", GSM8K_YAML, "--backend", backend, "--load_in_4bit", "true",
                 "--use_bnb_nested_quant", "true", "--optim", "adamw_8bit", "--warm_start", str(warm_start).lower(),
                 "--sft_examples", "4", "--sft_batch_size", "2", "--bf16", "true", "--eval_base", "true",
                 "--eval_size", "2", "--eval_max_new_tokens", "8", "--periodic_eval_steps", "2",
                 "--periodic_eval_size", "2",
                 "--max_steps", "2", "--save_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "2",
                 "--max_completion_length", "16", "--learning_rate", "1e-3", "--logging_steps", "1",
                 "--reward_funcs", "length", "--reward_weights", "1.0", "--reward_kwargs", '{"length": {"ideal": 20}}',
                 "--output_dir", str(out)])
    assert code == 0
    for name in ["eval_before", "eval_after"] + (["eval_after_sft"] if warm_start else []):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["n"] == 2 and report["dtype"] == "bfloat16", name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["eval/n"] for m in metrics if "eval/n" in m] == [2, 2]  # periodic: before step 1 and after step 2
    metrics = [m for m in metrics if "loss" in m]
    assert len(metrics) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    assert any(m["reward_std"] > 0 for m in metrics)
    adapter = load_file(out / "checkpoint" / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it trained
    state_file = out / "checkpoint-2" / ("optimizer.pt" if backend == "trl" else "trainer_state.pt")
    payload = torch.load(state_file, weights_only=True)
    assert torch.uint8 in _moment_dtypes(payload if backend == "trl" else payload["optimizer"])
    # the merged checkpoint is the adapter merged into the unquantized base it trained on (after a
    # warm-start: the full-precision sft_checkpoint): base + alpha/r * B @ A, exactly
    original = load_file(Path(resolve_model_path(EMBEDDED_SMOLLM2)) / "model.safetensors")
    base_dir = out / "sft_checkpoint" if warm_start else Path(resolve_model_path(EMBEDDED_SMOLLM2))
    for ckpt in {out / "checkpoint", base_dir}:
        assert "quantization_config" not in json.loads((ckpt / "config.json").read_text())
    merged, base = load_file(out / "checkpoint" / "model.safetensors"), load_file(base_dir / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert warm_start == (not torch.equal(base[key], original[key]))  # the warm-start changed the weights
    lora = {k.split(".lora_")[1].split(".")[0]: v for k, v in adapter.items() if "layers.0.self_attn.q_proj.lora" in k}
    torch.testing.assert_close(merged[key], base[key] + (32 / 16) * lora["B"] @ lora["A"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ 4-bit / 8-bit weights: evaluation and rollouts in bf16


def _tiny_quantized_with_adapter(tmp_path, bits: int, adapter: bool):
    """A tiny random Llama (SmolLM2's tokenizer, for the GSM8K prompts) loaded in ``bits`` and, with ``adapter``, a
    LoRA adapter with non-zero B; plus a float peft model holding exactly its dequantized weights and the same adapter."""
    import bitsandbytes.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo.modeling.loading import load_for_training
    from grpo.modeling.models import EMBEDDED_SMOLLM2, apply_lora, load_model, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_SMOLLM2)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                                 tie_word_embeddings=True)).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    script_args, _ = parse(f"--load_in_{bits}bit", "true", "--warm_start", "false")
    quant, _ = load_for_training(str(tmp_path / "tiny"), script_args)
    reference, _ = load_model(str(tmp_path / "tiny"))
    for name, module in quant.named_modules():
        if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):  # the float model holds the quantized values
            w = module.weight
            dense = (F.dequantize_4bit(w.data, w.quant_state) if bits == 4
                     else F.int8_vectorwise_dequant(w.data, w.SCB if w.SCB is not None else module.state.SCB))
            reference.get_submodule(name).weight.data.copy_(dense)
    if adapter:
        quant, reference = apply_lora(quant, r=4, lora_dropout=0.0), apply_lora(reference, r=4, lora_dropout=0.0)
        lora = {n: p for n, p in reference.named_parameters() if ".lora_" in n}
        with torch.no_grad():
            for n, p in quant.named_parameters():
                if ".lora_" in n:
                    if "lora_B" in n:
                        p.normal_(std=0.5)  # B = 0 at init would hide the adapter
                    lora[n].copy_(p)  # the same adapter on both
    return quant, reference, tokenizer


@pytest.mark.parametrize("bits, adapter", [(4, True), (4, False), (8, True)])
def test_quantized_model_evaluates_and_rolls_out_in_bf16(tmp_path, bits, adapter):
    """Evaluation (eval_before / eval_after / periodic) and native rollouts of a QLoRA policy in bf16 (the GPU
    default) generate from its dequantized weights with the adapter merged: the copy equals the one of a float
    model holding those weights, greedy completions match it token for token, and the policy is left as it was.
    (Formerly: the packed 4-bit data was cast to bf16 and the LoRA delta added to it: a shape error.)"""
    from grpo.data.loaders import load_gsm8k
    from grpo.evaluation.evaluate import evaluate
    from grpo.generation.inference_copy import inference_copy
    from grpo.generation.sampler import generate

    quant, reference, tokenizer = _tiny_quantized_with_adapter(tmp_path, bits, adapter)
    before = {n: p.detach().clone() for n, p in quant.named_parameters()}
    copies = [dict(inference_copy(m, torch.bfloat16, rewire=False).named_parameters()) for m in (quant, reference)]
    assert copies[0].keys() == copies[1].keys() and all(p.dtype == torch.bfloat16 for p in copies[0].values())
    for name, p in copies[1].items():
        assert torch.equal(copies[0][name], p), name
    prompts = [[5, 17, 230, 9], [1200, 43]]
    ours, theirs = (generate(m, None, prompts, 2, 8, do_sample=False, stop_token_ids=[tokenizer.eos_token_id],
                             dtype=torch.bfloat16) for m in (quant, reference))
    assert ours.completion_ids == theirs.completion_ids and len(ours.completion_ids[0]) > 1
    sampled = generate(quant, None, prompts, 2, 8, do_sample=True, stop_token_ids=[tokenizer.eos_token_id],
                       dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0))  # a native rollout's call
    assert len(sampled.completion_ids) == 4 and all(torch.isfinite(torch.tensor(lp)).all() for lp in sampled.logprobs)
    report = evaluate(quant, tokenizer, load_gsm8k("synthetic:gsm8k:3", split="test"), max_new_tokens=6, batch_size=2,
                      progress=False, dtype=torch.bfloat16)
    assert report["n"] == 3 and report["dtype"] == "bfloat16" and all(1 <= s["tokens"] <= 6 for s in report["samples"])
    for name, p in quant.named_parameters():
        assert torch.equal(p, before[name]), name  # the trained model is never merged into or cast
