"""Cold-start stage: supervised warm-start on solutions rewritten into the target format.

Why: the embedded SmolLM2-135M-Instruct never writes ``<reasoning>/<answer>`` on its own (0 of 64
GSM8K test problems, greedy, course system prompt), so every GRPO group ties at zero reward
(``frac_reward_zero_std`` = 1) and there is nothing to learn from. As in DeepSeek-R1 (cold-start
data before RL, arXiv:2501.12948 section 2.3.1), a short SFT on a few solutions in the target
format gives GRPO groups with reward spread.

Each GSM8K row becomes a conversational prompt-completion pair: the prompt is the GRPO prompt
(system prompt + question), the completion is the solution with calculator marks removed and the
number after ``####`` as the answer (:func:`grpo.data.loaders.to_reasoning_format`). TRL's ``SFTTrainer``
puts the loss on the completion only for prompt-completion data; training goes through LoRA and the
adapter is merged back, so GRPO starts from a plain model.

Run alone: ``grpo sft --config grpo/configs/gsm8k.yaml --output_dir runs/sft``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from grpo.common.checkpoint_io import save_checkpoint
from grpo.common.console import quiet_progress
from grpo.common.hardware import pad_to_multiple_of
from grpo.data.loaders import to_reasoning_format
from grpo.modeling.loading import full_precision_copy, load_for_training
from grpo.modeling.models import lora_config
from grpo.modeling.quantization import is_quantized
from grpo.modeling.sharded import unsharded_model
from grpo.runs.tracking import configure, finish_wandb, trainer_args

logger = logging.getLogger(__name__)


def build_sft_dataset(rows, num_examples: int):
    """Prompt-completion rows for ``SFTTrainer`` from GSM8K rows (``prompt`` + ``solution`` columns).

    Returns:
        ``datasets.Dataset`` with ``prompt`` (list of messages) and ``completion`` (one assistant message).
    """
    import datasets

    rows = rows.select(range(min(num_examples, len(rows))))
    return datasets.Dataset.from_list([
        {"prompt": r["prompt"], "completion": [{"role": "assistant", "content": to_reasoning_format(r["solution"])}]}
        for r in rows
    ])


def _accumulation_steps(script_args, world_size: int) -> int:
    """Gradient accumulation that makes ``sft_batch_size`` examples per optimizer step across all processes."""
    per_pass = script_args.sft_micro_batch_size * world_size
    if script_args.sft_batch_size % per_pass:
        logger.warning("Warm-start: sft_batch_size=%d is not a multiple of sft_micro_batch_size x %d processes = %d; "
                       "each step takes %d examples", script_args.sft_batch_size, world_size, per_pass,
                       max(1, script_args.sft_batch_size // per_pass) * per_pass)
    return max(1, script_args.sft_batch_size // per_pass)


def warm_start(model, tokenizer, rows, script_args, training_args, output_dir):
    """Run the SFT warm-start and return the merged model; reuses ``output_dir/sft_checkpoint`` if present.

    Args:
        model: the base causal LM.
        tokenizer: its tokenizer (chat template required).
        rows: GSM8K rows from :func:`grpo.data.loaders.load_gsm8k` (held-out rows excluded by the caller).
        script_args: :class:`grpo.config.script_args.ScriptArgs` (``sft_*`` and ``lora_*`` fields; ``sft_lora_dropout``
            replaces ``lora_dropout`` for this stage when set).
        training_args: the GRPO run's ``GRPOConfig`` (seed, bf16, logging are shared).
        output_dir: the run directory.

    Returns:
        The warm-started model with the LoRA adapter merged in (a plain ``PreTrainedModel``). With
        ``load_in_4bit``/``load_in_8bit`` the SFT is QLoRA on the quantized ``model``; its adapter is
        merged into the unquantized base (``sft_checkpoint`` is full precision) and the model
        returned is that checkpoint quantized again. With several processes the main one merges
        and writes ``sft_checkpoint`` and the others load it from there. Under DeepSpeed ZeRO-3 every
        process gets a full model (built outside ``zero.Init``, :func:`grpo.common.placement.zero3_init_disabled`),
        which the GRPO stage's Trainer partitions again.
    """
    from trl import SFTConfig

    from grpo.training.sft_trainer import WarmStartSFTTrainer  # imports trl: here, not at the top (STYLE 14)

    done = Path(output_dir) / "sft_checkpoint"
    if (done / "config.json").exists():
        logger.info("Warm-start already done: loading %s (delete it to redo the SFT stage)", done)
        return reload_checkpoint(done, script_args)
    dataset = build_sft_dataset(rows, script_args.sft_examples)
    max_steps = max(1, math.ceil(len(dataset) * script_args.sft_epochs / script_args.sft_batch_size))
    config = SFTConfig(
        output_dir=str(Path(output_dir) / "sft"),
        max_steps=max_steps,
        per_device_train_batch_size=script_args.sft_micro_batch_size,  # memory: logits over the vocabulary
        gradient_accumulation_steps=_accumulation_steps(script_args, training_args.world_size),
        learning_rate=script_args.sft_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, max_steps // 10),
        logging_steps=max(1, max_steps // 10),
        save_strategy="no",
        report_to=training_args.report_to,  # grpo.runs.tracking: offline wandb, logs in the run directory
        run_name=f"{training_args.run_name or Path(output_dir).name}-sft",
        project=training_args.project,
        seed=training_args.seed,
        bf16=training_args.bf16,
        use_cpu=training_args.use_cpu,
        gradient_checkpointing=False,  # a 135M model fits easily; checkpointing only costs time on CPU
        max_length=512,
        pad_to_multiple_of=pad_to_multiple_of(training_args.pad_to_multiple_of, training_args.use_cpu),  # bounded shapes
        disable_tqdm=training_args.disable_tqdm,
    )
    dropout = script_args.lora_dropout if script_args.sft_lora_dropout is None else script_args.sft_lora_dropout
    lora = lora_config(script_args.lora_r, script_args.lora_alpha, dropout, script_args.lora_target_modules)
    logger.info("Warm-start SFT: %d examples, %d steps, lr %g", len(dataset), max_steps, script_args.sft_learning_rate)
    config = trainer_args(config, configure(config, output_dir=output_dir))  # before the reporting callbacks import
    # SFTTrainer, 1.3x faster in one CPU process (grpo.training.sft_trainer)
    trainer = WarmStartSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                  peft_config=lora)
    quiet_progress(trainer, "warm-start SFT")
    trainer.train()
    finish_wandb()  # the GRPO stage that follows starts its own wandb run
    trained = unsharded_model(trainer, script_args)  # FSDP / ZeRO-3: every process joins the gather
    main = trainer.accelerator.is_main_process
    if main:  # one writer; the other processes load what it wrote
        merged = full_precision_copy(trained, script_args).merge_and_unload()  # QLoRA: into the unquantized base
        merged.train()
        save_checkpoint(merged, tokenizer, done, replace=True)
        # the merged model *is* this checkpoint now, as it is for the processes that load it from there: peft
        # records name_or_path as the GRPO adapter's base, and a sharded run rebuilds its final model on that base
        merged.name_or_path = merged.config._name_or_path = str(done)
    trainer.accelerator.wait_for_everyone()
    if main and not is_quantized(script_args):
        return merged
    return reload_checkpoint(done, script_args)


def reload_checkpoint(done, script_args):
    """The merged warm-start checkpoint ``done`` loaded for training (quantized again for QLoRA), as a full model.

    Each process loads it on its own (the main one after writing it, or every one when a run is
    resumed), so DeepSpeed ZeRO-3's ``zero.Init``, a collective, is switched off for the load
    (:func:`grpo.common.placement.zero3_init_disabled`).
    """
    from grpo.common.placement import (
        zero3_init_disabled,  # here, not at the top: grpo.common.placement imports torch (STYLE 14)
    )

    with zero3_init_disabled():
        return load_for_training(done, script_args)[0]
