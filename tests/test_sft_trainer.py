"""The warm-start's SFT trainer (grpo.training.sft_trainer) against TRL's SFTTrainer.

The loss, the gradients of the LoRA weights and the logged token accuracy must be TRL's, since the
warm-start only swaps how the same loss is computed; and SFTTrainer must actually take our path on a
CPU (a test that passed because TRL's path ran would prove nothing).
"""

import pytest
import torch


def lora_model(seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer does
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM", init_lora_weights=False))  # non-zero B
    return model


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 300, (3, 20), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 15:] = 0  # a padded row
    labels = input_ids.clone()
    labels[:, :8] = -100  # the prompt
    labels[2, 15:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("num_items_in_batch", [None, 70])
def test_loss_and_lora_gradients_equal_trls_fused_head(num_items_in_batch):
    from grpo.training.sft_trainer import completion_nll

    model, inputs = lora_model(), batch()
    loss, stats = completion_nll(model, inputs, num_items_in_batch)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    fused = model(**inputs, fused_lm_head=True, use_cache=False)
    count = fused.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
    reference = -fused.log_probs.sum() / count  # SFTTrainer.compute_loss, loss_type "nll"
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    for name, grad in ours.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, rtol=1e-4, atol=1e-6)
    assert stats["is_top1"].sum() == fused.is_top1.sum()
    torch.testing.assert_close(stats["entropy"].sum(), fused.entropy.sum(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_the_warm_start_trainer_takes_our_path_on_a_cpu(tmp_path, monkeypatch, bf16):
    import datasets
    from peft import LoraConfig
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig

    import embedded_models
    from grpo.training import sft_trainer

    seen = []  # per micro-batch: the dtype a frozen base layer computes with
    original = sft_trainer.completion_nll

    def spy(model, *args, **kwargs):
        seen.append(model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(sft_trainer, "completion_nll", spy)
    tokenizer = AutoTokenizer.from_pretrained(embedded_models.resolve("embedded:smollm2-135m-instruct"))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True))
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}],
             "completion": [{"role": "assistant", "content": f"<answer>{i + 1}</answer>"}]} for i in range(4)]
    trainer = sft_trainer.WarmStartSFTTrainer(
        model=model, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", task_type="CAUSAL_LM"),
        args=SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to="none",
                       use_cpu=True, bf16=bf16, logging_steps=1, save_strategy="no", disable_tqdm=True,
                       learning_rate=1e-2))
    trainer.train()
    cast = torch.bfloat16 if bf16 else torch.float32
    assert seen == [cast, cast]  # our head on each micro-batch, TRL's never; frozen weights cast once under bf16
    assert trainer.model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.float32
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(0.0 <= h["mean_token_accuracy"] <= 1.0 and h["entropy"] > 0 for h in logged)
    assert torch.isfinite(torch.tensor([h["loss"] for h in logged])).all()
