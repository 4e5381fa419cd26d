"""The pairwise preference losses, checked against values computed by hand."""

import math

import pytest
import torch

from thinkgym.trainer.losses import PREFERENCE_LOSSES, bradley_terry_loss, dpo_loss


def softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def pairs():
    # pair 1: chosen log-ratio 1, rejected -0.5 (h = 1.5); pair 2: chosen -1, rejected 0 (h = -1)
    chosen = torch.tensor([-1.0, -2.0], requires_grad=True)
    rejected = torch.tensor([-3.0, -1.0], requires_grad=True)
    return chosen, rejected, torch.tensor([-2.0, -1.0]), torch.tensor([-2.5, -1.0])


def test_dpo_sigmoid_loss_its_gradient_and_implicit_rewards_by_hand():
    chosen, rejected, ref_chosen, ref_rejected = pairs()
    loss, m = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    assert loss.item() == pytest.approx((softplus(-0.75) + softplus(0.5)) / 2, rel=1e-6)
    loss.backward()
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # d/d logp_w = -beta * sigmoid(-beta h) / P, and the opposite for the rejected one
    assert chosen.grad.tolist() == pytest.approx([-0.25 * sigmoid(-0.75), -0.25 * sigmoid(0.5)], rel=1e-6)
    assert rejected.grad.tolist() == pytest.approx([0.25 * sigmoid(-0.75), 0.25 * sigmoid(0.5)], rel=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(0.0) and m["rewards/rejected"].item() == pytest.approx(-0.125)
    assert m["rewards/margin"].item() == pytest.approx(0.125) and m["rewards/accuracy"].item() == 0.5
    assert (m["logps/chosen"].item(), m["logps/rejected"].item()) == (-1.5, -2.0)


def test_ipo_regresses_the_margin_to_one_over_two_beta():
    chosen, rejected, ref_chosen, ref_rejected = pairs()
    loss, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5, kind="ipo")
    assert loss.item() == pytest.approx(((1.5 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    at_target = dpo_loss(torch.tensor([0.1]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=5.0,
                         kind="ipo")[0]
    assert at_target.item() == pytest.approx(0.0, abs=1e-12)  # h = 1 / (2 beta): no push further


def test_dpo_rejects_what_it_cannot_honour():
    chosen, rejected, ref_chosen, ref_rejected = pairs()
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.0)
    with pytest.raises(ValueError, match="unknown preference loss 'hinge'"):
        dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, kind="hinge")
    assert sorted(PREFERENCE_LOSSES) == ["ipo", "sigmoid"]


def test_bradley_terry_loss_with_and_without_a_margin():
    chosen, rejected = torch.tensor([2.0, 0.0], requires_grad=True), torch.tensor([1.0, 1.0])
    loss, m = bradley_terry_loss(chosen, rejected)
    assert loss.item() == pytest.approx((softplus(-1) + softplus(1)) / 2, rel=1e-6)
    assert m["accuracy"].item() == 0.5 and m["margin"].item() == 0.0
    loss.backward()
    assert chosen.grad.tolist() == pytest.approx([-0.5 / (1 + math.e), -0.5 / (1 + math.exp(-1))], rel=1e-6)
    with_margin, _ = bradley_terry_loss(chosen, rejected, margin=torch.tensor([0.5, 0.0]))
    assert with_margin.item() == pytest.approx((softplus(-0.5) + softplus(1)) / 2, rel=1e-6)
