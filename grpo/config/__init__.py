"""The run configuration: ScriptArgs (TRL's ModelConfig/ScriptArguments fields plus ours) and the YAML + CLI parser."""
