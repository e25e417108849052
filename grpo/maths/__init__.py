"""The GRPO maths: per-token loss (all loss types and their registry), group advantages, entropy control, log-probs.
Imports torch only."""
