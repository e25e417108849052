"""The native loss equals trl.GRPOTrainer._compute_loss on the same batch, for every loss_type.

Run: pytest tests/test_loss_parity_trl.py   (offline, ~10 s: builds tiny GRPOTrainers on a random Llama)
The comparison itself lives in scripts/check_loss_parity.py (also runnable on its own).
"""

import importlib.util
import pathlib

import pytest

pytest.importorskip("trl")

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "check_loss_parity.py"
_spec = importlib.util.spec_from_file_location("check_loss_parity", _SCRIPT)
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)


@pytest.mark.parametrize("case", parity.CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_native_loss_matches_trl(case, tmp_path):
    r = parity.compare(case, output_dir=str(tmp_path))
    assert r["loss"] == pytest.approx(r["trl_loss"], abs=1e-6)
    assert r["grad_diff"] < 1e-6
    diffs = parity.metric_diffs(r)
    # the clip metrics are compared in every case and kl whenever beta != 0
    assert {"clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"} <= diffs.keys()
    assert ("kl" in diffs) == bool(case["beta"])
    assert max(diffs.values()) < 1e-6


def test_batch_exercises_both_clips():
    r = parity.compare(parity.CASES[0])
    assert r["metrics"]["clip_ratio/low_mean"] > 0 and r["metrics"]["clip_ratio/high_mean"] > 0
