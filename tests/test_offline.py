"""The objectives that learn from data and from their own best samples: SFT,
rejection sampling and distillation, offline DPO, the Bradley-Terry reward model
and its use as a reward. Datasets are checked row by row; losses against values
worked by hand; each objective trains on the micro model and resumes after SIGKILL."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

import thinkgym
from thinkgym.envs import Reward, TextEnv, make_generator
from thinkgym.rewards.math_answer import math_reward
from thinkgym.trainer.config import load_config
from thinkgym.trainer.data import DataError, Example, encode, load_preferences, load_sft, render
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.models.tiny import worked_solution
from thinkgym.trainer.rejection_sampling import kept_rows
from thinkgym.trainer.reward_model import ModelReward, final_values
from thinkgym.trainer.run import train
from thinkgym.trainer.sft import sft_loss
from thinkgym.trainer.typed_config import ConfigError

from test_trainer import ENV_KWARGS, kill_then_resume, run_cli

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def questions(count, seed=5):
    env = thinkgym.make("thinkgym/Math-v0", seed=seed, **ENV_KWARGS)
    return [env.unwrapped.tasks[i]["question"] for i in range(count)]


def sft_rows(count):
    """Worked solutions of the tiny model's own task, as a stronger teacher writes them."""
    return [{"prompt": q, "completion": worked_solution(q)} for q in questions(count)]


def preference_rows(count, seed=5):
    """Answers in the R1-Zero format over a reply without one: a preference the
    micro model's reward head can learn in a few steps."""
    return [{"prompt": q, "chosen": worked_solution(q), "rejected": "I do not know."} for q in questions(count, seed)]


# --- losses and selection, by hand ---------------------------------------------------------------

def test_sft_loss_is_the_mean_nll_of_the_completion_tokens_alone():
    logprobs = torch.tensor([[-1.0, -2.0, -9.0], [-3.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sft_loss(logprobs, mask).item() == pytest.approx((1 + 2 + 3) / 3)
    assert sft_loss(logprobs, torch.zeros_like(mask)).item() == 0.0


def test_kept_rows_passes_the_threshold_and_keeps_the_top_k_of_each_group():
    rewards = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.5, 0.0])
    assert kept_rows(rewards, 4, 1.0).tolist() == [0, 2, 3]
    assert kept_rows(rewards, 4, 1.0, top_k=1).tolist() == [2]
    assert kept_rows(rewards, 4, 0.0, top_k=2).tolist() == [0, 2, 4, 6]  # ties: the earlier row
    assert kept_rows(rewards, 4, 3.0).tolist() == []


def test_final_values_read_the_state_of_each_rows_last_completion_token():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert final_values(values, torch.tensor([[1, 1, 0], [1, 1, 1]])).tolist() == [2.0, 6.0]


# --- datasets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "rejected": "c"}],
     r"prefs.jsonl: row 2: column 'chosen' is missing"),
    ([{"prompt": "a", "chosen": "  ", "rejected": "c"}], r"prefs.jsonl: row 1: column 'chosen' is empty"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "x", "chosen": "same", "rejected": "same"}],
     r"prefs.jsonl: row 2: columns 'chosen' and 'rejected' are the same"),
    ([{"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"}],
     r"prefs.jsonl: row 1: column 'prompt' and column 'chosen' must both be strings"),
])
def test_bad_preference_rows_are_named_by_file_row_and_column(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_preferences(write_jsonl(tmp_path / "prefs.jsonl", rows))


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": ""}], r"sft.jsonl: row 2: column 'completion' is empty"),
    ([{"prompt": "a"}], r"sft.jsonl: row 1: column 'completion' is missing"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], r"sft.jsonl: row 1: column 'messages' must end with the assistant"),
    ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]}], r"sft.jsonl: row 1: .*message 0 must be"),
])
def test_bad_demonstrations_are_named_by_file_row_and_column(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_sft(write_jsonl(tmp_path / "sft.jsonl", rows))


def test_missing_or_extensionless_files_are_named(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl"):
        load_sft(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="a dataset file"):
        load_sft(str(tmp_path / "folder"))


def test_conversational_rows_render_through_the_chat_template(micro_model, tmp_path):
    tokenizer = load_model(micro_model)[1]
    tokenizer.chat_template = CHAT_TEMPLATE
    dataset = load_sft(write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]},
        {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}]))
    dataset.render(tokenizer)
    first, second = dataset.rows[0][0], dataset.rows[1][0]
    assert first == Example("<user>1+1?</s><assistant>", "2</s>", chat=True)
    assert second.prompt == "<user>2+2?</s><assistant>" and second.completion == "4</s>"
    rollouts = encode(tokenizer, [first, second], "cpu")
    ends = rollouts.completion_ids[0, :int(rollouts.completion_mask[0].sum())].tolist()
    assert ends == tokenizer("2</s>", add_special_tokens=False)["input_ids"]  # the turn's end, no second EOS
    assert ends[-1] == tokenizer.eos_token_id

    mixed = load_sft(write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "completion": "b"},
                                                             {"messages": [{"role": "user", "content": "a"},
                                                                           {"role": "assistant", "content": "b"}]}]))
    with pytest.raises(DataError, match="mixed.jsonl: row 2 is conversational but row 1 is standard"):
        mixed.render(tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(DataError, match="chat template"):
        render([{"role": "user", "content": "a"}], [{"role": "assistant", "content": "b"}], tokenizer)


def test_standard_completions_end_with_eos_and_prompts_are_left_padded(micro_model):
    tokenizer = load_model(micro_model)[1]
    rollouts = encode(tokenizer, [Example("Compute 1 + 2.", "3", False), Example("Compute 10 + 20.", "30", False)],
                      "cpu")
    assert rollouts.completion_mask.sum(1).tolist() == [2, 3]
    assert rollouts.completion_ids[0, 1].item() == tokenizer.eos_token_id
    assert rollouts.prompt_mask[0, 0].item() == 0 and rollouts.prompt_mask[1, 0].item() == 1


def test_batches_cover_each_epoch_once_split_ranks_and_do_not_depend_on_history(tmp_path):
    dataset = load_sft(write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(10)]))
    dataset.render(tokenizer=None)  # standard rows need no tokenizer
    epoch = [e.completion for step in range(5) for e in dataset.batch(step, 2, seed=3)]
    assert sorted(epoch) == sorted(f"c{i}" for i in range(10))  # steps 0-4: each row once
    assert dataset.batch(7, 2, seed=3) == dataset.batch(7, 2, seed=3)
    ranks = [dataset.batch(1, 4, seed=3, rank=r, world=2) for r in (0, 1)]
    assert ranks[0] + ranks[1] == dataset.batch(1, 4, seed=3)
    pairs = load_preferences(write_jsonl(tmp_path / "p.jsonl", preference_rows(3)))
    pairs.render(tokenizer=None)
    batch = pairs.batch(0, 2, seed=0)
    assert len(batch) == 4 and batch[1].completion == "I do not know."  # a pair: chosen, then rejected


