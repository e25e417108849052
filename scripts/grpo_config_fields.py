"""Write docs/grpo_config_fields.md: every GRPO-specific trl.GRPOConfig field, honoured / ignored / refused by
the native backend (grpo/training/native/fields.py) and by the TRL backend.

    python scripts/grpo_config_fields.py            # rewrite the file
    python scripts/grpo_config_fields.py --check    # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpo.training.native.fields import fields_table

TARGET = Path(__file__).resolve().parent.parent / "docs" / "grpo_config_fields.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    opts = parser.parse_args()
    text = fields_table()
    if opts.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        print("up to date" if current == text else f"{TARGET} is out of date: run python {sys.argv[0]}")
        return 0 if current == text else 1
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
