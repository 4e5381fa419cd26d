"""Datasets of the offline objectives: demonstrations (SFT) and preference pairs
(DPO, the reward model), in the layouts TRL's trainers read.

A file (JSONL, JSON, Parquet or CSV; :func:`thinkgym.envs.tasks.read_rows`) is
read and checked whole before a run starts, so a bad row stops it with an error
naming the file, the row (1-based) and the column, before anything is written.

Layouts, each *standard* (strings) or *conversational* (lists of
``{"role", "content"}`` messages):

- prompt-completion: ``prompt`` + ``completion``;
- conversation: ``messages``, whose last message is the assistant's reply: the
  completion; the messages before it are the prompt;
- preference: ``prompt`` + ``chosen`` + ``rejected``.

An :class:`Example` is a rendered prompt and completion. A conversational
prompt goes through the tokenizer's chat template with the generation prompt,
as an environment's chat prompt does, and its completion is the rest of the
templated conversation (the end-of-turn tokens included): the model learns to
end its turn as it must when it samples. A standard completion gets the EOS token.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thinkgym.envs.core import EnvError
from thinkgym.envs.tasks import read_rows
from thinkgym.trainer.engines.rollouts import Rollouts, encode_prompts


class DataError(ValueError):
    """A dataset file that cannot be trained on; the message names the file, row and column."""


@dataclasses.dataclass(frozen=True)
class Example:
    """A prompt and one completion, rendered to text."""

    prompt: str
    completion: str
    chat: bool  # the prompt went through the chat template (it holds its special tokens)


@dataclasses.dataclass
class Dataset:
    """Checked rows of a file: each a prompt and its completions (one for SFT,
    chosen then rejected for a pair), as in the file until :meth:`render` makes
    them :class:`Example` s with the model's tokenizer."""

    path: str
    rows: list[tuple]  # (prompt, completion, ...) raw, then rendered: (Example, ...)

    def __len__(self) -> int:
        return len(self.rows)

    def render(self, tokenizer) -> None:
        """Render every row with ``tokenizer`` (chat rows through its template)."""
        self.rows = [tuple(_render(row[0], c, tokenizer, f"{self.path}: row {i}") for c in row[1:])
                     for i, row in enumerate(self.rows, 1)]
        for i, row in enumerate(self.rows, 1):
            if row[0].chat != self.rows[0][0].chat:
                kinds = ["conversational" if r[0].chat else "standard" for r in (row, self.rows[0])]
                raise DataError(f"{self.path}: row {i} is {kinds[0]} but row 1 is {kinds[1]}: keep one layout per file")

    def batch(self, step: int, size: int, seed: int, rank: int = 0, world: int = 1) -> list[Example]:
        """The examples of the ``size`` rendered rows of ``step`` (this rank's
        ``size // world`` of them), a row's consecutive (a pair: chosen, rejected).
        Rows come in epochs of seeded shuffles, a function of the step alone, so a
        resumed run reads what it would have read."""
        start = step * size + rank * (size // world)
        positions = range(start, start + size // world)
        return [e for p in positions for e in self.rows[self._order(p // len(self), seed)[p % len(self)]]]

    def _order(self, epoch: int, seed: int) -> list[int]:
        return np.random.default_rng([seed, epoch]).permutation(len(self)).tolist()


def load_sft(path: str) -> Dataset:
    """Demonstrations: prompt-completion or ``messages`` rows, checked."""
    name, rows = _read(path)
    checked = []
    for i, row in enumerate(rows, 1):
        where = f"{name}: row {i}"
        if "messages" in row and "completion" not in row:
            messages = _messages(row["messages"], f"{where}: column 'messages'")
            if messages[-1]["role"] != "assistant":
                raise DataError(f"{where}: column 'messages' must end with the assistant's reply, "
                                f"got a {messages[-1]['role']!r} message")
            if len(messages) < 2:
                raise DataError(f"{where}: column 'messages' needs a prompt before the assistant's reply")
            checked.append((messages[:-1], messages[-1:]))
        else:
            _require(row, ("prompt", "completion"), where, "prompt-completion (or 'messages')")
            _check(row["prompt"], row["completion"], where, "completion")
            checked.append((row["prompt"], row["completion"]))
    return Dataset(name, checked)


def load_preferences(path: str) -> Dataset:
    """Preference pairs: ``prompt``, ``chosen``, ``rejected`` rows, checked."""
    name, rows = _read(path)
    checked = []
    for i, row in enumerate(rows, 1):
        where = f"{name}: row {i}"
        _require(row, ("prompt", "chosen", "rejected"), where, "preference")
        _check(row["prompt"], row["chosen"], where, "chosen")
        _check(row["prompt"], row["rejected"], where, "rejected")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{where}: columns 'chosen' and 'rejected' are the same completion: a pair must differ")
        checked.append((row["prompt"], row["chosen"], row["rejected"]))
    return Dataset(name, checked)


def _read(path: str) -> tuple[str, list[dict]]:
    if not Path(path).suffix:
        raise DataError(f"{path}: a dataset file (.jsonl, .json, .parquet or .csv) is needed")
    try:
        name, rows = read_rows(path)
    except EnvError as exc:
        raise DataError(str(exc)) from None
    if not rows:
        raise DataError(f"{name}: no rows")
    return name, rows


def _require(row: dict, columns: tuple[str, ...], where: str, layout: str) -> None:
    for column in columns:
        if column not in row or row[column] is None:
            raise DataError(f"{where}: column {column!r} is missing (the {layout} layout has "
                            f"{', '.join(map(repr, columns))}); the row has {sorted(row)}")


def _messages(value: Any, where: str) -> list[dict]:
    """A checked list of chat messages."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: expected a non-empty list of messages, got {type(value).__name__}")
    for k, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: message {k} must be an object with string 'role' and 'content', "
                            f"got {message!r:.80}")
    return value


def _check(prompt: Any, completion: Any, where: str, column: str) -> None:
    """A row's prompt and one of its completions: both non-empty strings or both messages."""
    if isinstance(prompt, str) and isinstance(completion, str):
        if not prompt.strip():
            raise DataError(f"{where}: column 'prompt' is empty")
        if not completion.strip():
            raise DataError(f"{where}: column {column!r} is empty")
        return
    if isinstance(prompt, str) or isinstance(completion, str):
        raise DataError(f"{where}: column 'prompt' and column {column!r} must both be strings (standard) or both "
                        f"lists of messages (conversational); got {type(prompt).__name__} and "
                        f"{type(completion).__name__}")
    _messages(prompt, f"{where}: column 'prompt'")
    if not any(m["content"].strip() for m in _messages(completion, f"{where}: column {column!r}")):
        raise DataError(f"{where}: column {column!r} is empty")


def _render(prompt: Any, completion: Any, tokenizer, where: str) -> Example:
    try:
        return render(prompt, completion, tokenizer)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def render(prompt: str | list[dict], completion: str | list[dict], tokenizer) -> Example:
    """The :class:`Example` of a prompt and a completion, both strings or both
    chat messages (rendered with ``tokenizer``'s chat template)."""
    if isinstance(prompt, str):
        return Example(prompt, completion, chat=False)
    if tokenizer.chat_template is None:
        raise DataError("conversational rows need a tokenizer with a chat template; this model has none "
                        "(write the prompt and completion as strings)")
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not whole.startswith(head):
        raise DataError("the chat template renders the prompt differently alone and before the completion; "
                        "the completion's tokens cannot be told apart")
    return Example(head, whole[len(head):], chat=True)


def encode(tokenizer, examples: list[Example], device: str) -> Rollouts:
    """``examples`` as :class:`Rollouts` (prompts left-padded, completions
    right-padded), so the objectives train on them with the RL update's machinery:
    micro-batches, length bucketing, the chunked log-prob head. A standard
    completion ends with the EOS token; a conversational one with its turn's end."""
    prompts = {chat: [e.prompt for e in examples if e.chat == chat] for chat in (False, True)}
    if prompts[False] and prompts[True]:
        raise DataError("a batch mixes standard and conversational rows; keep one layout per file")
    chat = bool(prompts[True])
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts[chat], device, add_special_tokens=not chat)
    completions = []
    for e in examples:
        ids = tokenizer(e.completion, add_special_tokens=False)["input_ids"]
        if not chat or tokenizer.eos_token_id not in ids:
            ids = ids + [tokenizer.eos_token_id]
        completions.append(ids)
    width = max(map(len, completions))
    completion_ids = torch.full((len(examples), width), tokenizer.pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ids in enumerate(completions):
        completion_ids[row, :len(ids)] = torch.tensor(ids)
        completion_mask[row, :len(ids)] = 1
    return Rollouts(prompt_ids, prompt_mask, completion_ids.to(device), completion_mask.to(device),
                    [e.completion for e in examples], torch.zeros(len(examples), dtype=torch.bool))
