"""Group advantages against numbers worked out by hand. Run: pytest tests/test_advantages.py"""

import math

import pytest
import torch

from grpo.maths.advantages import combine_rewards, group_advantages, nanstd, reward_metrics

NAN = float("nan")


def approx(t, values, tol=1e-6):
    assert t.tolist() == pytest.approx(values, abs=tol)


def test_nanstd_is_bessel_corrected_and_skips_nan():
    # [1, 2, 3, 4]: squared deviations 2.25+0.25+0.25+2.25 = 5, / (4 - 1)
    assert nanstd(torch.tensor([1.0, 2.0, 3.0, 4.0])).item() == pytest.approx(math.sqrt(5 / 3))
    assert nanstd(torch.tensor([1.0, NAN, 3.0])).item() == pytest.approx(math.sqrt(2.0))
    assert math.isnan(nanstd(torch.tensor([5.0, NAN])).item())  # one value: undefined, as TRL


def test_group_scaling_and_zero_spread_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0])
    adv, metrics = group_advantages(rewards, num_generations=4, scale_rewards="group")
    s = math.sqrt(5 / 3) + 1e-4  # first group: mean 2.5, std sqrt(5/3)
    approx(adv, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0, 0, 0])
    assert metrics["frac_reward_zero_std"] == 0.5  # the tied group: half the completions


def test_batch_scaling_uses_batch_std_but_group_mean():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0])
    adv, metrics = group_advantages(rewards, num_generations=4, scale_rewards="batch")
    # batch mean 2.25; squared deviations 1.5625+0.0625+0.5625+3.0625+4*0.0625 = 5.5; var 5.5/7
    s = math.sqrt(5.5 / 7) + 1e-4
    approx(adv, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0, 0, 0], tol=1e-5)
    assert metrics["frac_reward_zero_std"] == 0.0  # the batch std is not zero


def test_no_scaling_keeps_raw_differences_and_still_reports_zero_std():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0])
    adv, metrics = group_advantages(rewards, num_generations=4, scale_rewards="none")
    approx(adv, [-1.5, -0.5, 0.5, 1.5, 0, 0, 0, 0])
    assert metrics["frac_reward_zero_std"] == 0.5


def test_all_groups_tied_gives_zero_advantages_and_frac_one():
    adv, metrics = group_advantages(torch.tensor([0.0, 0.0, 1.0, 1.0]), num_generations=2)
    approx(adv, [0, 0, 0, 0])
    assert metrics["frac_reward_zero_std"] == 1.0


def test_unscorable_completion_is_left_out_and_gets_zero():
    adv, _ = group_advantages(torch.tensor([1.0, NAN, 3.0]), num_generations=3)
    s = math.sqrt(2.0) + 1e-4  # mean 2 and std sqrt(2) of the two scored values
    approx(adv, [-1 / s, 0.0, 1 / s])


def test_weighted_sum_before_normalising():
    per_func = torch.tensor([[1.0, 0.5], [0.0, NAN], [NAN, NAN]])
    total = combine_rewards(per_func, torch.tensor([2.0, 1.0]))
    assert total[:2].tolist() == [2.5, 0.0]  # 2*1 + 1*0.5; None skipped
    assert math.isnan(total[2].item())  # every function said None
    approx(combine_rewards(per_func[:2, :1]), [1.0, 0.0])  # weights None = 1.0


def test_reward_metrics_names_and_values():
    per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    m = reward_metrics(per_func, torch.tensor([1.0, 0.5]), ["a", "b"])
    assert m["rewards/a/mean"] == 0.5 and m["rewards/b/mean"] == 0.5
    assert m["rewards/a/std"] == pytest.approx(math.sqrt(1 / 3))
    # totals 1, 0.5, 1.5, 0: mean 0.75, squared deviations .0625*2 + .5625*2 = 1.25, / 3
    assert m["reward"] == pytest.approx(0.75)
    assert m["reward_std"] == pytest.approx(math.sqrt(1.25 / 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.zeros(4), 2, "std")
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
