"""Online DPO: pairs from each group's rewards, pairs kept whole through the
optimizer loop, the reference fixed or refreshed, and runs that train and resume."""

import json

import pytest
import torch

from thinkgym.trainer.batching import micro_batches
from thinkgym.trainer.config import load_config
from thinkgym.trainer.dpo import REFERENCE_FOLDER, preference_pairs, refresh_reference
from thinkgym.trainer.engines.rollouts import Rollouts, select
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.run import train
from thinkgym.trainer.typed_config import ConfigError

from test_trainer import write_config  # noqa: F401 - also registers tests/Seven-v0


def test_pairs_are_each_groups_best_and_worst_and_equal_groups_give_none():
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.5, 0.0, 1.0, 0.0])
    assert preference_pairs(rewards, 4).tolist() == [1, 0, 10, 9]  # the first best, the first worst
    assert preference_pairs(torch.ones(4), 2).numel() == 0


def rollouts(lengths):
    n, t = len(lengths), max(lengths)
    mask = torch.tensor([[1] * k + [0] * (t - k) for k in lengths])
    ones = torch.ones(n, 1, dtype=torch.long)
    return Rollouts(ones, ones, mask.clone(), mask, [str(i) for i in range(n)], torch.zeros(n, dtype=torch.bool))


def test_bucketing_keeps_pairs_whole_and_in_order():
    r = rollouts([1, 5, 2, 2, 6, 1, 3, 3])
    micros = micro_batches(r, torch.arange(8), 4, bucket=True, group=2)
    assert [m.rows.tolist() for m in micros] == [[4, 5, 0, 1], [6, 7, 2, 3]]  # pairs ordered by their longest row
    with pytest.raises(ValueError, match="whole groups of 2"):
        micro_batches(r, torch.arange(8), 3, group=2)
    picked = select(r, torch.tensor([3, 0]))  # integer rows: in the given order
    assert picked.texts == ["3", "0"] and picked.completion_mask.sum(1).tolist() == [2, 1]


def test_refresh_copies_the_policy_into_the_reference(micro_model):
    policy, reference = load_model(micro_model)[0], load_model(micro_model)[0]
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    refresh_reference(reference, policy)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), policy.parameters()))


def dpo_overrides(**extra):
    return ["algorithm.objective=dpo", "envs=[{id: tests/Seven-v0}]", "train.group_size=4", "train.prompts_per_step=4",
            "train.mini_batch_size=8", "train.micro_batch_size=4", "train.lr=0.01",
            *[f"{k}={v}" for k, v in extra.items()]]


def test_dpo_config_errors_name_the_key():
    for extra, message in (({"dpo.beta": 0}, "dpo.beta must be > 0"),
                           ({"algorithm.beta": 0.1}, "algorithm.beta .* DPO's is dpo.beta"),
                           ({"dpo.reference_refresh": 2, "model.lora_rank": 4}, "needs full fine-tuning"),
                           ({"train.micro_batch_size": 1}, "must be even under dpo"),
                           ({"dpo.loss": "hinge"}, "dpo.loss")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, dpo_overrides(**extra))


def test_online_dpo_trains_refreshes_its_reference_and_resumes(micro_model, tmp_path):
    out = tmp_path / "dpo"
    extra = {"dpo.reference_refresh": 1, "dpo.nll_coef": 0.1, "algorithm.max_resample_rounds": 8}
    before = [p.detach().clone() for p in load_model(micro_model)[0].parameters()]
    train(load_config(write_config(tmp_path / "d.yaml", micro_model, out, "dpo", steps=2), dpo_overrides(**extra)),
          progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["dpo/pairs"] >= 1 and 0 <= row["dpo/rewards/accuracy"] <= 1 and row["dpo/nll"] > 0
        assert {"dpo/rewards/chosen", "dpo/rewards/rejected", "dpo/rewards/margin", "dpo/logps/chosen",
                "dpo/logps/rejected", "loss", "grad_norm"} <= set(row)
    # Step 1 starts at the reference: the implicit rewards are 0 (the same weights, the same log-probs).
    assert rows[0]["dpo/rewards/margin"] == pytest.approx(0.0, abs=1e-5)
    checkpoint = out / "checkpoint"
    policy = list(load_model(str(checkpoint))[0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, policy))
    reference = list(load_model(str(checkpoint / REFERENCE_FOLDER))[0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, reference))  # refreshed at step 2's start

    train(load_config(write_config(tmp_path / "d.yaml", micro_model, out, "dpo", steps=3), dpo_overrides(**extra)),
          resume=True, progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_one_dpo_update_raises_the_chosen_completions_over_the_rejected(micro_model):
    import thinkgym
    from conftest import policy_of
    from thinkgym.trainer import distributed
    from thinkgym.trainer.collect import TaskSampler, batch_logprobs, collect_batch
    from thinkgym.trainer.dpo import update_dpo
    from thinkgym.trainer.models.policy import Policy
    from thinkgym.trainer.run import Run

    config = load_config(None, [f"model.path={micro_model}", "train.score_workers=1", "sampling.max_new_tokens=12",
                                *dpo_overrides(**{"train.lr": 0.01, "algorithm.max_resample_rounds": 8})])
    model, tokenizer = load_model(micro_model)
    reference = load_model(micro_model)[0].eval()
    envs = [thinkgym.make("tests/Seven-v0")]
    torch.manual_seed(0)
    policy = policy_of(config, model, tokenizer, reference)
    batch = collect_batch(0, config, policy, TaskSampler(envs, [1.0], 0, set()), workers=1)
    rows = preference_pairs(batch.rewards, 4)
    pairs, mask = select(batch.rollouts, rows), batch.loss_mask[rows]
    assert (batch.rewards[rows[0::2]] > batch.rewards[rows[1::2]]).all()  # chosen: the higher reward

    def margin():
        logps = (batch_logprobs(model, pairs, 8, 1.0) * mask).sum(1)
        return (logps[0::2] - logps[1::2]).mean().item()

    before = margin()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    run = Run(config, config.algorithm.resolve(), "cpu", str(micro_model), None, None, [], None, None, 1,
              Policy(model, tokenizer, policy.engine, reference), distributed.wrap(model, "cpu"), optimizer,
              torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), torch.Generator().manual_seed(0))
    stats = update_dpo(run, pairs, mask, config.sampling.temperature)
    assert stats["dpo/rewards/margin"] == pytest.approx(0.0, abs=1e-5)  # the policy was the reference
    assert margin() > before  # the update pushed the chosen completions up relative to the rejected ones
