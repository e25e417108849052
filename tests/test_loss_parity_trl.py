"""The native loss equals trl.GRPOTrainer._compute_loss on the same tensors, for every loss_type, level and knob.

Run: pytest tests/test_loss_parity_trl.py            (offline, ~20 s: a subset of the grid)
     pytest tests/test_loss_parity_trl.py -m slow    (the whole grid, ~1-2 min on 2 cores)
The comparison itself lives in scripts/check_loss_parity.py (also runnable on its own; it prints the
number of configurations checked and the worst difference).
"""

import importlib.util
import pathlib

import pytest

pytest.importorskip("trl")

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "check_loss_parity.py"
_spec = importlib.util.spec_from_file_location("check_loss_parity", _SCRIPT)
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

# fast tier: every loss type x level with every knob at once, and each knob alone on dapo/token
FAST = [c for c in parity.CASES if c["knob"] == "everything"
        or (c["loss_type"], c["importance_sampling_level"]) == ("dapo", "token")]


def _id(case):
    return f"{case['loss_type']}-{case['importance_sampling_level']}-{case['knob']}"


def _check(case, tmp_path):
    result = parity.compare(case, output_dir=str(tmp_path))
    assert parity.worst(result) <= parity.TOLERANCE
    for r in result["micro_batches"]:
        diffs = parity.metric_diffs(r)
        # the objective's own metrics are compared on every micro-batch, kl whenever beta != 0
        expected = {"cispo": {"cispo_clip_ratio"}, "vespo": {"vespo/phi_seq_mean"}, "sapo": set()}.get(
            case["loss_type"], {"clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"})
        if case.get("beta"):
            expected.add("kl")
        if case["config"].get("entropy_coef") or case["config"].get("use_adaptive_entropy"):
            expected.add("policy_loss")
        assert expected <= diffs.keys()
    return result


@pytest.mark.parametrize("case", FAST, ids=_id)
def test_native_loss_matches_trl(case, tmp_path):
    _check(case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in parity.CASES if c not in FAST], ids=_id)
def test_native_loss_matches_trl_whole_grid(case, tmp_path):
    _check(case, tmp_path)


def test_grid_covers_every_loss_type_level_and_knob():
    covered = {(c["loss_type"], c["importance_sampling_level"], c["knob"]) for c in parity.CASES}
    assert {lt for lt, _, _ in covered} == set(parity.LOSS_TYPES)
    from grpo.maths.loss import LOSS_TYPES

    assert set(LOSS_TYPES) == set(parity.LOSS_TYPES)  # a newly registered objective must join the grid
    for lt in parity.LOSS_TYPES:
        for lvl in parity.LEVELS:
            knobs = {k for t, v, k in covered if (t, v) == (lt, lvl)}
            assert knobs == set(parity.KNOBS) - ({"correction_sequence"} if lt == "vespo" else set())


def test_knobs_change_the_loss(tmp_path):
    """Each knob moves TRL's loss away from the base configuration's: the grid compares something real."""
    def losses(knob, lt="dapo"):
        case = next(c for c in parity.CASES if (c["loss_type"], c["importance_sampling_level"], c["knob"])
                    == (lt, "token", knob))
        return [r["trl_loss"] for r in parity.compare(case, output_dir=str(tmp_path))["micro_batches"]]

    base = losses("base")
    for knob in ("delta", "top_entropy_quantile", "entropy_coef", "off_policy_mask", "off_policy_mask_sampling",
                 "correction_token"):
        assert losses(knob) != pytest.approx(base, abs=1e-6), knob
    adaptive = losses("adaptive_entropy")  # no bonus before the first measured step, then the bonus applies
    assert adaptive[:2] == pytest.approx(base[:2], abs=1e-7) and adaptive[2:] != pytest.approx(base[2:], abs=1e-6)
    for lt in ("sapo", "vespo", "cispo"):
        assert losses("params", lt) != pytest.approx(losses("base", lt), abs=1e-6), lt


def test_batch_exercises_both_clips(tmp_path):
    r = parity.compare(next(c for c in parity.CASES if c["loss_type"] == "grpo"), output_dir=str(tmp_path))
    metrics = r["micro_batches"][0]["metrics"]
    assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0
