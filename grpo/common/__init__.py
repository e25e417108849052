"""Shared plumbing every layer may use: errors, hardware detection, transformers compatibility, console, device
placement, distributed helpers, memory sampling, atomic checkpoint and file writes."""
