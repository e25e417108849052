"""Greedy evaluation on GSM8K-style problems with intervals and paired comparisons."""
