"""PPO with a critic (GAE, whitening, the value loss), CISPO and the loss registry,
against values worked out by hand."""

import inspect
import math
import subprocess
import sys

import pytest
import torch

from thinkgym.trainer.advantages import TOKEN_ESTIMATORS, gae, group_advantages, whiten
from thinkgym.trainer.algorithm_config import AlgorithmConfig, LOSS_NAMES, PRESETS, presets_table
from thinkgym.trainer.losses import LOSSES, cispo_loss, policy_loss, value_loss

NAN = float("nan")


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=tol, atol=tol)


# -- GAE ---------------------------------------------------------------------------------
# Row 0: 3 valid tokens. Row 1: 2 valid tokens, then padding holding garbage (NaN, 7)
# that must not leak: the value after the last valid token is 0.
REWARDS = torch.tensor([[1.0, 0.0, 2.0], [0.0, 4.0, NAN]])
VALUES = torch.tensor([[1.0, 2.0, 1.0], [2.0, 2.0, 7.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_gae_hand_values_with_padding():
    adv, ret = gae(REWARDS, VALUES, MASK, gamma=0.5, lam=0.5)  # gamma * lam = 0.25
    # row 0, backwards: t=2 delta = 2 + 0 - 1 = 1, A = 1
    #                   t=1 delta = 0 + 0.5 * 1 - 2 = -1.5, A = -1.5 + 0.25 * 1 = -1.25
    #                   t=0 delta = 1 + 0.5 * 2 - 1 = 1,    A = 1 + 0.25 * -1.25 = 0.6875
    # row 1:            t=1 delta = 4 + 0 - 2 = 2 (terminal), A = 2
    #                   t=0 delta = 0 + 0.5 * 2 - 2 = -1,  A = -1 + 0.25 * 2 = -0.5
    close(adv, [[0.6875, -1.25, 1.0], [-0.5, 2.0, 0.0]])
    close(ret, [[0.6875 + 1, -1.25 + 2, 1.0 + 1], [-0.5 + 2, 2.0 + 2, 0.0]])
    assert adv.dtype == ret.dtype == torch.float32


def test_gae_lam_0_is_the_one_step_td_error():
    adv, _ = gae(REWARDS, VALUES, MASK, gamma=0.5, lam=0.0)
    # r_t + gamma V_{t+1} - V_t, with V after the last valid token 0
    close(adv, [[1 + 0.5 * 2 - 1, 0 + 0.5 * 1 - 2, 2 - 1], [0 + 0.5 * 2 - 2, 4 - 2, 0.0]])


def test_gae_lam_1_is_the_monte_carlo_return_minus_the_value():
    adv, ret = gae(REWARDS, VALUES, MASK, gamma=0.5, lam=1.0)
    # returns-to-go: row 0: 2; 0 + 0.5 * 2 = 1; 1 + 0.5 * 1 = 1.5. row 1: 4; 0 + 0.5 * 4 = 2
    close(ret, [[1.5, 1.0, 2.0], [2.0, 4.0, 0.0]])
    close(adv, [[1.5 - 1, 1.0 - 2, 2.0 - 1], [2.0 - 2, 4.0 - 2, 0.0]])


def test_gae_limits_on_random_rows_against_their_closed_forms():
    gen = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 6, generator=gen), torch.randn(3, 6, generator=gen)
    lengths = [6, 4, 1]
    mask = torch.tensor([[1] * n + [0] * (6 - n) for n in lengths])
    gamma = 0.9
    adv1, ret1 = gae(r, v, mask, gamma, lam=1.0)
    adv0, _ = gae(r, v, mask, gamma, lam=0.0)
    for i, n in enumerate(lengths):
        for t in range(6):
            if t >= n:
                assert adv1[i, t] == ret1[i, t] == adv0[i, t] == 0
                continue
            mc = sum(gamma ** k * r[i, t + k] for k in range(n - t))
            close(ret1[i, t], mc)
            close(adv1[i, t], mc - v[i, t])
            next_v = v[i, t + 1] if t + 1 < n else 0.0
            close(adv0[i, t], r[i, t] + gamma * next_v - v[i, t])


def test_gae_computes_in_float32_and_takes_no_gradient():
    v = VALUES.to(torch.bfloat16).requires_grad_()
    adv, ret = gae(REWARDS.double(), v, MASK, gamma=1.0, lam=0.95)
    assert adv.dtype == ret.dtype == torch.float32 and not adv.requires_grad and not ret.requires_grad


@pytest.mark.parametrize("kwargs,message", [
    (dict(gamma=1.5, lam=0.9), "gamma must be in"),
    (dict(gamma=0.9, lam=-0.1), "lam must be in"),
])
def test_gae_rejects_bad_gamma_and_lam(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gae(REWARDS, VALUES, MASK, **kwargs)


def test_gae_rejects_bad_shapes_and_holes_in_the_mask():
    with pytest.raises(ValueError, match="one \\[N, T\\] shape"):
        gae(REWARDS, VALUES[:, :2], MASK, 1.0, 0.95)
    with pytest.raises(ValueError, match="contiguous prefix"):
        gae(REWARDS, VALUES, torch.tensor([[1, 0, 1], [1, 1, 0]]), 1.0, 0.95)


# -- whiten ------------------------------------------------------------------------------
def test_whiten_hand_values():
    x = torch.tensor([[2.0, 4.0], [6.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # valid 2, 4, 6: mean 4, unbiased var (4 + 0 + 4) / 2 = 4, sd 2
    close(whiten(x, mask), [[-1.0, 0.0], [1.0, 0.0]])
    close(whiten(x, mask, shift_mean=False), [[3.0, 4.0], [5.0, 0.0]])
    close(whiten(x, mask, eps=5.0), [[-2 / 3, 0.0], [2 / 3, 0.0]])  # (x - 4) / sqrt(4 + 5)


def test_whiten_rejects_fewer_than_two_valid_entries_and_bad_shapes():
    with pytest.raises(ValueError, match="at least 2 valid entries"):
        whiten(torch.ones(2, 2), torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match="share one shape"):
        whiten(torch.ones(2, 2), torch.ones(2, 3))


# -- value loss --------------------------------------------------------------------------
V = torch.tensor([[1.0, 2.0, 0.0], [3.0, 9.0, 9.0]])
V_OLD = torch.tensor([[1.0, 1.0, 0.5], [2.0, 9.0, 9.0]])
RET = torch.tensor([[2.0, 2.5, -1.0], [1.0, NAN, NAN]])
V_MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


def test_value_loss_unclipped_hand_values():
    loss, m = value_loss(V, V_OLD, RET, V_MASK)
    # 0.5 (V - R)^2: 0.5, 0.125, 0.5, 2 -> token mean 3.125 / 4
    close(loss, 3.125 / 4)
    close(m["value_clip_frac"], 0.0)
    close(m["value_mean"], (1 + 2 + 0 + 3) / 4)


def test_value_loss_clipped_hand_values_and_gradient():
    v = V.clone().requires_grad_()
    loss, m = value_loss(v, V_OLD, RET, V_MASK, clip=0.2)
    # (0,0): V - V_old = 0 -> both terms (1 - 2)^2 = 1: 0.5; not clipped (a tie)
    # (0,1): V - V_old = 1 -> 1.2; (1.2 - 2.5)^2 = 1.69 > (2 - 2.5)^2 = 0.25: 0.845, clipped
    # (0,2): V - V_old = -0.5 -> 0.3; (0.3 + 1)^2 = 1.69 > (0 + 1)^2 = 1: 0.845, clipped
    # (1,0): V - V_old = 1 -> 2.2; (2.2 - 1)^2 = 1.44 < (3 - 1)^2 = 4: 2.0, not clipped
    close(loss, (0.5 + 0.845 + 0.845 + 2.0) / 4)
    close(m["value_clip_frac"], 2 / 4)
    loss.backward()
    # where the clipped term wins V - V_old is clamped: no gradient; else (V - R) / 4
    close(v.grad, [[(1 - 2) / 4, 0.0, 0.0], [(3 - 1) / 4, 0.0, 0.0]])
    assert all(t.dim() == 0 and not t.requires_grad for t in m.values())


def test_value_loss_seq_mean_aggregation():
    loss, _ = value_loss(V, V_OLD, RET, V_MASK, agg="seq-mean-token-mean")
    close(loss, ((0.5 + 0.125 + 0.5) / 3 + 2.0) / 2)


def test_explained_variance_hand_values():
    _, m = value_loss(V, V_OLD, RET, V_MASK)
    # R = 2, 2.5, -1, 1: mean 1.125, sum of squared deviations
    #   0.875^2 + 1.375^2 + 2.125^2 + 0.125^2 = 7.1875
    # R - V = 1, 0.5, -1, -2: mean -0.375, sum of squared deviations
    #   1.375^2 + 0.875^2 + 0.625^2 + 1.625^2 = 5.6875   (population: both / 4)
    close(m["explained_variance"], 1 - 5.6875 / 7.1875)
    _, perfect = value_loss(RET.nan_to_num(), V_OLD, RET, V_MASK)
    close(perfect["explained_variance"], 1.0)
    _, flat = value_loss(V, V_OLD, torch.full_like(V, 3.0), V_MASK)  # Var(R) = 0: defined as 0
    close(flat["explained_variance"], 0.0)


def test_value_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="value clip must be None or > 0"):
        value_loss(V, V_OLD, RET, V_MASK, clip=0.0)
    with pytest.raises(ValueError, match="one \\[N, T\\] shape"):
        value_loss(V, V_OLD, RET[:, :2], V_MASK)
    with pytest.raises(ValueError, match="unknown aggregation"):
        value_loss(V, V_OLD, RET, V_MASK, agg="sum")


# -- CISPO -------------------------------------------------------------------------------
LN2 = math.log(2.0)
# ratios exp(logp - old): row 0: 2, 0.5, 1; row 1: 1, then padding (-inf log-probs)
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -math.inf, -math.inf]])
OLD = torch.tensor([[-1.0 - LN2, -2.0 + LN2, -0.5], [-3.0, -math.inf, -math.inf]])
ADV = torch.tensor([1.0, -2.0])
C_MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


def test_cispo_hand_values_and_gradient():
    logp = LOGP.clone().requires_grad_()
    loss, m = cispo_loss(logp, OLD, ADV, C_MASK, clip_low=0.2, clip_high=0.28, agg="token-mean")
    # weights clip(r, 0.8, 1.28): 1.28, 0.8, 1, 1; l = -w A logp:
    #   -1.28 * 1 * -1 = 1.28, -0.8 * 1 * -2 = 1.6, -1 * 1 * -0.5 = 0.5, -1 * -2 * -3 = -6
    close(loss, (1.28 + 1.6 + 0.5 - 6.0) / 4)
    loss.backward()
    # d loss / d logp = -w A / 4, on every valid token (the clipped ones too), 0 on padding
    close(logp.grad, [[-1.28 / 4, -0.8 / 4, -1.0 / 4], [2.0 / 4, 0.0, 0.0]])
    close(m["clip_frac_high"], 1 / 4)  # r = 2 > 1.28
    close(m["clip_frac_low"], 1 / 4)   # r = 0.5 < 0.8
    # k3: (2 - 1 - ln 2) + (0.5 - 1 + ln 2) = 0.5 over 4 tokens
    close(m["approx_kl"], 0.5 / 4)
    assert all(t.dim() == 0 and not t.requires_grad for t in m.values())


def test_cispo_keeps_the_gradient_ppo_clip_drops():
    # r = 2 with A > 0 leaves PPO's trust region: its gradient is 0 there, CISPO's is -1.28 / 4
    logp = LOGP.clone().requires_grad_()
    policy_loss(logp, OLD, ADV, C_MASK, clip_low=0.2, clip_high=0.28, agg="token-mean")[0].backward()
    assert logp.grad[0, 0] == 0


def test_cispo_without_a_lower_bound():
    # MiniMax-M1: clip_low = 1, the weight 0.5 of r = 0.5 stays 0.5
    loss, m = cispo_loss(LOGP, OLD, ADV, C_MASK, clip_low=1.0, clip_high=0.28, agg="token-mean")
    close(loss, (1.28 + 0.5 * 2 + 0.5 - 6.0) / 4)
    close(m["clip_frac_low"], 0.0)


def test_cispo_per_token_advantages_and_seq_mean():
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 5.0, 5.0]])  # same as ADV on the valid tokens
    loss, _ = cispo_loss(LOGP, OLD, adv, C_MASK, clip_low=0.2, clip_high=0.28, agg="seq-mean-token-mean")
    close(loss, ((1.28 + 1.6 + 0.5) / 3 + -6.0) / 2)


