"""Tests for grpo/training/native/checkpoint.py: what a checkpoint holds, and that loading one never runs code.

Run: pytest tests/test_native_checkpoint.py   (a tiny model, seconds)
"""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import grpo.training.native.checkpoint as ckpt
from grpo.common.errors import UserError


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.frozen = torch.nn.Linear(2, 2).requires_grad_(False)

    def save_pretrained(self, path):
        torch.save({}, os.path.join(path, "placeholder.bin"))


def _save(tmp_path, model):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.linear(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop = {"step": 3, "cursor": 12, "buffer": {"micro": [{"ids": torch.arange(4)}], "num_items": 4}, "window": {}}
    return ckpt.save(tmp_path, 3, model, None, optimizer, scheduler, loop, ckpt.rng_state()), optimizer, scheduler


def test_round_trip_restores_weights_optimizer_rng_and_loop(tmp_path):
    torch.manual_seed(0)
    model = _Tiny()
    path, optimizer, scheduler = _save(tmp_path, model)
    assert (path / ckpt.TRAINABLE_FILE).exists() and (path / ckpt.STATE_FILE).exists()
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    draws = (random.random(), np.random.rand(), torch.rand(1))
    with torch.no_grad():
        model.linear.weight.zero_()
    ckpt.set_rng_state(torch.load(path / ckpt.STATE_FILE, weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == draws  # the saved RNG states replay
    payload = ckpt.load(path, model, optimizer, scheduler)
    assert torch.equal(model.linear.weight, expected["linear.weight"])
    assert payload["step"] == 3 and torch.equal(payload["loop"]["buffer"]["micro"][0]["ids"], torch.arange(4))


def test_state_file_with_a_pickled_callable_is_refused(tmp_path):
    """A trainer_state.pt that would call os.system when unpickled: refused, naming the file, and nothing runs."""
    model = _Tiny()
    path, optimizer, scheduler = _save(tmp_path, model)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"step": 3, "loop": Exploit()}, path / ckpt.STATE_FILE)
    with pytest.raises(UserError, match="trainer_state.pt holds pickled objects.*refused"):
        ckpt.load(path, model, optimizer, scheduler)
    assert not marker.exists()


def test_a_resumed_generation_buffer_goes_to_the_training_device():
    """The buffer is read onto the CPU (map_location); on a GPU run its micro-batches must follow the model."""
    from grpo.training.native.experience import GenerationBatch, collate

    batch = collate([[5, 6]], [0, 0], [[1, 2, 3], [4]], [False, True], None, torch.zeros(2), 0, True)
    saved = GenerationBatch([batch], torch.tensor(6.0)).to_state()  # what a checkpoint holds: dicts of tensors
    moved = GenerationBatch.from_state(saved, "meta")
    (exp,) = moved.experiences
    assert exp.completion_mask.device.type == "meta" and moved.num_items_in_batch.device.type == "meta"
    assert exp.old_per_token_logps is None and exp.sampling_per_token_logps.shape == (2, 3)
    # the dict layout of checkpoints written before GenerationBatch existed still loads
    old = {"micro": [{"prompt_ids": batch.prompt_ids, "prompt_mask": batch.prompt_mask, "prompt_index": batch.prompt_index,
                      "completion_ids": batch.completion_ids, "completion_attn": batch.completion_attention_mask,
                      "mask": batch.completion_mask, "advantages": batch.advantages}], "num_items": torch.tensor(6.0)}
    (exp,) = GenerationBatch.from_state(old, "meta").experiences
    assert exp.completion_mask.device.type == "meta" and exp.sampling_per_token_logps is None


def test_loop_state_snapshot_is_a_safe_copy_and_reads_back(tmp_path):
    """LoopState -> plain values (loadable with weights_only) -> LoopState; later updates do not reach the snapshot."""
    from collections import defaultdict

    from grpo.training.native.experience import GenerationBatch, LoopState, collate

    batch = collate([[5, 6]], [0, 0], [[1, 2, 3], [4]], [False, True], None, torch.zeros(2), 0, True)
    state = LoopState(step=3, cursor=12, generation=2, buffer=GenerationBatch([batch], torch.tensor(6.0)),
                      signal=[{"frac_reward_zero_std": 0.5}], entropy_control={"coef": 0.1})
    state.window["loss"] += [1.0, 2.0]
    torch.save(state.snapshot(), tmp_path / "loop.pt")
    state.window["loss"].append(3.0)
    state.signal.append({"frac_reward_zero_std": 1.0})
    back = LoopState.from_snapshot(torch.load(tmp_path / "loop.pt", weights_only=True), "cpu")
    assert (back.step, back.cursor, back.generation, back.entropy_control) == (3, 12, 2, {"coef": 0.1})
    assert isinstance(back.window, defaultdict) and back.window["loss"] == [1.0, 2.0]
    assert back.signal == [{"frac_reward_zero_std": 0.5}]
    assert torch.equal(back.buffer.experiences[0].completion_ids, batch.completion_ids)
    # a snapshot without the later keys (entropy control, signal) reads with their defaults
    older = LoopState.from_snapshot({"step": 1, "cursor": 4, "generation": 1, "buffer": None, "window": {}}, "cpu")
    assert (older.step, older.signal, older.entropy_control, older.buffer) == (1, [], None, None)
