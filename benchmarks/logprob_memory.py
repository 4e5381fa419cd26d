"""Peak memory of the log-prob pass: chunked (thinkgym) vs naive full logits, at Qwen's vocabulary.

A random-init Qwen2-architecture model with a 151,936-token vocabulary; one
forward + backward of the completion log-probs for N sequences of T completion
tokens. Each path runs in its own process; the figure is the rise of peak RSS
(VmHWM) over the resident size just before the pass. Both paths' log-probs are
saved and compared (float32).

Usage:  python benchmarks/logprob_memory.py [--n 4] [--t 512] [--chunk ELEMENTS]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile

import torch

VOCAB = 151_936


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def run_one(path: str, n: int, t: int, chunk: int, out: str) -> None:
    """One measured pass, in this (fresh) process; prints the peak rise in bytes."""
    import torch.nn.functional as F
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from thinkgym.trainer.models.logprobs import token_logprobs

    torch.manual_seed(0)
    torch.set_num_threads(2)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    model = Qwen2ForCausalLM(config).float()
    prompt_ids, completion_ids = torch.randint(0, VOCAB, (n, 64)), torch.randint(0, VOCAB, (n, t))
    prompt_mask, completion_mask = torch.ones(n, 64, dtype=torch.long), torch.ones(n, t, dtype=torch.long)
    completion_mask[1:, t // 2:] = 0  # ragged, as real batches are
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    before = _status("VmRSS")
    if path == "chunked":
        logprobs, _ = token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, chunk_elements=chunk)
    else:
        ids = torch.cat([prompt_ids, completion_ids], 1)
        mask = torch.cat([prompt_mask, completion_mask], 1)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -t - 1:-1].float()
        logprobs = F.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1) * completion_mask
    (logprobs.sum()).backward()
    peak = _status("VmHWM") - before
    torch.save(logprobs.detach(), out)
    print(peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--t", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1 << 25, help="logits per chunk (elements)")
    parser.add_argument("--one", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.n, args.t, args.chunk, args.save)
        return 0
    peaks, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in ("naive", "chunked"):
            outputs[path] = os.path.join(tmp, f"{path}.pt")
            done = subprocess.run([sys.executable, __file__, "--one", path, "--n", str(args.n), "--t", str(args.t),
                                   "--chunk", str(args.chunk), "--save", outputs[path]],
                                  capture_output=True, text=True, check=True)
            peaks[path] = int(done.stdout.split()[-1])
        diff = (torch.load(outputs["naive"]) - torch.load(outputs["chunked"])).abs().max().item()
    gib = 1024 ** 3
    ratio = peaks["chunked"] / peaks["naive"]
    full = args.n * args.t * VOCAB * 4 / gib
    print(f"N={args.n} T={args.t} vocab={VOCAB}: one float32 copy of the full logits is {full:.2f} GiB")
    print(f"peak rise, naive:   {peaks['naive'] / gib:.2f} GiB")
    print(f"peak rise, chunked: {peaks['chunked'] / gib:.2f} GiB  ({ratio:.3f}x naive; target <= 0.25)")
    print(f"max |naive - chunked| log-prob: {diff:.2e} (target <= 1e-5)")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    print(f"\n| N x T | vocab | naive peak | chunked peak | chunked / naive | max abs diff | machine |\n"
          f"| --- | --- | ---: | ---: | ---: | ---: | --- |\n"
          f"| {args.n} x {args.t} | {VOCAB} | {peaks['naive'] / gib:.2f} GiB | {peaks['chunked'] / gib:.2f} GiB | "
          f"{ratio:.3f} | {diff:.1e} | {machine} |")
    return 0 if ratio <= 0.25 and diff <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
