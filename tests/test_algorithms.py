"""Advantage estimators, the policy loss, KL penalties and presets, against hand-computed values."""

import dataclasses
import math

import pytest
import torch

from thinkgym.trainer.advantages import ESTIMATORS, group_advantages
from thinkgym.trainer.algorithm_config import AlgorithmConfig, PRESETS, preset, presets_table
from thinkgym.trainer.losses import aggregate, informative_groups, kl_penalty, policy_loss

# Two groups of G=3: rewards 0, 1, 2 (mean 1, unbiased std 1) and 3, 3, 3 (all equal).
REWARDS = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0, 3.0])


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=tol, atol=tol)


def test_grpo_advantages_hand_values():
    close(group_advantages(REWARDS, 3, "grpo"), [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    # 1, 0, 0, 0: mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    close(group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "grpo"), [1.5, -0.5, -0.5, -0.5])


def test_grpo_all_equal_group_is_zero_not_nan():
    adv = group_advantages(torch.ones(8), 4, "grpo")
    assert torch.equal(adv, torch.zeros(8))


def test_dr_grpo_advantages_hand_values():
    close(group_advantages(REWARDS, 3, "dr_grpo"), [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    close(group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "dr_grpo"), [0.75, -0.25, -0.25, -0.25])


def test_rloo_advantages_hand_values():
    # 0 - (1 + 2) / 2 = -1.5;  1 - (0 + 2) / 2 = 0;  2 - (0 + 1) / 2 = 1.5
    close(group_advantages(REWARDS, 3, "rloo"), [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])
    close(group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "rloo"), [1.0, -1 / 3, -1 / 3, -1 / 3])


def test_reinforce_pp_advantages_hand_values():
    # group-centred: -1, 0, 1, 0, 0, 0; batch mean 0, population std sqrt(2/6)
    s = math.sqrt(3.0)
    close(group_advantages(REWARDS, 3, "reinforce_pp"), [-s, 0.0, s, 0.0, 0.0, 0.0])


def test_estimators_are_registered_and_keep_dtype_float():
    assert set(ESTIMATORS) == {"grpo", "dr_grpo", "rloo", "reinforce_pp"}
    adv = group_advantages(torch.tensor([1, 0, 1, 1]), 2, "rloo")
    assert adv.dtype == torch.float32
    close(adv, [1.0, -1.0, 0.0, 0.0])


def test_group_advantages_validates():
    with pytest.raises(ValueError, match="choose one of"):
        group_advantages(REWARDS, 3, "ppo")
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(REWARDS.view(2, 3), 3)
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(REWARDS, 4)
    for name in ("grpo", "rloo"):
        with pytest.raises(ValueError, match="group_size >= 2"):
            group_advantages(REWARDS, 1, name)


def test_informative_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert informative_groups(rewards, 4).tolist() == [True, False, False]


# A ragged batch: the second sequence has two valid tokens; padding holds junk.
VALUES = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, -100.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


def test_aggregations_on_ragged_mask():
    close(aggregate(VALUES, MASK, "token-mean"), 21 / 6)  # (1+2+3+4+5+6) / 6
    close(aggregate(VALUES, MASK, "seq-mean-token-mean"), (2.5 + 5.5) / 2)
    close(aggregate(VALUES, MASK, "seq-mean-token-sum-norm"), (10 / 4 + 11 / 4) / 2)  # norm_length = T = 4
    close(aggregate(VALUES, MASK, "seq-mean-token-sum-norm", norm_length=8), (10 / 8 + 11 / 8) / 2)


def test_aggregations_skip_fully_masked_sequences():
    values = torch.cat([VALUES, torch.full((1, 4), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 4, dtype=MASK.dtype)])
    close(aggregate(values, mask, "token-mean"), 21 / 6)
    close(aggregate(values, mask, "seq-mean-token-mean"), 4.0)
    close(aggregate(values, mask, "seq-mean-token-sum-norm"), 21 / 8)
    assert aggregate(values, torch.zeros_like(mask), "seq-mean-token-mean").item() == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        aggregate(values, mask, "sum")


def logs(ratios):
    return torch.log(torch.tensor(ratios, dtype=torch.float64))


def test_policy_loss_unclipped_is_minus_advantage_times_ratio():
    ratios = [[1.1, 0.95], [1.0, 0.85]]
    lp = logs(ratios).requires_grad_()
    old = torch.zeros(2, 2, dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0])
    loss, metrics = policy_loss(lp, old, adv, torch.ones(2, 2))
    close(loss, (-2.2 - 1.9 + 1.0 + 0.85) / 4)
    assert metrics["clip_frac_low"].item() == 0.0 and metrics["clip_frac_high"].item() == 0.0
    loss.backward()
    # d(-A r)/d logp = -A r, over the 4 tokens
    close(lp.grad, [[-2.2 / 4, -1.9 / 4], [1.0 / 4, 0.85 / 4]])


def test_policy_loss_seq_mean_on_ragged_mask():
    ratios = [[1.1, 0.9, 1.05], [1.0, 1.15, 7.0]]  # the 7.0 is padding
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -2.0])
    old = torch.zeros(2, 3, dtype=torch.float64)
    loss, _ = policy_loss(logs(ratios), old, adv, mask, agg="seq-mean-token-mean")
    close(loss, (-(1.1 + 0.9 + 1.05) / 3 + 2 * (1.0 + 1.15) / 2) / 2)
    loss, _ = policy_loss(logs(ratios), old, adv, mask, agg="seq-mean-token-sum-norm", norm_length=10)
    close(loss, (-(1.1 + 0.9 + 1.05) / 10 + 2 * (1.0 + 1.15) / 10) / 2)


