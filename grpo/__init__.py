"""grpo-toolkit: GRPO training (TRL-backed and native), evaluation and the GSM8K exercise.

``import grpo`` is cheap (no torch); the pieces load when used::

    from grpo.cli.pipeline import run_training     # the whole exercise from (ScriptArgs, GRPOConfig)
    from grpo.config.script_args import ScriptArgs
    from grpo.evaluation.evaluate import evaluate
    from grpo.modeling.models import load_model
    from grpo.data.loaders import load_gsm8k

Command line: ``grpo --help``.
"""

__version__ = "0.1.0"
