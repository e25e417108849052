"""Tests for grpo/placement.py: the model on the training device.

No GPU here: the training device is the CPU, or ``meta`` where only a device check matters.
Run: pytest tests/test_placement.py   (tiny Llama, seconds)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grpo.errors import UserError
from grpo.placement import place_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))


def test_place_model_leaves_a_device_mapped_model_and_refuses_a_wrong_device():
    model = tiny_model()
    model.hf_device_map = {"": "cpu"}
    assert place_model(model, "cpu") is model
    with pytest.raises(UserError, match="device_map"):
        place_model(model, "meta")
    del model.hf_device_map
    assert next(place_model(model, "meta").parameters()).device.type == "meta"
