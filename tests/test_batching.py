"""Length bucketing and column trimming: the micro-batches skip padding, and the
log-probs, the update and the returned row order are those of the full width."""

import pytest
import torch

from thinkgym.trainer import distributed
from thinkgym.trainer.batching import micro_batches, real_lengths, trim
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import Batch, batch_logprobs
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.engines.rollouts import Rollouts
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.models.policy import load_model

PAD = 0


def rollouts(prompt_lengths, completion_lengths, vocab=40, seed=0) -> Rollouts:
    """Random tokens laid out as ``[left-padded prompt | right-padded completion]``."""
    p, t = max(prompt_lengths), max(completion_lengths)
    prompt_mask = torch.tensor([[0] * (p - k) + [1] * k for k in prompt_lengths])
    completion_mask = torch.tensor([[1] * k + [0] * (t - k) for k in completion_lengths])
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, vocab, prompt_mask.shape, generator=g).masked_fill(prompt_mask == 0, PAD)
    completion_ids = torch.randint(3, vocab, completion_mask.shape, generator=g).masked_fill(completion_mask == 0, PAD)
    n = len(prompt_lengths)
    return Rollouts(prompt_ids, prompt_mask, completion_ids, completion_mask, [""] * n, torch.zeros(n, dtype=torch.bool))


def test_micro_batches_bucket_by_length_and_trim_padding_columns():
    r = rollouts([2, 5, 1, 3], [7, 1, 3, 2])  # real lengths 9, 6, 4, 5; full width 5 + 7
    assert real_lengths(r).tolist() == [9, 6, 4, 5]
    first, second = micro_batches(r, torch.arange(4), 2)
    assert first.rows.tolist() == [0, 1] and second.rows.tolist() == [3, 2]  # longest first
    assert [x.shape[1] for x in first.inputs] == [5, 5, 7, 7]  # the longest prompt and completion: nothing to drop
    assert [x.shape[1] for x in second.inputs] == [3, 3, 3, 3]  # prompts of 3 and 1, completions of 2 and 3
    prompt_ids, prompt_mask, completion_ids, completion_mask = second.inputs
    assert torch.equal(prompt_ids, r.prompt_ids[[3, 2], 2:]) and torch.equal(prompt_mask, r.prompt_mask[[3, 2], 2:])
    assert torch.equal(completion_ids, r.completion_ids[[3, 2], :3])
    assert torch.equal(completion_mask, r.completion_mask[[3, 2], :3])
    assert prompt_mask.sum() == 4 and completion_mask.sum() == 5  # only padding was dropped
    assert (second.computed, second.full) == (2 * 6, 2 * 12) and (first.computed, first.full) == (24, 24)
    per_token = torch.arange(28.0).view(4, 7)
    assert torch.equal(second.take(per_token), per_token[[3, 2], :3])
    assert torch.equal(second.take(torch.tensor([10.0, 11.0, 12.0, 13.0])), torch.tensor([13.0, 12.0]))


def test_bucketing_only_reorders_the_given_rows():
    r = rollouts([1, 4, 2, 4, 3, 1], [5, 1, 6, 2, 2, 3])
    rows = torch.tensor([4, 0, 5, 2])  # a shuffled mini-batch: its members stay its members
    micros = micro_batches(r, rows, 3)
    assert sorted(torch.cat([m.rows for m in micros]).tolist()) == sorted(rows.tolist())
    assert [len(m.rows) for m in micros] == [3, 1]
    plain = micro_batches(r, rows, 3, bucket=False)  # the full-width cut, in the given order
    assert [m.rows.tolist() for m in plain] == [[4, 0, 5], [2]]
    assert all(m.computed == m.full == len(m.rows) * 10 for m in plain)


def test_trim_keeps_a_column_each_side_of_an_empty_micro_batch():
    r = rollouts([2, 3], [0, 4])
    empty = trim(r, torch.tensor([0]))
    assert [x.shape[1] for x in empty.inputs] == [2, 2, 1, 1]
    r.prompt_mask[0] = 0
    assert trim(r, torch.tensor([0])).inputs[0].shape[1] == 1


@pytest.fixture(scope="module")
def model(micro_model):
    return load_model(micro_model)[0].eval()


@pytest.fixture(scope="module")
def uneven():
    """Eight rows, prompts of 2 to 14 tokens and completions of 1 to 24: mostly padding at full width."""
    return rollouts([14, 2, 3, 12, 5, 2, 9, 4], [1, 24, 3, 20, 2, 6, 4, 1], seed=1)


