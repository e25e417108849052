"""Training loops: the native GRPO backend (grpo.training.native: plan, loop, experience, checkpoint), TRL's GRPOTrainer
(trl_backend), warm-start SFT."""