# --- configs ----------------------------------------------------------------------------------------

def test_offline_config_errors_name_the_key(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", preference_rows(2))
    for overrides, message in (
            (["algorithm.objective=sft"], "trains on a dataset: set data.path"),
            (["algorithm.objective=reward_model", f"data.path={data}"], "set data.eval_path"),
            ([f"data.path={data}"], "data.path is read by the sft, reward_model and dpo objectives, not grpo"),
            (["algorithm.objective=reward_model", f"data.path={data}", f"data.eval_path={data}",
              "train.micro_batch_size=1"], "must be even under reward_model"),
            (["algorithm.objective=sft", f"data.path={data}", "data.batch_size=3", "train.mini_batch_size=2",
              "train.micro_batch_size=2"], r"mini_batch_size \(2\) must divide data.batch_size \(3\)"),
            (["algorithm.objective=rejection_sampling", "rejection.top_k=-1"], "rejection.top_k must be >= 0"),
            (["algorithm.objective=reward_model", f"data.path={data}", f"data.eval_path={data}", "model.lora_rank=4"],
             "set model.lora_rank to 0"),
            (["envs=[{id: thinkgym/Math-v0, reward_models: [{model: x, weight: 0}]}]"], r"reward_models\[0\]")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)


def offline_config(path, model, out, objective, data, eval_data=None, **train):
    config = {
        "model": {"path": model},
        "envs": [{"id": "thinkgym/Math-v0", "kwargs": {**ENV_KWARGS, "seed": 1}, "eval_kwargs": {"seed": 0}}],
        "sampling": {"max_new_tokens": 16},
        "algorithm": {"objective": objective},
        "data": {"path": data, "eval_path": eval_data, "batch_size": 4},
        "train": {"steps": 3, "mini_batch_size": 8 if objective != "sft" else 4, "micro_batch_size": 4, "lr": 3e-3,
                  "score_workers": 1, "cpu_threads": 1, "warmup_steps": 0, **train},
        "output": {"dir": str(out), "eval_tasks": 4, "checkpoint_every": 1, "samples_every": 1},
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_bad_data_stops_the_run_before_anything_is_written(micro_model, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "a"}])
    out = tmp_path / "run"
    with pytest.raises(DataError, match="bad.jsonl: row 2: column 'completion'"):
        train(load_config(offline_config(tmp_path / "c.yaml", micro_model, out, "sft", bad)), progress=False)
    assert not out.exists()


