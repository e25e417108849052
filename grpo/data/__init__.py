"""Datasets: the vendored GSM8K, local files and the hub, prompt formats, synthetic problems."""
