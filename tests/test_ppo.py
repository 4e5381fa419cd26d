"""PPO with a critic: per-token rewards by hand, the critic's values, the shared
micro-batch weighting, and runs that train (any G, critic warm-up), checkpoint
the critic and resume; the same with a value head sharing the policy's trunk."""

import json

import pytest
import torch

from thinkgym.trainer.accumulate import micro_weight
from thinkgym.trainer.config import load_config
from thinkgym.trainer import distributed
from thinkgym.trainer.models.critic import VALUE_HEAD, attach_shared_head, load_critic, shared_critic, shared_value_head
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.run import train
from thinkgym.trainer.models.builtin import ModelLoadError
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.ppo import token_rewards
from thinkgym.trainer.typed_config import ConfigError

from test_trainer import write_config  # noqa: F401 - also registers tests/Seven-v0


def test_token_rewards_put_the_task_reward_on_the_last_token_and_the_kl_on_every_token():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 9.0, 9.0]])
    got = token_rewards(torch.tensor([1.0, 2.0]), mask, kl, beta=0.5)
    assert torch.allclose(got, torch.tensor([[-0.05, -0.1, 1 - 0.15], [2 - 0.25, 0.0, 0.0]]))
    assert torch.equal(token_rewards(torch.tensor([1.0, 2.0]), mask, None, beta=0.5),
                       torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]]))


def test_micro_weight_is_the_share_of_the_mini_batch():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    # token-mean: 2 of the 8 tokens of all ranks, times 2 ranks (their gradients are averaged)
    assert micro_weight(mask, "token-mean", local_tokens=4, global_tokens=8, local_rows=3, world=2) == (0.5, 0.5, 0.5)
    # seq-mean: 1 of this rank's 3 rows with a token; the per-token statistics still weigh by tokens
    weight, share, token_share = micro_weight(mask, "seq-mean-token-mean", 4, 8, 3, 2)
    assert (weight, share, token_share) == (pytest.approx(1 / 3), pytest.approx(1 / 3), 0.5)


def test_critic_values_line_up_with_the_completion_and_round_trip(micro_model, tmp_path):
    torch.manual_seed(0)
    critic = load_critic(micro_model, seed=0)
    drawn = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(1))  # loading a critic draws no global random numbers: runs depend on the seed
    model, tokenizer = load_model(micro_model)
    decoder = dict(model.get_decoder().named_parameters())
    assert all(torch.equal(p, decoder[name]) for name, p in critic.trunk.named_parameters())  # the policy's decoder
    prompt = tokenizer(["1+2=", "12+3="], return_tensors="pt", padding=True)
    completion = torch.tensor([[5, 6, 7], [5, 6, 0]])
    completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    values = critic(prompt["input_ids"], prompt["attention_mask"], completion, completion_mask)
    assert values.shape == (2, 3) and values[1, 2] == 0 and values[0].abs().sum() > 0
    # The value of token t's state does not depend on the tokens after it (causal).
    shorter = critic(prompt["input_ids"][:1], prompt["attention_mask"][:1], completion[:1, :2], completion_mask[:1, :2])
    assert torch.allclose(shorter, values[:1, :2], atol=1e-5)
    assert torch.equal(load_critic(micro_model, seed=0).value_head.weight, critic.value_head.weight)  # seeded head
    critic.save(tmp_path)
    again = load_critic(str(tmp_path))
    assert (tmp_path / VALUE_HEAD).is_file()
    assert torch.allclose(again(prompt["input_ids"], prompt["attention_mask"], completion, completion_mask), values)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_critic(str(tmp_path))


def test_group_size_one_is_for_ppo_only():
    assert load_config(None, ["algorithm.preset=ppo", "train.group_size=1", "train.mini_batch_size=16",
                              "train.micro_batch_size=16"]).train.group_size == 1
    with pytest.raises(ConfigError, match="train.group_size must be >= 2"):
        load_config(None, ["train.group_size=1", "train.mini_batch_size=16", "train.micro_batch_size=16"])
    with pytest.raises(ConfigError, match="critic.lr"):
        load_config(None, ["algorithm.preset=ppo", "critic.lr=2"])


def ppo_overrides(**extra):
    return ["algorithm.preset=ppo", "envs=[{id: tests/Seven-v0}]", "train.group_size=1", "train.prompts_per_step=4",
            "train.lr=0.01", *[f"{k}={v}" for k, v in extra.items()]]


