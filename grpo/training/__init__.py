"""Training loops: the native GRPO loop (plan, rollout, checkpoints), TRL's GRPOTrainer, warm-start SFT."""
