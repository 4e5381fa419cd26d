"""``TextEnv``: a task set + a prompt + weighted rewards, as a Gymnasium environment.

One episode is one task. ``reset`` picks a task and returns its prompt;
``step(completion)`` scores the completion and ends the episode (or, with
``max_turns > 1``, returns feedback as the next prompt until the task is solved
or the turns run out).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gymnasium

from thinkgym.rewards.parallel import score_batch, select_columns
from thinkgym.rewards.score import is_infra_error, reason_of

Task = Mapping[str, Any]
Messages = list[dict[str, str]]

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {question}. Assistant: <think>"
)
STYLES = ("chat", "text", "r1_zero")


class EnvError(ValueError):
    """Bad environment input: a task set, column, id or option that cannot work."""


class TextSpace(gymnasium.Space[str]):
    """Any Python string up to ``max_length`` characters.

    ``gymnasium.spaces.Text`` only admits a fixed character set (alphanumerics by
    default), which rejects almost all model output.
    """

    def __init__(self, max_length: int = 1 << 20, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(0, 64))
        return "".join(self.np_random.choice(list(string.printable), size=length))

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TextSpace) and other.max_length == self.max_length


class ChatSpace(gymnasium.Space[list]):
    """A list of chat messages ``{"role": system|user|assistant, "content": str}``."""

    ROLES = ("system", "user", "assistant")

    def __init__(self, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> Messages:
        words = TextSpace(seed=int(self.np_random.integers(1 << 31)))
        return [{"role": "user", "content": words.sample()}]

    def contains(self, x: Any) -> bool:
        return isinstance(x, list) and all(
            isinstance(m, dict) and m.keys() == {"role", "content"} and m["role"] in self.ROLES
            and isinstance(m["content"], str) for m in x)

    def __repr__(self) -> str:
        return "ChatSpace()"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChatSpace)


@dataclass(frozen=True)
class Reward:
    """One named, weighted reward component ``fn(completion, **task_fields)``.
    A reward that names a ``prompt`` parameter also gets the task's prompt (what
    :meth:`TextEnv.prompt_of` returns: a string, or chat messages), unless the
    task has a field of that name."""

    name: str
    fn: Callable[..., float]
    weight: float = 1.0


@dataclass
class Scored:
    """The verdict on one completion. ``infra_error``: some component could not be
    established because the checker's machinery failed (e.g. the code sandbox); the
    reward is then no verdict on the completion, and a trainer should drop it."""

    reward: float
    rewards: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    infra_error: bool = False


class ScoredBatch(list):
    """What ``score_many`` returns: a list of :class:`Scored`, which also counts its
    infrastructure failures."""

    @property
    def infra_errors(self) -> int:
        """How many completions got no verdict (``Scored.infra_error``)."""
        return sum(s.infra_error for s in self)


class TextEnv(gymnasium.Env):
    """A Gymnasium environment over text.

    Args:
        tasks: a sequence of task dicts (a list, a ``datasets.Dataset`` or a task
            generator). Each has an ``"id"``, the fields ``prompt`` formats, and
            the fields the rewards take (e.g. ``answer``).
        rewards: the reward components; the episode reward is their weighted sum.
            The first one is the task's accuracy: its reason is ``info["reason"]``.
        prompt: a ``str.format`` template over task fields for the user message.
        system: an optional system message (``style="chat"`` only).
        style: ``"chat"`` (observation = chat messages), ``"text"`` (the plain
            prompt string) or ``"r1_zero"`` (the DeepSeek-R1-Zero base-model
            template, ending in ``<think>``, which is prepended to completions
            before scoring).
        prefill: text the response starts with, for the ``chat`` and ``text``
            styles (e.g. ``"<think>"``, R1-Zero's opening for a chat model): a
            sampler puts it after the prompt (for chat, after the template's
            generation prompt; :attr:`prefill`), the model continues it, and it
            is prepended to completions before scoring.
        max_turns: > 1 makes the env multi-turn: a completion scoring below
            ``success_threshold`` gets ``feedback`` (formatted with the task's
            fields and ``reason``) as the next user message.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, tasks: Sequence[Task], rewards: Sequence[Reward], *, prompt: str = "{question}",
                 system: str | None = None, style: str = "chat", prefill: str = "", max_turns: int = 1,
                 feedback: str = "That is not right yet ({reason}). Try again.", success_threshold: float | None = None,
                 render_mode: str | None = None):
        if len(tasks) == 0:
            raise EnvError("the task set is empty")
        if not rewards:
            raise EnvError("an environment needs at least one reward")
        if not isinstance(prefill, str):
            raise EnvError(f"prefill must be a string, got {type(prefill).__name__} {prefill!r}")
        for name, value in (("prompt", prompt), ("feedback", feedback), ("system", system)):
            if value is not None and not isinstance(value, str):
                raise EnvError(f"{name} must be a string template, got {type(value).__name__} {value!r} "
                               "(on the command line, quote it: 'prompt=\"{question}\"')")
        if style not in STYLES:
            raise EnvError(f"unknown prompt style {style!r}; choose one of {STYLES}")
        if prefill and style == "r1_zero":
            raise EnvError("prefill is for the chat and text styles: r1_zero's template already ends the prompt "
                           "with <think>")
        if max_turns < 1 or (max_turns > 1 and style != "chat"):
            raise EnvError(f"max_turns must be >= 1 (and 1 unless style='chat'), got {max_turns} with style={style!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise EnvError(f"unknown render_mode {render_mode!r}")
        self.tasks, self.rewards, self.prompt, self.system, self.style = tasks, list(rewards), prompt, system, style
        self.max_turns, self.feedback, self.render_mode = max_turns, feedback, render_mode
        self._success_threshold = success_threshold
        self.prefill = prefill  # what a sampler appends to the rendered prompt
        self.completion_prefix = "<think>" if style == "r1_zero" else prefill  # prepended to completions when scored
        self.observation_space = ChatSpace() if style == "chat" else TextSpace()
        self.action_space = TextSpace()
        first = tasks[0]
        for reward in self.rewards:  # fail at construction, not mid-training
            select_columns(reward.fn, {"prompt": [None], **{k: [v] for k, v in first.items()}})
        self._index: dict[str, int] | None = None
        self.task: Task | None = None
        self._messages: Messages = []
        self._turn = 0

    @property
    def success_threshold(self) -> float:
        """The reward at which a multi-turn episode counts as solved (default: all
        components at 1.0)."""
        if self._success_threshold is None:
            return sum(r.weight for r in self.rewards)
        return self._success_threshold

    def is_correct(self, rewards: Mapping[str, float]) -> bool:
        """Whether a completion with these reward components (``Scored.rewards``)
        solves its task: full marks, ``>= 1.0``, on the first component, the
        task's accuracy. Training and held-out accuracy and ``thinkgym eval``'s
        pass@k and maj@k all count a sample as correct by this one test."""
        return rewards[self.rewards[0].name] >= 1.0

    def add_reward(self, reward: Reward) -> None:
        """Add a reward component (e.g. a format reward)."""
        if any(r.name == reward.name for r in self.rewards):
            raise EnvError(f"the env already has a reward named {reward.name!r}")
        self.rewards.append(reward)

    # -- Gymnasium API ---------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode on a task: the ``options["task_id"]`` one, else one drawn
        with the env's RNG (so a given ``seed`` always picks the same task)."""
        super().reset(seed=seed)
        if options and "task_id" in options:
            self.task = self.task_by_id(options["task_id"])
        else:
            self.task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self._turn = 0
        self._messages = self.messages(self.task)
        return self._observation(), {"task_id": self.task["id"]}

    def step(self, action: str):
        """Score ``action`` (the completion). Returns ``(obs, reward, terminated,
        truncated, info)``; ``info`` has each reward component under ``"rewards"``,
        their reasons, the gold ``"answer"`` when the task has one, ``"reason"``, and
        ``"infra_error"`` (True: the reward is no verdict, see :class:`Scored`)."""
        if self.task is None:
            raise EnvError("call reset() before step()")
        if not isinstance(action, str):
            raise EnvError(f"the action must be a completion string, got {type(action).__name__}")
        scored = self.score(action, self.task)
        self._turn += 1
        self._messages = self._messages + [{"role": "assistant", "content": self.prefill + action}]
        solved = scored.reward >= self.success_threshold
        terminated = solved or self.max_turns == 1
        truncated = not terminated and self._turn >= self.max_turns
        if not (terminated or truncated):
            note = self.feedback.format_map({**self.task, "reason": scored.reasons[self.rewards[0].name]})
            self._messages = self._messages + [{"role": "user", "content": note}]
        info = {"task_id": self.task["id"], "rewards": scored.rewards, "reasons": scored.reasons,
                "reason": scored.reasons[self.rewards[0].name], "turn": self._turn,
                "infra_error": scored.infra_error}
        if "answer" in self.task:
            info["answer"] = self.task["answer"]
        return self._observation(), scored.reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self._messages)
        return None

    # -- scoring and prompts (used by the trainer for batches) ------------------------
    def score(self, completion: str, task: Task) -> Scored:
        """Score one completion of ``task`` (pure: no episode state is touched)."""
        return self.score_many([completion], [task], workers=1)[0]

    def score_many(self, completions: Sequence[str], tasks: Sequence[Task], workers: int | None = None) -> ScoredBatch:
        """Score completions of the matching tasks, each reward over the whole batch
        in parallel worker processes. The result's ``infra_errors`` counts those that
        got no verdict (``Scored.infra_error``)."""
        if len(completions) != len(tasks):
            raise EnvError(f"{len(completions)} completions for {len(tasks)} tasks")
        texts = [self.completion_prefix + c for c in completions]
        columns = {"prompt": [self.prompt_of(t) for t in tasks]} if tasks and "prompt" not in tasks[0] else {}
        columns.update({key: [t.get(key) for t in tasks] for key in tasks[0]} if tasks else {})
        results = ScoredBatch(Scored(0.0) for _ in texts)
        for reward in self.rewards:
            values = score_batch(reward.fn, texts, columns, workers=workers)
            for result, value in zip(results, values):
                result.rewards[reward.name] = float(value)
                result.reasons[reward.name] = reason_of(value)
                result.reward += reward.weight * float(value)
                result.infra_error = result.infra_error or is_infra_error(value)
        return results

    def messages(self, task: Task) -> Messages:
        """The opening chat messages for ``task``."""
        try:
            question = self.prompt.format_map(task)
        except (KeyError, IndexError, ValueError) as exc:
            raise EnvError(f"prompt template {self.prompt!r} does not fit task {task.get('id')!r}: {exc}") from exc
        if self.style == "r1_zero":
            question = R1_ZERO_TEMPLATE.format(question=question)
        system = [{"role": "system", "content": self.system}] if self.system and self.style == "chat" else []
        return system + [{"role": "user", "content": question}]

    def prompt_of(self, task: Task) -> str | Messages:
        """The observation for ``task``: chat messages, or a string for text styles."""
        messages = self.messages(task)
        return messages if self.style == "chat" else messages[-1]["content"]

    def task_by_id(self, task_id: Any) -> Task:
        if hasattr(self.tasks, "by_id"):  # task generators resolve ids without an index
            return self.tasks.by_id(task_id)
        if self._index is None:
            self._index = {str(t["id"]): i for i, t in enumerate(self.tasks)}
        if str(task_id) not in self._index:
            raise EnvError(f"no task with id {task_id!r}")
        return self.tasks[self._index[str(task_id)]]

    def _observation(self) -> str | Messages:
        if self.style == "chat":
            return [dict(m) for m in self._messages]
        return "".join(m["content"] for m in self._messages)