def test_token_logprobs_of_a_trimmed_micro_batch_equal_the_full_width(model, uneven):
    with torch.no_grad():
        full, full_entropy = token_logprobs(model, uneven.prompt_ids, uneven.prompt_mask, uneven.completion_ids,
                                            uneven.completion_mask, 0.8, True)
        for rows in ([1, 3], [0, 4, 7], [2, 5, 6]):
            mb = trim(uneven, torch.tensor(rows))
            assert mb.computed < mb.full
            got, entropy = token_logprobs(model, *mb.inputs, 0.8, True)
            # equal up to float32 summation order (other widths block the matmuls differently): a few ulps at |x| ~ 8
            assert torch.allclose(got, mb.take(full), atol=1e-5, rtol=0)
            assert torch.allclose(entropy, mb.take(full_entropy), atol=1e-5, rtol=0)


def test_batch_logprobs_come_back_in_row_order_at_full_width(model, uneven):
    bucketed = batch_logprobs(model, uneven, 3, 1.0)
    plain = batch_logprobs(model, uneven, 3, 1.0, bucket=False)
    assert bucketed.shape == uneven.completion_ids.shape
    assert torch.allclose(bucketed, plain, atol=1e-6, rtol=0)
    assert (bucketed[uneven.completion_mask == 0] == 0).all() and (bucketed[uneven.completion_mask == 1] != 0).all()


@pytest.mark.parametrize("overrides", [
    ["algorithm.preset=grpo"],  # seq-mean-token-mean, per-row advantages
    ["algorithm.preset=grpo", "mask_longest"],  # the longest rows out of the loss, as truncated ones under mask_truncated
    ["algorithm.preset=dr_grpo", "algorithm.beta=0.1", "train.epochs_per_batch=2"],  # KL to the reference, two epochs
    ["algorithm.preset=dapo", "per_token_advantages"],  # token-mean, [N, T] advantages (as under TIS)
], ids=["grpo", "grpo-masked", "dr_grpo-kl", "dapo-per-token"])
def test_bucketed_update_matches_the_full_width_update(micro_model, model, uneven, overrides):
    per_token, mask_longest = "per_token_advantages" in overrides, "mask_longest" in overrides
    settings = [o for o in overrides if "=" in o]
    g = torch.Generator().manual_seed(2)
    advantages = torch.randn(8, generator=g)
    if per_token:
        advantages = advantages[:, None] * torch.rand(uneven.completion_ids.shape, generator=g)
    old = batch_logprobs(model, uneven, 8, 1.0)
    r = Rollouts(**{**vars(uneven), "old_logprobs": old + 0.05 * uneven.completion_mask,  # ratios off 1
                    "ref_logprobs": old - 0.1 * uneven.completion_mask})
    loss_mask = uneven.completion_mask.clone()
    if mask_longest:  # bucketing puts them together: a micro-batch with no valid token at all
        loss_mask[[1, 3]] = 0
    results = {}
    for bucket in (True, False):
        # Two mini-batches of 4 from the shuffle, two micro-batches each: bucketing regroups them.
        config = load_config(None, ["train.prompts_per_step=4", "train.group_size=2", "train.mini_batch_size=4",
                                    "train.micro_batch_size=2", "sampling.max_new_tokens=24",
                                    f"train.bucket_by_length={bucket}", *settings])
        policy = load_model(micro_model)[0]
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        batch = Batch(r, torch.zeros(8), loss_mask, {}, [], advantages)
        stats = update_policy(distributed.wrap(policy, "cpu"), optimizer, scheduler, batch, config,
                              torch.Generator().manual_seed(0))
        results[bucket] = (stats, [p.detach().clone() for p in policy.parameters()])
    (stats, params), (plain_stats, plain_params) = results[True], results[False]
    moved = max((a - b).abs().max().item() for a, b in zip(plain_params, load_model(micro_model)[0].parameters()))
    assert moved > 1e-3  # the update did something to compare
    for a, b in zip(params, plain_params):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    for key in ("loss", "grad_norm", "approx_kl", "entropy"):
        assert stats[key] == pytest.approx(plain_stats[key], rel=1e-5, abs=1e-6)
    assert plain_stats["tokens/computed"] == plain_stats["tokens/full_width"] and plain_stats["tokens/padding_saved_frac"] == 0
    assert stats["tokens/full_width"] == plain_stats["tokens/full_width"]
    assert 0 < stats["tokens/computed"] < stats["tokens/full_width"]
    assert stats["tokens/padding_saved_frac"] == pytest.approx(1 - stats["tokens/computed"] / stats["tokens/full_width"])
    assert stats["tokens/padding_saved_frac"] > 0.2