@pytest.mark.parametrize("kwargs,message", [
    (dict(dual_clip=3.0), "dual_clip does not apply to cispo"),
    (dict(ratio_level="sequence"), "ratio_level must be 'token'"),
    (dict(clip_low=1.5), "0 <= clip_low <= 1"),
    (dict(clip_high=-0.1), "clip_high >= 0"),
    (dict(agg="sum"), "unknown aggregation"),
])
def test_cispo_rejects_what_does_not_apply(kwargs, message):
    args = dict(clip_low=0.2, clip_high=0.28, agg="token-mean") | kwargs
    with pytest.raises(ValueError, match=message):
        cispo_loss(LOGP, OLD, ADV, C_MASK, **args)


def test_cispo_rejects_bad_shapes():
    with pytest.raises(ValueError, match="advantages must be"):
        cispo_loss(LOGP, OLD, torch.ones(3), C_MASK, clip_low=0.2, clip_high=0.2, agg="token-mean")


# -- the loss registry -------------------------------------------------------------------
CONTRACT = {"clip_low", "clip_high", "dual_clip", "agg", "norm_length", "ratio_level"}


def test_loss_registry_names_and_config_names_agree():
    assert LOSS_NAMES == tuple(LOSSES)
    assert LOSSES["ppo_clip"] is policy_loss and LOSSES["cispo"] is cispo_loss


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_keeps_one_contract(name):
    fn = LOSSES[name]
    params = inspect.signature(fn).parameters
    assert [p.name for p in params.values()][:4] == ["logprobs", "old_logprobs", "advantages", "mask"]
    assert {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY} == CONTRACT
    kwargs = dict(clip_low=0.2, clip_high=0.28, dual_clip=None, agg="seq-mean-token-sum-norm",
                  norm_length=4.0, ratio_level="token")
    logp = LOGP.clone().requires_grad_()
    loss, metrics = fn(logp, OLD, ADV, C_MASK, **kwargs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert {"clip_frac_low", "clip_frac_high", "approx_kl"} <= set(metrics)
    close(metrics["approx_kl"], 0.5 / 4)  # one definition for both


# -- configuration -----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,key", [
    (dict(loss="dpo"), "algorithm.loss"),
    (dict(estimator="gea"), "algorithm.estimator"),
    (dict(gamma=1.5), "algorithm.gamma"),
    (dict(gamma=-0.1), "algorithm.gamma"),
    (dict(lam=1.01), "algorithm.lam"),
    (dict(whiten_advantages="yes"), "algorithm.whiten_advantages"),
    (dict(vf_clip=0.0), "algorithm.vf_clip"),
    (dict(vf_clip=-1.0), "algorithm.vf_clip"),
    (dict(clip_low=1.0), "algorithm.clip_low"),  # ppo_clip: [0, 1)
    (dict(loss="cispo", clip_low=1.5), "algorithm.clip_low"),
    (dict(loss="cispo", dual_clip=3.0), "algorithm.dual_clip"),
    (dict(loss="cispo", ratio_level="sequence"), "algorithm.ratio_level"),
])
def test_config_rejects_bad_new_fields(kwargs, key):
    with pytest.raises(ValueError, match=key):
        AlgorithmConfig(**kwargs)


