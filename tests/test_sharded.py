"""Tests for grpo/modeling/sharded.py: the final model of an FSDP / ZeRO-3 run rebuilt from its gathered state dict.

The gathering itself (accelerate's ``get_state_dict`` across GPUs) cannot run here; a stand-in
accelerator hands over the state dict a real one would. Everything after that runs for real.
Run: pytest tests/test_sharded.py   (tiny Llama saved to a temp dir, seconds)
"""

import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from test_quantization import _tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from grpo.config.script_args import ScriptArgs
from grpo.modeling.models import apply_lora
from grpo.modeling.sharded import is_sharded, load_into_fresh_copy, unsharded_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2))
    base.save_pretrained(tmp_path / "base")
    _tiny_tokenizer().save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def trained_lora(base_dir):
    """A LoRA model on the saved base whose adapter moved away from its init (B != 0)."""
    model = apply_lora(LlamaForCausalLM.from_pretrained(base_dir), r=2, lora_alpha=4, lora_dropout=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)
    return model


def logits(model, ids=None):
    ids = torch.tensor([[3, 4, 5, 6, 7]]) if ids is None else ids
    with torch.inference_mode():
        return model.eval()(input_ids=ids).logits


def test_lora_model_is_rebuilt_from_a_16bit_state_dict(base_dir):
    model = trained_lora(base_dir)
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}  # what ZeRO-3 hands over
    fresh = load_into_fresh_copy(model, state, ScriptArgs(model_name_or_path=str(base_dir)))
    assert fresh is not model and next(fresh.parameters()).dtype == torch.float32
    ours = dict(fresh.named_parameters())
    for name, p in model.named_parameters():
        expected = p.detach().to(torch.bfloat16).float() if "lora_" in name else p.detach()
        assert torch.equal(ours[name].detach(), expected), name
    assert torch.allclose(logits(fresh), logits(model), atol=0.05)
    assert not torch.allclose(logits(fresh), logits(LlamaForCausalLM.from_pretrained(base_dir)), atol=0.05)


def test_plain_model_takes_every_tensor_and_a_wrong_state_dict_is_refused(base_dir):
    model = LlamaForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(3.0)  # e.g. a warm start that changed the base
    fresh = load_into_fresh_copy(model, model.state_dict(), ScriptArgs(model_name_or_path=str(base_dir)))
    assert torch.equal(logits(fresh), logits(model))
    state = dict(model.state_dict())
    del state["model.layers.0.self_attn.q_proj.weight"]
    with pytest.raises(RuntimeError, match="q_proj"):
        load_into_fresh_copy(model, state, ScriptArgs(model_name_or_path=str(base_dir)))


def test_peft_state_dict_without_adapter_is_refused(base_dir):
    model = trained_lora(base_dir)
    state = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    with pytest.raises(RuntimeError, match="no adapter tensors"):
        load_into_fresh_copy(model, state, ScriptArgs(model_name_or_path=str(base_dir)))


def stand_in_trainer(model, *, fsdp=False, zero_stage=None, main=True):
    """The attributes of a transformers Trainer that unsharded_model reads, after train()."""
    calls = []

    def get_state_dict(wrapped):
        calls.append(wrapped)
        return wrapped.state_dict()

    plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage is not None else None
    accelerator = SimpleNamespace(get_state_dict=get_state_dict, is_main_process=main,
                                  state=SimpleNamespace(deepspeed_plugin=plugin))
    trainer = SimpleNamespace(model=model, deepspeed=model, is_fsdp_enabled=fsdp, is_deepspeed_enabled=plugin is not None,
                              accelerator=accelerator, args=SimpleNamespace(device=torch.device("cpu")))
    return trainer, calls


def test_unsharded_model_gathers_only_when_parameters_are_sharded(base_dir):
    model, script_args = trained_lora(base_dir), ScriptArgs(model_name_or_path=str(base_dir))
    for kwargs in ({}, {"zero_stage": 2}):  # single process / DDP, ZeRO-2: full parameters everywhere
        trainer, calls = stand_in_trainer(model, **kwargs)
        assert not is_sharded(trainer) and unsharded_model(trainer, script_args) is model and not calls
    for kwargs in ({"fsdp": True}, {"zero_stage": 3}):
        trainer, calls = stand_in_trainer(model, **kwargs)
        fresh = unsharded_model(trainer, script_args)
        assert is_sharded(trainer) and calls == [model] and fresh is not model
        assert torch.allclose(logits(fresh), logits(model), atol=1e-6)
        trainer, calls = stand_in_trainer(model, main=False, **kwargs)  # other ranks join the gather, keep theirs
        assert unsharded_model(trainer, script_args) is model and calls == [model]


def test_ctrl_c_saves_the_live_model_but_not_a_shard(base_dir, tmp_path, caplog):
    from grpo.cli.pipeline import save_interrupted

    model = trained_lora(base_dir)
    path = save_interrupted(None, None, tmp_path / "run_a", trainer=stand_in_trainer(model)[0])
    assert path == tmp_path / "run_a" / "checkpoint-interrupted" and (path / "adapter_config.json").exists()
    assert save_interrupted(None, None, tmp_path / "run_b", trainer=stand_in_trainer(model, fsdp=True)[0]) is None
    assert not (tmp_path / "run_b" / "checkpoint-interrupted").exists()
    assert "sharded across processes" in caplog.text and "--resume_from_checkpoint latest" in caplog.text


def test_warm_started_lora_run_is_rebuilt_on_the_warm_start_checkpoint(tmp_path):
    """A sharded run rebuilds its final model on the base its adapter names: after a warm start that must be
    sft_checkpoint (the SFT changes), not the original base, in the adapter config too (what `grpo export` merges)."""
    from tiny_llama import tiny_llama_dir
    from trl import GRPOConfig

    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs
    from grpo.data.loaders import load_gsm8k
    from grpo.modeling.loading import load_for_training
    from grpo.training.sft import warm_start

    base = tiny_llama_dir(tmp_path / "base")
    out = tmp_path / "run"
    script_args, training_args = parse_config([
        "--model_name_or_path", str(base), "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true",
        "--bf16", "false", "--sft_examples", "4", "--sft_batch_size", "2", "--sft_micro_batch_size", "1",
        "--sft_learning_rate", "0.05", "--disable_tqdm", "true"], (ScriptArgs, GRPOConfig))
    model, tokenizer = load_for_training(str(base), script_args)
    warmed = warm_start(model, tokenizer, load_gsm8k("gsm8k", limit=8), script_args, training_args, out)
    done = out / "sft_checkpoint"
    assert warmed.name_or_path == str(done)
    peft_model = apply_lora(warmed, r=2, lora_alpha=4, lora_dropout=0.0)
    assert peft_model.peft_config["default"].base_model_name_or_path == str(done)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    fresh = load_into_fresh_copy(peft_model, peft_model.state_dict(), script_args)
    ours, original = dict(fresh.named_parameters()), dict(LlamaForCausalLM.from_pretrained(base).named_parameters())
    moved = 0
    for name, p in peft_model.named_parameters():
        assert torch.equal(ours[name].detach(), p.detach()), name  # SFT-merged base and adapter, both kept
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        moved += plain in original and not torch.equal(original[plain], p.detach())
    assert moved > 0, "the warm start changed no weight: the test cannot tell the two bases apart"
