"""A tiny random Llama checkpoint with a real chat tokenizer, for end-to-end runs in seconds.

The tokenizer (and its chat template) is the embedded SmolLM2's, so the GSM8K prompts, the warm-start
SFT and the evaluations run exactly as they do on the real model; the network is 2 layers of width 16.
"""

from pathlib import Path


def tiny_llama_dir(path, seed: int = 0) -> Path:
    """Save a 2-layer random Llama (hidden size 16) with SmolLM2's tokenizer to ``path``; returns ``path``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import embedded_models

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(embedded_models.resolve("embedded:smollm2-135m-instruct"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