# --- each objective trains --------------------------------------------------------------------------

def test_sft_lowers_the_demonstrations_loss(micro_model, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(16))
    out = tmp_path / "sft"
    summary = train(load_config(offline_config(tmp_path / "c.yaml", micro_model, out, "sft", data, steps=12,
                                               lr=3e-3, warmup_steps=3)), log=lambda s: None, progress=False)
    nll = [row["sft/nll"] for row in metrics(out)]
    assert len(nll) == 12 and sum(nll[-4:]) < 0.9 * sum(nll[:4])  # the last epoch against the first
    assert set(summary["after"]) == {"thinkgym/Math-v0"}


@pytest.fixture(scope="module")
def reward_model(micro_model, tmp_path_factory):
    """A reward model trained on the micro model: (its checkpoint, the run's summary)."""
    tmp = tmp_path_factory.mktemp("rm")
    out = tmp / "rm"
    config = offline_config(tmp / "c.yaml", micro_model, out, "reward_model",
                            write_jsonl(tmp / "train.jsonl", preference_rows(32)),
                            write_jsonl(tmp / "eval.jsonl", preference_rows(16, seed=6)), steps=16)
    summary = train(load_config(config), log=lambda s: None, progress=False)
    return out / "checkpoint", summary


def test_the_reward_model_learns_the_preference_and_reports_held_out_pairwise_accuracy(reward_model):
    checkpoint, summary = reward_model
    assert summary["after"]["pairwise_accuracy"] >= 0.9 > summary["before"]["pairwise_accuracy"] - 0.3
    assert (checkpoint / "value_head.pt").is_file()
    rm = ModelReward(str(checkpoint), weight=1.0, name="rm", dtype="float32", device="cpu", micro=4)
    q = questions(1, seed=7)[0]
    good, bad = rm.score([q, q], [worked_solution(q), "I do not know."]).tolist()
    assert good > bad


def test_a_reward_model_is_a_reward_component_of_an_env(reward_model, micro_model, tmp_path):
    checkpoint = reward_model[0]
    out = tmp_path / "grpo"
    config = load_config(None, [
        f"model.path={micro_model}", f"output.dir={out}", "train.steps=1", "train.prompts_per_step=2",
        "train.group_size=2", "train.mini_batch_size=4", "train.micro_batch_size=2", "train.score_workers=1",
        "sampling.max_new_tokens=8", "output.eval_tasks=2",
        "envs=[{id: thinkgym/Math-v0, kwargs: {generator: arithmetic, style: text, prompt: '{question}', seed: 1}, "
        f"eval_kwargs: {{seed: 0}}, reward_models: [{{model: {checkpoint}, weight: 0.5, name: rm}}]}}]"])
    train(config, log=lambda s: None, progress=False)
    row = metrics(out)[0]
    assert "reward/rm" in row and "time/reward_models" in row
    with pytest.raises(Exception, match="is not a reward model"):
        ModelReward(micro_model, 1.0, "rm", "float32", "cpu", 2)


def prompt_echo(completion, prompt, question):
    """1 when the reward got the task's rendered prompt, whatever the completion."""
    return float(prompt == f"Q: {question}")


def test_rewards_that_name_a_prompt_parameter_receive_the_prompt():
    env = TextEnv(make_generator("arithmetic", size=4, seed=0, digits=1, terms=2, ops="+"),
                  [Reward("echo", prompt_echo)], style="text", prompt="Q: {question}")
    assert [s.reward for s in env.score_many(["x", "y"], [env.tasks[0], env.tasks[1]], workers=1)] == [1.0, 1.0]


