"""The GRPO maths: per-token loss (all loss types), group advantages, and the statistics reported with results. Imports torch/scipy only."""
