"""The GRPO Trainer after the warm-start SFT's Trainer in one process: accelerate's shared state is made afresh.

A second ``Accelerator`` given a DeepSpeed plugin is refused by accelerate while the first one's state is
alive (transformers issue #35073), so ``--warm_start true`` with a DeepSpeed config stopped when the GRPO
trainer was built. Run: ``pytest -q tests/test_accelerate_state.py`` (seconds; the DeepSpeed case runs where
``import deepspeed`` works, which it does on CPU once installed).
"""

import copy
import importlib.util

import pytest
from test_native import dataset, tiny_model, tiny_tokenizer, word_reward

ZERO2 = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
         "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sft_trainer(tmp_path, **config):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "sft"), report_to=[], use_cpu=True, max_steps=1,
                     per_device_train_batch_size=2, **config)
    return SFTTrainer(model=tiny_model(), args=args, processing_class=tiny_tokenizer(),
                      train_dataset=Dataset.from_dict({"text": ["w3 w4 w5", "w6 w7 w8"]}))


def _grpo_config(tmp_path, **config):
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), report_to=[], use_cpu=True, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=4, max_steps=1, **config)
    _ = args.device  # the parsed config's device setup has run (the pipeline reads args.device before training)
    return args


def test_the_grpo_trainer_config_resets_the_state_an_sft_trainer_left(tmp_path):
    from accelerate.state import AcceleratorState

    from grpo.training.trl_backend import trainer_config

    parsed = _grpo_config(tmp_path)
    _sft_trainer(tmp_path)
    assert AcceleratorState._shared_state != {}  # the SFT trainer's Accelerator
    args = trainer_config(parsed, [])
    assert AcceleratorState._shared_state == {}, "the copy reused the cached device setup: the state lives on"
    assert "_setup_devices" in vars(args) and parsed.output_dir == args.output_dir


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install 'deepspeed>=0.18.6'; it imports on CPU)")
def test_grpo_trainer_builds_after_a_deepspeed_sft_trainer(tmp_path, monkeypatch):
    from trl import GRPOTrainer

    from grpo.training.trl_backend import trainer_config

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29561", "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    parsed = _grpo_config(tmp_path, deepspeed=copy.deepcopy(ZERO2))
    sft = _sft_trainer(tmp_path, deepspeed=copy.deepcopy(ZERO2))
    assert sft.is_deepspeed_enabled
    trainer = GRPOTrainer(model=tiny_model(), reward_funcs=[word_reward], args=trainer_config(parsed, []),
                          train_dataset=dataset(8), processing_class=tiny_tokenizer())
    assert trainer.is_deepspeed_enabled
    assert trainer.args.hf_deepspeed_config is not parsed.hf_deepspeed_config  # the parsed config is left as it was
