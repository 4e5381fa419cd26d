"""Micro-batches that do no decoder work on padding: bucket rows by length, trim columns.

A step's :class:`Rollouts` is one ``[left-padded prompt | right-padded
completion]`` block, as wide as its longest prompt plus its longest completion,
so a micro-batch cut from it at full width makes a short row cost as much as the
longest one. :func:`micro_batches` orders the rows by real length before cutting
(rows of similar length share a micro-batch) and keeps, for each micro-batch,
only its own columns: from the first prompt column that holds a token in one of
its rows to the end of its longest completion. Every dropped column is padding
in every row of the micro-batch: no kept token attends to it, and position ids
count real tokens only (``token_logprobs``), so the log-probs are those of the
full width, up to floating-point summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkgym.trainer.engines.rollouts import Rollouts


@dataclass
class MicroBatch:
    """Some rows of a batch, trimmed to the columns they use."""

    rows: torch.Tensor  # [n] row indices into the batch
    inputs: tuple[torch.Tensor, ...]  # (prompt_ids, prompt_mask, completion_ids, completion_mask), trimmed
    width: int  # completion columns kept: the first ``width`` of the batch's T
    full_width: int  # P + T of the batch: what an untrimmed row costs

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """These rows of a per-row ``[N]`` or per-completion-token ``[N, T]`` batch
        tensor (advantages, masks, old log-probs), the latter trimmed like the inputs."""
        x = x[self.rows]
        return x[:, :self.width] if x.dim() > 1 else x

    @property
    def computed(self) -> int:
        """Token positions the decoder runs over for this micro-batch."""
        return self.inputs[0].numel() + self.inputs[2].numel()

    @property
    def full(self) -> int:
        """Token positions it would run over at the batch's full width."""
        return len(self.rows) * self.full_width


def real_lengths(r: Rollouts) -> torch.Tensor:
    """[N] prompt tokens + completion tokens of each row."""
    return r.prompt_mask.sum(1) + r.completion_mask.sum(1)


def micro_batches(r: Rollouts, rows: torch.Tensor, size: int, bucket: bool = True, group: int = 1) -> list[MicroBatch]:
    """``rows`` of ``r`` cut into micro-batches of ``size`` rows (the last may be
    smaller). With ``bucket``, the rows are ordered longest first before the cut
    and every micro-batch is trimmed (:func:`trim`); without, it is the plain
    full-width cut in the given order. Either way each row lands in exactly one
    micro-batch, so a caller that weighs micro-batches by their share of tokens or
    rows gets the same sum whatever the order. ``group`` > 1 keeps each run of
    ``group`` consecutive rows together, in order (DPO's chosen and rejected
    completions): groups are ordered by their longest row, and ``size`` must be a
    multiple of ``group``."""
    if size % group or len(rows) % group:
        raise ValueError(f"micro-batches of {size} rows cannot hold whole groups of {group} ({len(rows)} rows)")
    if bucket:
        # Longest first: the widest micro-batch runs first, so an out-of-memory error
        # shows at once and the allocator's cache is sized by the largest blocks.
        lengths = real_lengths(r)[rows].view(-1, group).max(1).values
        order = torch.sort(lengths, descending=True, stable=True).indices
        rows = rows.view(-1, group)[order.to(rows.device)].reshape(-1)
    return [trim(r, rows[i:i + size], columns=bucket) for i in range(0, len(rows), size)]


def trim(r: Rollouts, rows: torch.Tensor, columns: bool = True) -> MicroBatch:
    """``rows`` of ``r`` as a :class:`MicroBatch`; with ``columns``, without the
    leading prompt columns and trailing completion columns that are padding in all
    of these rows. At least one column of each side is kept: the last prompt
    column's state predicts the first completion token."""
    prompt_ids, prompt_mask = r.prompt_ids[rows], r.prompt_mask[rows]
    completion_ids, completion_mask = r.completion_ids[rows], r.completion_mask[rows]
    p, t = prompt_mask.shape[1], completion_mask.shape[1]
    start, width = 0, t
    if columns:
        used = prompt_mask.any(0)
        start = min(int(used.int().argmax()), p - 1) if used.any() else p - 1
        filled = completion_mask.any(0)
        width = t - int(filled.flip(0).int().argmax()) if filled.any() else 1
    inputs = (prompt_ids[:, start:], prompt_mask[:, start:], completion_ids[:, :width], completion_mask[:, :width])
    return MicroBatch(rows, inputs, width, p + t)


@torch.no_grad()
def per_token(r: Rollouts, micro: int, bucket: bool, fn) -> torch.Tensor:
    """``[N, T]`` float32 values of ``r``'s completion tokens (0 on padding), in ``r``'s
    row order: ``fn(inputs) -> [n, width]`` over micro-batches of ``micro`` rows
    (bucketed by length and trimmed with ``bucket``): log-probs, a critic's values."""
    out = torch.zeros(r.completion_ids.shape, device=r.completion_ids.device)
    for mb in micro_batches(r, torch.arange(len(r.texts), device=r.completion_ids.device), micro, bucket):
        out[mb.rows, :mb.width] = fn(mb.inputs)
    return out