def test_ppo_trains_the_critic_then_the_policy_and_resumes(micro_model, tmp_path):
    out = tmp_path / "ppo"
    config = load_config(write_config(tmp_path / "p.yaml", micro_model, out, steps=2),
                         ppo_overrides(**{"critic.warmup_steps": 1, "critic.lr": 0.001}))
    before = [p.detach().clone() for p in load_model(micro_model)[0].parameters()]
    train(config, progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["critic/value_loss"] > 0 and row["critic/grad_norm"] > 0 and "critic/explained_variance" in row
        assert {"advantages/mean", "advantages/std", "critic/returns_mean", "critic/value_mean",
                "critic/value_clip_frac", "kl_ref"} <= set(row)
    assert "clip_frac_low" not in rows[0] and "clip_frac_low" in rows[1]  # step 1 trained the critic alone
    assert rows[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # the policy had not moved yet
    checkpoint = out / "checkpoint"
    assert (checkpoint / "critic" / VALUE_HEAD).is_file() and (checkpoint / "critic" / "config.json").is_file()
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    assert state["critic_optimizer"]["state"]  # AdamW moments of the critic, keyed by name
    after = list(load_model(str(checkpoint))[0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    head = torch.load(checkpoint / "critic" / VALUE_HEAD)["weight"]
    assert not torch.equal(head, load_critic(micro_model, seed=0).value_head.weight)  # the critic learnt

    more = load_config(write_config(tmp_path / "p.yaml", micro_model, out, steps=3),
                       ppo_overrides(**{"critic.warmup_steps": 1, "critic.lr": 0.001}))
    train(more, resume=True, progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[2]["kl_ref"] > 0


def test_a_shared_head_reads_the_policy_pass_and_trains_its_trunk(micro_model):
    model, tokenizer = load_model(micro_model)
    prompt = tokenizer(["1+2=", "12+3="], return_tensors="pt", padding=True)
    inputs = (prompt["input_ids"], prompt["attention_mask"], torch.tensor([[5, 6, 7], [5, 6, 0]]),
              torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert distributed.TokenLogprobs(model)(*inputs, 1.0, False)[2] is None  # no head: no values
    config = load_config(None, ppo_overrides(**{"critic.shared_trunk": "true", "train.mini_batch_size": 4,
                                                "train.micro_batch_size": 4}))
    torch.manual_seed(0)
    attach_shared_head(model, None, config.model.dtype, config.train.seed, "cpu")
    drawn = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(1))  # attaching drew no global random numbers
    logprobs, _, values = distributed.TokenLogprobs(model)(*inputs, 1.0, False)  # one decoder pass
    assert torch.allclose(logprobs, token_logprobs(model, *inputs)[0], atol=1e-6)
    assert torch.allclose(values, shared_critic(model)(*inputs), atol=1e-6) and values[1, 2] == 0
    values.sum().backward()
    head, embed = shared_value_head(model), model.get_input_embeddings()
    assert head.weight.grad.abs().sum() > 0 and embed.weight.grad.abs().sum() > 0  # the value loss reaches the trunk
    assert shared_value_head(model) in list(model.modules())  # so the policy's optimizer, DDP and FSDP hold it


def test_a_shared_trunk_takes_no_separate_critic_settings():
    for key, value in (("critic.lr", 0.001), ("critic.warmup_steps", 1), ("critic.path", "tiny")):
        with pytest.raises(ConfigError, match=f"{key} .* is for a separate critic"):
            load_config(None, ppo_overrides(**{"critic.shared_trunk": "true", key: value}))
    with pytest.raises(ConfigError, match="critic.vf_coef must be > 0"):
        load_config(None, ppo_overrides(**{"critic.vf_coef": 0}))


def test_shared_trunk_ppo_trains_one_model_and_resumes(micro_model, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "shared"
    overrides = ppo_overrides(**{"critic.shared_trunk": "true", "critic.vf_coef": 0.5})
    config = load_config(write_config(tmp_path / "s.yaml", micro_model, out, steps=2), overrides)
    train(config, progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["critic/value_loss"] > 0 and "critic/explained_variance" in row and "clip_frac_low" in row
        assert {"critic/value_clip_frac", "critic/value_mean", "advantages/std"} <= set(row)
        assert "critic/grad_norm" not in row  # one model, one optimizer: the policy's grad_norm covers the head
    checkpoint = out / "checkpoint"
    assert (checkpoint / "critic" / VALUE_HEAD).is_file() and not (checkpoint / "critic" / "config.json").exists()
    assert not any(k.startswith("value_head") for k in load_file(checkpoint / "model.safetensors"))  # a plain causal LM
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    assert "critic_optimizer" not in state and {"value_head.weight", "value_head.bias"} <= set(state["optimizer"]["state"])
    head = torch.load(checkpoint / "critic" / VALUE_HEAD)
    fresh = load_model(micro_model)[0]
    attach_shared_head(fresh, None, config.model.dtype, config.train.seed, "cpu")
    assert not torch.equal(head["weight"], shared_value_head(fresh).weight)  # the head learnt

    train(load_config(write_config(tmp_path / "s.yaml", micro_model, out, steps=3), overrides), resume=True,
          progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[2]["kl_ref"] > 0
