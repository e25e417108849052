"""Print a pip constraints file (``name==version`` lines) from a ``pip install --dry-run --report`` JSON.

Used by ``make lock-gpu``: the report's ``install`` list is what pip's resolver chose for the
environment it describes (platform, Python version), which the header records. The project itself
(grpo-toolkit) is left out.

    python scripts/lock_from_report.py report.json > requirements/lock-gpu.txt
"""

import datetime
import json
import sys


def main(path: str) -> None:
    report = json.loads(open(path, encoding="utf-8").read())
    env = report["environment"]
    chosen = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
    chosen.pop("grpo-toolkit", None)
    pins = {name: chosen[name] for name in ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "deepspeed")
            if name in chosen}
    print("# pip constraints for a GPU box: `.[dev,gpu]` resolved by pip's resolver (make lock-gpu) for")
    print(f"# {env['sys_platform']} {env['platform_machine']}, Python {env['python_full_version']}, CUDA wheels from PyPI, on "
          f"{datetime.date.today().isoformat()}.")
    print("# " + ", ".join(f"{k} {v}" for k, v in pins.items()) + " (vLLM pins torch and caps transformers).")
    print("# Install: make install TORCH_SPEC=torch==" + chosen.get("torch", "?")
          + " EXTRAS=dev,gpu LOCK=requirements/lock-gpu.txt")
    print("# make test-gpu-deps runs the CPU suite on these versions (CPU torch of the same version).")
    for name in sorted(chosen, key=str.lower):
        print(f"{name}=={chosen[name]}")


if __name__ == "__main__":
    main(sys.argv[1])
