#!/usr/bin/env bash
# Per-call latency at batch 1, C++ (bench_latency) next to Python (bench_python.py), each pinned
# to one core with taskset. Exports the two policies it times with today's export-policy:
#   cartpole   the committed CartPole policy (4 observations, Discrete(2), masked)
#   default27  a default MLPActorCriticPolicy, 27 observations, Discrete(9), masked
#   identity   an Identity graph (observation in, observation out): ONNX Runtime's floor
#
#   bash examples/cpp/bench_latency.sh [CALLS]     (run from anywhere; CALLS default 20000)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
calls=${1:-20000}
core=${BENCH_CORE:-0}

bash "$here/build.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$repo/.venv/bin/export-policy" "$repo/examples/cartpole/policy.eqx" --env lerax.env:CartPole \
    --format onnx -o "$work/cartpole.onnx" >/dev/null
"$python" - "$work" <<'PY'
import sys
from pathlib import Path

import jax
import numpy as np
import onnx
from onnx import TensorProto, helper

import policyport
from policyport.policy import Box, Discrete, MLPActorCriticPolicy, SpacesEnv

work = Path(sys.argv[1])
env = SpacesEnv(Box(-np.ones(27, np.float32), np.ones(27, np.float32)), Discrete(9))
policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
policyport.export(policy, "onnx", work / "default27.onnx")

io = helper.make_tensor_value_info
graph = helper.make_graph(
    [helper.make_node("Identity", ["observation"], ["out"])], "identity",
    [io("observation", TensorProto.FLOAT, ["batch", 27])], [io("out", TensorProto.FLOAT, ["batch", 27])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
onnx.save(model, work / "identity.onnx")
PY

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), taskset -c $core"
for model in cartpole default27 identity; do
    nodes=$("$python" -c "import onnx,sys; print(len(onnx.load(sys.argv[1]).graph.node))" "$work/$model.onnx")
    echo "## $model ($nodes nodes)"
    taskset -c "$core" "$here/build/bench_latency" "$work/$model.onnx" "$calls" 2>/dev/null
    taskset -c "$core" "$python" "$here/bench_python.py" "$work/$model.onnx" "$calls"
done
