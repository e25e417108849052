"""Decoder-only prompt -> response SFT, shared by the translation and summarization recipes.

Not a recipe (no ``main``): the two seq2seq recipes use it when ``--model`` is a decoder-only
model (the offline default, embedded SmolLM2), where the course's encoder-decoder recipe becomes
supervised fine-tuning on ``prompt + response`` sequences:

* the prompt is the tokenizer's chat template applied to ``[system?, user: instruction + source]``
  with the assistant turn opened (or ``instruction\\n\\nsource\\n\\nResponse:`` when the tokenizer
  has no chat template);
* the response is the target text followed by the eos token, so generation learns to stop;
* labels are ``-100`` on every prompt token (the loss is on the response only, as in TRL's
  ``completion_only_loss``) and on padding (:func:`collator`).

Evaluation generates greedily with :func:`generate_responses` (left padding, new tokens only);
the recipes score those strings with sacreBLEU / ROUGE. Use a trained checkpoint the same way
(encoder-decoder checkpoints too: pass the source texts instead of prompts, since transformers 5
has no ``translation`` / ``summarization`` pipeline any more)::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from recipes.decoder_sft import build_prompt, generate_responses
    model = AutoModelForCausalLM.from_pretrained("runs/translation")
    tokenizer = AutoTokenizer.from_pretrained("runs/translation")
    prompt = build_prompt(tokenizer, "Translate this English text to French.", "Open the file")
    print(generate_responses(model, tokenizer, [prompt], max_new_tokens=64))
"""

from __future__ import annotations

import logging

from grpo.common.errors import UserError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the cross-entropy loss skips


def has_chat_template(tokenizer) -> bool:
    """True when the tokenizer carries a chat template (instruct models such as SmolLM2-Instruct)."""
    return bool(getattr(tokenizer, "chat_template", None))


def truncate_text(tokenizer, text: str, max_tokens: int) -> str:
    """Cut ``text`` to its first ``max_tokens`` tokens (decoded back to text); unchanged if shorter.

    The source is truncated *before* it goes into the prompt so the template around it survives.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def build_prompt(tokenizer, instruction: str, source: str, system_prompt: str = "") -> str:
    """The prompt text for one example, ending where the model's answer starts.

    Args:
        tokenizer: the model's tokenizer (its chat template is used when it has one).
        instruction: task instruction, e.g. ``"Translate this English text to French."``.
        source: the text to translate / summarize.
        system_prompt: optional system message ("" = the template's default, if any).

    Returns:
        A string; tokenize it with :func:`prompt_token_ids` (it may already contain special tokens).
    """
    user = f"{instruction}\n\n{source}" if instruction else source
    if has_chat_template(tokenizer):
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{head}{user}\n\nResponse: "


def prompt_token_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of prompts from :func:`build_prompt`.

    A chat-templated prompt already holds its special tokens, so none are added; a plain prompt
    gets the tokenizer's usual ones (e.g. Llama's bos).
    """
    add_special = not has_chat_template(tokenizer)
    return tokenizer(prompts, add_special_tokens=add_special)["input_ids"]


def tokenize_pairs(tokenizer, prompts: list[str], responses: list[str], max_response_tokens: int) -> dict:
    """Tokenize prompt/response pairs for causal-LM training with the loss on the response only.

    Args:
        tokenizer: the decoder's tokenizer (needs an eos token).
        prompts: prompt strings from :func:`build_prompt` (sources already truncated).
        responses: target strings; each is cut to ``max_response_tokens`` tokens and gets eos.
        max_response_tokens: response length cap in tokens, eos excluded.

    Returns:
        ``{"input_ids", "attention_mask", "labels"}``: lists of int lists, one per pair, each of
        length ``len(prompt) + len(response) + 1``; ``labels`` is ``-100`` on prompt positions and
        equals ``input_ids`` on the response and its eos.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("decoder-only SFT needs a tokenizer with an eos token (it ends every response)")
    prompt_ids = prompt_token_ids(tokenizer, prompts)
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for p_ids, r_ids in zip(prompt_ids, response_ids):
        r_ids = r_ids[:max_response_tokens] + [eos]
        out["input_ids"].append(p_ids + r_ids)
        out["attention_mask"].append([1] * (len(p_ids) + len(r_ids)))
        out["labels"].append([IGNORE_INDEX] * len(p_ids) + r_ids)
    return out


def collator(tokenizer):
    """Batches of :func:`tokenize_pairs` rows: inputs padded with pad, labels padded with -100.

    ``DataCollatorForSeq2Seq`` without a model does exactly this for decoder-only rows (no
    ``decoder_input_ids`` are made), padding on the tokenizer's ``padding_side``.
    """
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


def generate_responses(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 64,
                       batch_size: int = 8) -> list[str]:
    """Greedy outputs of a seq2seq-trained model: the generation helper for both model families.

    transformers 5 removed the ``translation`` / ``summarization`` / ``text2text-generation``
    pipelines, so this is how recipe checkpoints are used (and evaluated, for decoder-only ones).

    Args:
        model: a causal LM given prompts from :func:`build_prompt`, or an encoder-decoder model
            (``config.is_encoder_decoder``) given the (prefixed) source texts. Inputs follow
            ``model.device``.
        tokenizer: its tokenizer (pad token set).
        prompts: prompt strings (decoder-only) or source strings (encoder-decoder).
        max_new_tokens: generation cap per prompt; generation also stops at eos.
        batch_size: prompts per ``generate`` call (left-padded).

    Returns:
        One stripped string per prompt: the new tokens only, special tokens removed.
    """
    import torch

    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens must follow the prompt
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            ids = tokenizer(chunk)["input_ids"] if encoder_decoder else prompt_token_ids(tokenizer, chunk)
            batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                           pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id)
            # A decoder's output repeats the prompt; an encoder-decoder's holds only new tokens.
            new_tokens = generated if encoder_decoder else generated[:, batch["input_ids"].shape[1]:]  # (B, T_new)
            outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def append_eos(ids: list[int], eos: int | None, max_length: int) -> list[int]:
    """Make a target end with eos (kept within ``max_length``); Marian, T5 and BART tokenizers already do."""
    if eos is None or (ids and ids[-1] == eos):
        return ids
    return (ids[:max_length - 1] if len(ids) >= max_length else ids) + [eos]


def decode_predictions(eval_preds, tokenizer) -> tuple[list[str], list[str]]:
    """``(predictions, references)`` text from a ``Seq2SeqTrainer`` ``EvalPrediction`` (-100 -> pad)."""
    import numpy as np

    preds, labels = eval_preds
    preds = preds[0] if isinstance(preds, tuple) else preds
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    return (tokenizer.batch_decode(preds, skip_special_tokens=True),
            tokenizer.batch_decode(labels, skip_special_tokens=True))


def is_encoder_decoder(spec: str) -> bool:
    """Whether the model spec names an encoder-decoder checkpoint (reads only its config)."""
    from transformers import AutoConfig

    from grpo.modeling.models import resolve_model_path

    try:
        return bool(AutoConfig.from_pretrained(resolve_model_path(spec)).is_encoder_decoder)
    except OSError as err:
        raise UserError(f"model {spec!r}: could not read its config ({str(err).splitlines()[0][:160]})") from None
