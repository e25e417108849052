"""``python -m grpo.cli``: the ``grpo`` command."""

from grpo.cli.commands import main

raise SystemExit(main())