def test_policy_loss_clip_higher_is_asymmetric():
    # A = +1: 1.25 passes under clip_high 0.28, 1.4 is clipped to 1.28, 0.7 is not clipped (A > 0).
    # A = -1: 0.7 is clipped to 0.8, 1.4 is not clipped (A < 0), 0.9 passes.
    ratios = [[1.25, 1.4, 0.7], [0.7, 1.4, 0.9]]
    lp = logs(ratios).requires_grad_()
    old = torch.zeros(2, 3, dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0])
    loss, metrics = policy_loss(lp, old, adv, torch.ones(2, 3), clip_low=0.2, clip_high=0.28)
    close(loss, (-1.25 - 1.28 - 0.7 + 0.8 + 1.4 + 0.9) / 6)
    close(metrics["clip_frac_high"], 1 / 6)
    close(metrics["clip_frac_low"], 1 / 6)
    loss.backward()
    assert lp.grad[0, 1] == 0 and lp.grad[1, 0] == 0  # clipped tokens get no gradient
    assert (lp.grad[0, [0, 2]] != 0).all() and (lp.grad[1, 1:] != 0).all()
    # the symmetric 0.2 clip also clips the 1.25
    loss, metrics = policy_loss(logs(ratios), old, adv, torch.ones(2, 3), clip_low=0.2, clip_high=0.2)
    close(loss, (-1.2 - 1.2 - 0.7 + 0.8 + 1.4 + 0.9) / 6)
    close(metrics["clip_frac_high"], 2 / 6)


def test_policy_loss_dual_clip_bounds_negative_advantages():
    ratios = [[5.0, 2.0], [5.0, 1.0]]
    lp = logs(ratios).requires_grad_()
    old = torch.zeros(2, 2, dtype=torch.float64)
    adv = torch.tensor([-1.0, 1.0])
    loss, metrics = policy_loss(lp, old, adv, torch.ones(2, 2), dual_clip=3.0)
    # A=-1: min(max(5, 1.2), 3) = 3; max(2, 1.2) = 2.  A=+1: max(-5, -1.2) = -1.2; -1.
    close(loss, (3.0 + 2.0 - 1.2 - 1.0) / 4)
    close(metrics["dual_clip_frac"], 1 / 4)
    loss.backward()
    assert lp.grad[0, 0] == 0 and lp.grad[0, 1] != 0
    loss, metrics = policy_loss(logs(ratios), old, adv, torch.ones(2, 2))
    close(loss, (5.0 + 2.0 - 1.2 - 1.0) / 4)
    assert "dual_clip_frac" not in metrics


