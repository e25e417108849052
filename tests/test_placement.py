"""Tests for grpo/common/placement.py: the model on the training device, evaluation on the main process, copies outside ZeRO-3.

No GPU and no deepspeed here: the training device is the CPU (or ``meta`` where only a device check
matters), other ranks are played by setting ``process_index``, and DeepSpeed ZeRO-3 is a stand-in
config registered the way accelerate registers the real one (transformers' ``set_hf_deepspeed_config``).
Run: pytest tests/test_placement.py   (tiny Llama, seconds)
"""

import logging
import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from test_quantization import _tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations import is_deepspeed_zero3_enabled, set_hf_deepspeed_config, unset_hf_deepspeed_config

from grpo.common.errors import UserError
from grpo.common.placement import eval_placement, evaluate_on_main, place_model, zero3_init_disabled

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))


# ---------------------------------------------------------------------------- evaluation placement


@pytest.mark.parametrize("rank, device, partitioned, expected", [
    (0, "cpu", False, (True, CPU)),
    (0, "cuda:0", False, (True, torch.device("cuda:0"))),  # a torch.device, no CUDA needed to name one
    (1, "cuda:1", False, (False, torch.device("cuda:1"))),
    (3, "cpu", False, (False, CPU)),
    (0, "cuda:0", True, (False, torch.device("cuda:0"))),  # ZeRO-3 partitions: no forward outside the engine
])
def test_eval_placement_main_process_only_on_the_training_device(rank, device, partitioned, expected):
    assert eval_placement(rank, device, partitioned) == expected


def test_evaluate_on_main_evaluates_once_and_every_process_waits():
    model, waits = tiny_model(), []
    for rank in (0, 1, 2):
        seen = []
        args = SimpleNamespace(process_index=rank, device=CPU)
        report = evaluate_on_main(args, model,
                                  lambda m, seen=seen: seen.append(next(m.parameters()).device) or {"accuracy": 1.0},
                                  barrier=lambda rank=rank: waits.append(rank))
        assert (report, seen) == (({"accuracy": 1.0}, [CPU]) if rank == 0 else (None, []))
    assert waits == [0, 1, 2]


def test_evaluate_on_main_moves_the_model_for_the_call_only():
    model, moves = tiny_model(), []
    move = model.to

    def recording_to(*args, **kwargs):
        moves.append(args[0])
        return move(*args, **kwargs)

    model.to = recording_to  # an instance attribute shadows nn.Module.to
    evaluate_on_main(SimpleNamespace(process_index=0, device=CPU), model, lambda m: None, barrier=lambda: None)
    assert [torch.device(d) for d in moves] == [CPU]  # to the training device (already there: no move back)
    moves.clear()
    model.hf_device_map = {"": "cpu"}  # a bitsandbytes device_map load: evaluated where it is
    evaluate_on_main(SimpleNamespace(process_index=0, device=CPU), model, lambda m: None, barrier=lambda: None)
    assert moves == []


def test_partitioned_weights_skip_the_evaluation_with_one_warning(caplog):
    model = tiny_model()
    next(model.parameters()).ds_id = 0  # what deepspeed.zero.Init leaves on every parameter
    called = []
    for rank in (0, 1):
        with caplog.at_level(logging.WARNING, logger="grpo.common.placement"):
            report = evaluate_on_main(SimpleNamespace(process_index=rank, device=CPU), model, called.append,
                                      barrier=lambda: None)
        assert report is None
    assert called == [] and caplog.text.count("skipping this evaluation") == 1


def test_place_model_leaves_a_device_mapped_model_and_refuses_a_wrong_device():
    model = tiny_model()
    model.hf_device_map = {"": "cpu"}
    assert place_model(model, "cpu") is model
    with pytest.raises(UserError, match="device_map"):
        place_model(model, "meta")
    del model.hf_device_map
    assert next(place_model(model, "meta").parameters()).device.type == "meta"


