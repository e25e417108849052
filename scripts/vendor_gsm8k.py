"""Copy the published GSM8K splits into the package as deterministic gzip files (one-off tool).

    python scripts/vendor_gsm8k.py                                # from ../shared/data/gsm8k
    python scripts/vendor_gsm8k.py --source DIR                   # DIR holds train.jsonl, test.jsonl, LICENSE

Writes ``grpo/resources/gsm8k/{train,test}.jsonl.gz`` (gzip, level 9, no file name, mtime 0, so
the same input gives the same bytes) and copies ``LICENSE``; prints each split's row count and
the sha256 of the uncompressed file, which ``grpo/resources/gsm8k/README.md`` records and
``tests/test_gsm8k_vendored.py`` checks. The README itself is written by hand.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "grpo" / "resources" / "gsm8k"


def write_gzip(raw: bytes, path: Path) -> None:
    """Write ``raw`` gzip-compressed to ``path`` with a fixed header (no name, mtime 0)."""
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(raw)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "gsm8k")
    args = parser.parse_args(argv)
    DEST.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        raw = (args.source / f"{split}.jsonl").read_bytes()
        write_gzip(raw, DEST / f"{split}.jsonl.gz")
        rows = sum(1 for line in raw.splitlines() if line.strip())
        print(f"{split}.jsonl: {rows} rows, sha256 {hashlib.sha256(raw).hexdigest()}")
    shutil.copyfile(args.source / "LICENSE", DEST / "LICENSE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
