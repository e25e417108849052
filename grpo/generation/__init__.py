"""Rollouts: the typed Rollout, the CPU sampler with its fast decoder and inference copy, vLLM engines."""
