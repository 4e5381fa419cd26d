"""Where a run's numbers go: ``metrics.jsonl``, TensorBoard (when installed), a
progress bar with the key numbers, ``samples.jsonl``, and a PNG of the curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _drop_after(path: Path, step: int) -> None:
    """Keep only the rows of ``path`` logged at or before ``step``."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(rows), encoding="utf-8")


class RunLogger:
    def __init__(self, out: Path, output_config, total: int, start: int, progress: bool = True):
        self.out, self.config = out, output_config
        for name in ("metrics.jsonl", "samples.jsonl"):  # a resumed run redoes the steps after its checkpoint
            _drop_after(out / name, start)
        self.metrics_file = (out / "metrics.jsonl").open("a", encoding="utf-8")
        self.samples_file = (out / "samples.jsonl").open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        self.bar = tqdm(total=total, initial=start, desc="train", disable=not progress, dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, Any], samples: list[dict]) -> None:
        if step % self.config.log_every == 0:
            self.metrics_file.write(json.dumps(metrics) + "\n")
            self.metrics_file.flush()
            if self.tensorboard:
                for key, value in metrics.items():
                    if key != "step":
                        self.tensorboard.add_scalar(key, value, step)
        if step % self.config.samples_every == 0:
            for sample in samples[:self.config.samples_per_log]:
                self.samples_file.write(json.dumps({"step": step, **sample}) + "\n")
            self.samples_file.flush()
        accuracy = [v for k, v in metrics.items() if k.startswith("accuracy/")]
        postfix = {"reward": f"{metrics['reward/mean']:.3f}" if "reward/mean" in metrics else None,  # sampled
                   "acc": f"{sum(accuracy) / len(accuracy):.2f}" if accuracy else None,
                   "loss": f"{metrics['loss']:.3f}" if "loss" in metrics else None,
                   "len": f"{metrics['length/mean']:.0f}", "kl": f"{metrics['approx_kl']:.4f}" if "approx_kl" in metrics else None,
                   "s": f"{metrics['time/step']:.1f}"}
        self.bar.set_postfix({k: v for k, v in postfix.items() if v is not None})
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        self.metrics_file.close()
        self.samples_file.close()
        if self.tensorboard:
            self.tensorboard.close()

    def plot(self) -> Path:
        """``curves.png``: the reward and its components, accuracy per env, completion
        length, KL to the reference, entropy and clip fractions, per step."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        steps = [r["step"] for r in rows]
        keys = sorted({k for r in rows for k in r})
        panels = [("reward", [k for k in keys if k.startswith("reward/") and k != "reward/std"]),
                  ("accuracy", [k for k in keys if k.startswith("accuracy/")]),
                  ("completion length", ["length/mean", "length/max"]),
                  ("KL to the reference", ["kl_ref"]),
                  ("entropy", ["entropy"]),
                  ("clipped tokens", ["clip_frac_low", "clip_frac_high"]),
                  ("loss", ["loss"])]
        figure, axes = plt.subplots(2, 4, figsize=(17, 6.5))
        for axis, (title, names) in zip(axes.flat, panels):
            for key in names:
                values = [r.get(key) for r in rows]
                axis.plot(steps, [math.nan if v is None else v for v in values], label=key)
            if all(r.get("kl_ref") is None for r in rows) and names == ["kl_ref"]:
                title += " (none: beta = 0)"
            axis.set_title(title)
            axis.set_xlabel("step")
            if axis.lines:
                axis.legend(fontsize=7)
        figure.tight_layout()
        path = self.out / "curves.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