def test_run_training_evaluates_on_the_main_process_only(tmp_path, monkeypatch):
    """Process 1 of a launch neither evaluates nor skips the barrier (it used to evaluate on the CPU in every process)."""
    from trl import GRPOConfig

    import grpo.cli.pipeline
    import grpo.common.placement
    import grpo.modeling.loading
    import grpo.training.native
    from grpo.config.script_args import ScriptArgs

    evaluated, waits = [], []
    monkeypatch.setattr(grpo.modeling.loading, "load_for_training", lambda spec, args: (tiny_model(), _tiny_tokenizer()))
    monkeypatch.setattr(grpo.cli.pipeline, "run_eval", lambda model, *args, **kwargs: evaluated.append(model))
    monkeypatch.setattr(grpo.common.placement, "_wait_for_everyone", lambda: waits.append(1))
    monkeypatch.setattr(grpo.training.native, "train", lambda model, *args, **kwargs: model)
    script_args = ScriptArgs(backend="native", dataset_name="synthetic:gsm8k:12", eval_size=4, warm_start=False)
    training_args = GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, max_steps=1,
                               num_generations=2, per_device_train_batch_size=2, save_strategy="no")
    monkeypatch.setattr(GRPOConfig, "process_index", property(lambda self: 1))  # this process plays rank 1
    result = grpo.cli.pipeline.run_training(script_args, training_args)
    assert evaluated == [] and waits == [1] and result["eval_before"] is None


# ---------------------------------------------------------------------------- ZeRO-3: copies built outside zero.Init


class StandInZero3Config:
    """What accelerate registers for ZeRO-3 (transformers only asks it these two things)."""

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}

    def is_zero3(self):
        return True


@pytest.fixture
def zero3():
    config = StandInZero3Config()  # set_hf_deepspeed_config keeps a weak reference: hold the object
    set_hf_deepspeed_config(config)
    yield config
    unset_hf_deepspeed_config()


@pytest.fixture
def base_dir(tmp_path):
    tiny_model().save_pretrained(tmp_path / "base")
    _tiny_tokenizer().save_pretrained(tmp_path / "base")
    return tmp_path / "base"


@pytest.fixture
def loads(monkeypatch):
    """Every grpo.modeling.models.load_model call, with whether transformers saw ZeRO-3 (zero.Init) at that moment."""
    import grpo.modeling.models

    seen, load = [], grpo.modeling.models.load_model

    def recording_load(*args, **kwargs):
        seen.append(is_deepspeed_zero3_enabled())
        return load(*args, **kwargs)

    monkeypatch.setattr(grpo.modeling.models, "load_model", recording_load)
    return seen


def test_zero3_init_disabled_clears_and_restores_the_deepspeed_config(zero3):
    assert is_deepspeed_zero3_enabled()
    with zero3_init_disabled():
        assert not is_deepspeed_zero3_enabled()
    assert is_deepspeed_zero3_enabled()  # the Trainer's own ZeRO-3 handling still sees it
    with pytest.raises(RuntimeError), zero3_init_disabled():
        raise RuntimeError("restored on errors too")
    assert is_deepspeed_zero3_enabled()
    unset_hf_deepspeed_config()
    with zero3_init_disabled():  # outside DeepSpeed: nothing to do
        assert not is_deepspeed_zero3_enabled()


def test_end_of_run_copies_are_built_outside_zero3_init(zero3, base_dir, loads):
    """The main process alone rebuilds the sharded model (sharded.py -> models.py): under zero.Init it would hang;
    here, without deepspeed installed, it would fail to import it."""
    from grpo.config.script_args import ScriptArgs
    from grpo.modeling.models import apply_lora
    from grpo.modeling.sharded import load_into_fresh_copy

    script_args = ScriptArgs(model_name_or_path=str(base_dir))
    with zero3_init_disabled():  # the trained models themselves (a real run has them from the engine)
        trained = LlamaForCausalLM.from_pretrained(base_dir)
        lora = apply_lora(LlamaForCausalLM.from_pretrained(base_dir), r=2, lora_alpha=4, lora_dropout=0.0)
    fresh = load_into_fresh_copy(trained, trained.state_dict(), script_args)
    fresh_lora = load_into_fresh_copy(lora, lora.state_dict(), script_args)
    assert loads == [False, False] and is_deepspeed_zero3_enabled()
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(input_ids=ids).logits, trained.eval()(input_ids=ids).logits)
        assert torch.allclose(fresh_lora.eval()(input_ids=ids).logits, lora.eval()(input_ids=ids).logits, atol=1e-6)


def test_warm_start_reload_is_built_outside_zero3_init(zero3, base_dir, tmp_path, loads):
    """A resumed run reloads sft_checkpoint in every process; under zero.Init the copies would be partitions."""
    import shutil

    from grpo.config.script_args import ScriptArgs
    from grpo.training.sft import warm_start

    shutil.copytree(base_dir, tmp_path / "run" / "sft_checkpoint")
    model = warm_start(None, None, None, ScriptArgs(warm_start=True), None, tmp_path / "run")
    assert loads == [False] and is_deepspeed_zero3_enabled()
    assert not any(hasattr(p, "ds_id") for p in model.parameters())