def test_config_accepts_gae_and_cispo():
    assert AlgorithmConfig(objective="ppo", estimator="gae", vf_clip=None).vf_clip is None
    with pytest.raises(ValueError, match="algorithm.estimator: got 'gae'.*objective ppo"):  # a critic's estimator
        AlgorithmConfig(estimator="gae")
    with pytest.raises(ValueError, match="algorithm.estimator: got 'grpo', expected \\['gae'\\] for objective ppo"):
        AlgorithmConfig(objective="ppo")
    with pytest.raises(ValueError, match="algorithm.objective: got 'nope'"):
        AlgorithmConfig(objective="nope")
    assert AlgorithmConfig(loss="cispo", clip_low=1.0).clip_low == 1.0
    with pytest.raises(ValueError, match="'gae'"):  # the error lists the token-level estimator too
        AlgorithmConfig(estimator="gea")


def test_group_advantages_rejects_gae():
    assert TOKEN_ESTIMATORS == ("gae",)
    with pytest.raises(ValueError, match="needs a critic"):
        group_advantages(torch.zeros(4), 2, "gae")


def test_ppo_and_cispo_presets():
    ppo, cispo = PRESETS["ppo"], PRESETS["cispo"]
    assert (ppo.estimator, ppo.loss, ppo.clip_low, ppo.clip_high, ppo.agg, ppo.kl, ppo.beta) == (
        "gae", "ppo_clip", 0.2, 0.2, "token-mean", "k1", 0.05)
    assert (ppo.gamma, ppo.lam, ppo.whiten_advantages, ppo.vf_clip) == (1.0, 0.95, True, 0.2)
    assert "1707.06347" in ppo.paper and "2203.02155" in ppo.paper
    assert (cispo.estimator, cispo.loss, cispo.agg, cispo.beta, cispo.clip_low, cispo.clip_high) == (
        "grpo", "cispo", "token-mean", 0.0, 1.0, 4.0)
    assert "2506.13585" in cispo.paper
    assert all(c.loss == "ppo_clip" for n, c in PRESETS.items() if n != "cispo")


def test_presets_table_has_a_loss_column():
    lines = presets_table().splitlines()
    assert lines[0].startswith("| preset | advantages | loss |")
    assert all(line.count("|") == 11 for line in lines)
    assert any("`cispo`" in line and "| cispo |" in line for line in lines)
    assert any("`ppo`" in line and "in reward" in line for line in lines)


def test_config_and_advantages_modules_stay_torch_free():
    code = ("import sys; import thinkgym.trainer.advantages, thinkgym.trainer.algorithm_config; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