def test_policy_loss_approx_kl_is_k3_of_the_token_ratio():
    lp = torch.tensor([[0.1, -0.2, 5.0]], dtype=torch.float64)
    _, metrics = policy_loss(lp, torch.zeros_like(lp), torch.tensor([1.0]), torch.tensor([[1, 1, 0]]))
    close(metrics["approx_kl"], ((math.exp(0.1) - 1.1) + (math.exp(-0.2) - 0.8)) / 2)
    assert not metrics["approx_kl"].requires_grad


def test_policy_loss_token_advantages_and_validation():
    lp = torch.zeros(2, 2)
    adv = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    loss, _ = policy_loss(lp, lp, adv, torch.ones(2, 2))
    close(loss, -2.5)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(lp, lp, torch.ones(3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="shape"):
        policy_loss(lp, lp, torch.ones(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(lp, lp, torch.ones(2), torch.ones(2, 2), dual_clip=0.5)
    with pytest.raises(ValueError, match="ratio_level"):
        policy_loss(lp, lp, torch.ones(2), torch.ones(2, 2), ratio_level="word")


# GSPO: sequence 0 has token log-ratios 0.1, 0.3 (s = e^0.2); sequence 1 has -0.4 then padding.
GSPO_LOG_RATIOS = torch.tensor([[0.1, 0.3], [-0.4, 3.0]], dtype=torch.float64)
GSPO_MASK = torch.tensor([[1, 1], [1, 0]])
GSPO_ADV = torch.tensor([1.0, 2.0])


def test_sequence_ratio_is_exp_of_mean_log_ratio():
    old = torch.tensor([[-1.0, -2.0], [-0.5, -0.7]], dtype=torch.float64)
    lp = (old + GSPO_LOG_RATIOS).requires_grad_()
    loss, _ = policy_loss(lp, old, GSPO_ADV, GSPO_MASK, clip_low=0.5, clip_high=0.5,
                          agg="seq-mean-token-mean", ratio_level="sequence")
    s0, s1 = math.exp(0.2), math.exp(-0.4)
    close(loss, -(1.0 * s0 + 2.0 * s1) / 2)
    loss.backward()
    # GSPO gradient: d/dlogp_t of -(1/N) A_i s_i = -(1/N) A_i s_i / |y_i|, the same for every token
    close(lp.grad, [[-s0 / 4, -s0 / 4], [-s1, 0.0]])


def test_sequence_ratio_gradient_matches_finite_differences():
    old = torch.tensor([[-1.0, -2.0, -0.3], [-0.5, -0.7, -1.1]], dtype=torch.float64)
    lp = (old + torch.tensor([[0.05, -0.02, 0.04], [-0.1, 0.03, 9.0]], dtype=torch.float64)).requires_grad_()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([0.7, -1.3])
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        def f(x):
            return policy_loss(x, old, adv, mask, clip_low=0.2, clip_high=0.2, agg=agg, ratio_level="sequence")[0]
        assert torch.autograd.gradcheck(f, (lp,))
    loss, _ = policy_loss(lp, old, adv, mask, ratio_level="sequence")
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.isfinite(grad).all()


def test_sequence_ratio_clips_whole_sequences():
    old = torch.zeros(2, 2, dtype=torch.float64)
    lp = torch.tensor([[0.0, 1e-3], [1e-4, 1e-4]], dtype=torch.float64).requires_grad_()
    loss, metrics = policy_loss(lp, old, torch.tensor([1.0, 1.0]), torch.ones(2, 2),
                                clip_low=3e-4, clip_high=4e-4, ratio_level="sequence")
    # s_0 = e^5e-4 > 1 + 4e-4 is clipped; s_1 = e^1e-4 is not.
    close(loss, -((1 + 4e-4) * 2 + math.exp(1e-4) * 2) / 4, tol=1e-9)
    close(metrics["clip_frac_high"], 0.5)
    loss.backward()
    assert (lp.grad[0] == 0).all() and (lp.grad[1] != 0).all()


def test_kl_penalty_hand_values():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])
    close(kl_penalty(logp, ref, "k1"), [0.5, -1.0])
    close(kl_penalty(logp, ref, "k2"), [0.125, 0.5])
    close(kl_penalty(logp, ref, "k3"), [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 2])
    with pytest.raises(ValueError, match="choose one of"):
        kl_penalty(logp, ref, "k4")


def test_k3_is_non_negative_clamped_and_finite():
    g = torch.Generator().manual_seed(0)
    logp = (torch.randn(1000, generator=g) * 3).requires_grad_()
    ref = torch.randn(1000, generator=g) * 3
    k3 = kl_penalty(logp, ref, "k3")
    assert (k3 >= 0).all() and (k3 <= 10).all()
    extreme = torch.tensor([-200.0, 0.0], requires_grad=True)
    out = kl_penalty(extreme, torch.tensor([0.0, -200.0]), "k3")
    close(out, [10.0, 10.0])
    out.sum().backward()
    assert torch.isfinite(extreme.grad).all()


def test_kl_term_aggregates_like_the_loss():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    close(aggregate(kl_penalty(logp, ref, "k1"), mask, "seq-mean-token-mean"), ((0.5 - 1.0) / 2 + 0.0) / 2)


def test_presets_are_complete_and_valid():
    assert set(PRESETS) == {"grpo", "dr_grpo", "dapo", "rloo", "gspo", "ppo", "cispo"}
    for name, cfg in PRESETS.items():
        assert isinstance(cfg, AlgorithmConfig) and cfg.paper, name
        assert AlgorithmConfig(**dataclasses.asdict(cfg)) == cfg
    assert PRESETS["grpo"] == preset("grpo")
    grpo, dr, dapo, rloo, gspo = (PRESETS[n] for n in ("grpo", "dr_grpo", "dapo", "rloo", "gspo"))
    assert (grpo.estimator, grpo.agg, grpo.kl, grpo.beta, grpo.clip_low, grpo.clip_high) == (
        "grpo", "seq-mean-token-mean", "k3", 0.04, 0.2, 0.2)
    assert (dr.estimator, dr.agg, dr.beta, dr.clip_low, dr.clip_high) == (
        "dr_grpo", "seq-mean-token-sum-norm", 0.0, 0.2, 0.2)
    assert (dapo.estimator, dapo.agg, dapo.beta, dapo.clip_low, dapo.clip_high) == (
        "grpo", "token-mean", 0.0, 0.2, 0.28)
    assert dapo.dynamic_sampling and dapo.overlong == "soft_penalty"
    assert (rloo.estimator, rloo.beta) == ("rloo", 0.0)
    assert (gspo.ratio_level, gspo.clip_low, gspo.clip_high, gspo.agg, gspo.beta) == (
        "sequence", 3e-4, 4e-4, "seq-mean-token-mean", 0.0)
    assert not any(c.dynamic_sampling for n, c in PRESETS.items() if n != "dapo")


def test_preset_overrides_and_validation():
    cfg = preset("dapo", beta=0.01, kl="k2")
    assert (cfg.beta, cfg.kl, cfg.clip_high) == (0.01, "k2", 0.28)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.beta = 1.0
    with pytest.raises(ValueError, match="choose one of"):
        preset("trpo")
    with pytest.raises(ValueError, match="unknown algorithm option"):
        preset("grpo", temperature=1.0)
    with pytest.raises(ValueError, match="algorithm.agg"):
        preset("grpo", agg="sum")
    with pytest.raises(ValueError, match="algorithm.overlong"):
        AlgorithmConfig(overlong="truncate")
    with pytest.raises(ValueError, match="algorithm.dual_clip"):
        AlgorithmConfig(dual_clip=1.0)


def test_presets_table_lists_every_preset():
    lines = presets_table().splitlines()
    assert len(lines) == 2 + len(PRESETS)
    assert all(line.count("|") == 11 for line in lines)
    for name, cfg in PRESETS.items():
        assert any(f"`{name}`" in line and cfg.paper in line for line in lines)
    assert "0.2 / 0.28" in presets_table()