def test_offline_dpo_trains_on_preference_pairs(micro_model, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", preference_rows(16))
    out = tmp_path / "dpo"
    train(load_config(offline_config(tmp_path / "c.yaml", micro_model, out, "dpo", data, steps=6)),
          log=lambda s: None, progress=False)
    rows = metrics(out)
    assert rows[0]["dpo/rewards/margin"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as its reference
    assert rows[-1]["dpo/rewards/margin"] > 0 and rows[-1]["dpo/rewards/accuracy"] > 0.5


def test_rejection_sampling_fine_tunes_on_the_completions_that_pass(micro_model, tmp_path):
    out = tmp_path / "rs"
    config = load_config(None, [
        f"model.path={micro_model}", f"output.dir={out}", "algorithm.objective=rejection_sampling",
        "envs=[{id: tests/Seven-v0}]", "rejection.min_reward=1.0", "rejection.top_k=1", "train.steps=3",
        "train.prompts_per_step=4", "train.group_size=4", "train.mini_batch_size=4", "train.micro_batch_size=4",
        "train.score_workers=1", "sampling.max_new_tokens=12", "output.eval_tasks=2",
        f"rejection.teacher={micro_model}"])  # distillation: the teacher samples (here the student's own weights)
    train(config, log=lambda s: None, progress=False)
    rows = metrics(out)
    kept = [row["rejection/kept_frac"] for row in rows]
    assert all(0 <= k <= 0.25 for k in kept) and any(k > 0 for k in kept)  # top_k=1 of 4: at most a quarter
    assert any("sft/nll" in row for row in rows)
    with pytest.raises(Exception, match="nowhere"):
        train(load_config(None, [f"model.path={micro_model}", "algorithm.objective=rejection_sampling",
                                 f"rejection.teacher={tmp_path / 'nowhere'}", f"output.dir={tmp_path / 'x'}"]))


# --- SIGKILL, then resume ---------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["sft", "reward_model", "dpo", "rejection_sampling"])
def test_sigkill_then_resume_continues_as_if_uninterrupted(micro_model, tmp_path, objective):
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(12) if objective == "sft" else preference_rows(12))
    extra = {"eval_data": data} if objective == "reward_model" else {}

    def config(name, out):
        path = offline_config(tmp_path / name, micro_model, out, objective, data, steps=5, **extra)
        if objective == "rejection_sampling":  # samples its data: no file; keeps the better half of each group
            raw = yaml.safe_load(open(path))
            raw["data"] = {}
            raw["rejection"] = {"min_reward": 0.0, "top_k": 2}
            raw["train"].update(prompts_per_step=2, group_size=4, mini_batch_size=4)
            open(path, "w").write(yaml.safe_dump(raw))
        return path

    whole = tmp_path / "whole"
    assert run_cli("--config", config("a.yaml", whole)).wait(300) == 0
    killed = tmp_path / "killed"
    kill_then_resume(config("b.yaml", killed), killed, 5)

    def losses(out):
        return [(row["step"], {k: v for k, v in row.items() if k.startswith(("sft/", "rm/", "dpo/", "rejection/"))})
                for row in metrics(out)]

    assert [step for step, _ in losses(killed)] == [1, 2, 3, 4, 5]
    assert losses(killed) == losses(whole)
    summaries = [json.loads((out / "summary.json").read_text()) for out in (whole, killed)]
    assert summaries[0]["after"] == summaries[1]["after"]


def test_the_shipped_datasets_load_and_never_show_a_held_out_question():
    from pathlib import Path

    from thinkgym.trainer.models.tiny import held_out_questions

    data = Path(__file__).parents[1] / "data"
    sft = load_sft(str(data / "tiny_sft.jsonl"))
    pairs, held_out_pairs = (load_preferences(str(data / f"tiny_preferences{s}.jsonl")) for s in ("", "_eval"))
    assert min(len(sft), len(pairs), len(held_out_pairs)) > 200
    prompts = [{row[0] for row in d.rows} for d in (sft, pairs, held_out_pairs)]
    assert not (prompts[0] | prompts[1] | prompts[2]) & held_out_questions()
    assert not prompts[2] & (prompts[0] | prompts[1])  # the reward model's held-out pairs are unseen

    def right(prompt, completion):  # "Compute a + b." scored by the env's accuracy reward
        return math_reward(completion, str(eval(prompt.removeprefix("Compute ").rstrip(".")))) == 1.0

    assert all(right(p, c) for p, c in sft.rows[:100])
    assert all(right(p, c) and not right(p, r) for p, c, r in pairs.rows[:100])


@pytest.mark.parametrize("strategy,objective", [("fsdp", "sft"), ("fsdp", "reward_model"),  # a head in the root group
                                                ("fsdp", "dpo"), ("ddp", "rejection_sampling")])
def test_nproc_2_trains(micro_model, tmp_path, strategy, objective):
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(8) if objective == "sft" else preference_rows(8))
    out = tmp_path / "run"
    raw = yaml.safe_load(open(offline_config(tmp_path / "c.yaml", micro_model, out, objective, data, steps=2,
                                             eval_data=data if objective == "reward_model" else None)))
    if objective == "rejection_sampling":
        raw.update(data={}, rejection={"min_reward": 0.0, "top_k": 2})
        raw["train"].update(prompts_per_step=2, group_size=4, mini_batch_size=4, micro_batch_size=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--nproc", "2", "--set",
                           f"train.strategy={strategy}", "--config", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row["step"] for row in metrics(out)] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    if objective == "reward_model":
        assert (out / "checkpoint" / "value_head.pt").is_file()
