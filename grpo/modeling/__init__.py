"""Models: spec resolution and loading (embedded, local, hub), LoRA, quantization, sharded loading, export."""
