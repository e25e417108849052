"""The front end: the `grpo` command, its sub-commands, and the pipeline that runs a job stage by stage."""

from grpo.cli.commands import main

__all__ = ["main"]
