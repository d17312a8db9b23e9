"""Python's per-call time for comparison with bench_latency: onnxruntime `sess.run` at batch 1.

    python examples/cpp/bench_python.py MODEL [CALLS]

One intra-op thread, the same inputs as bench_latency (1024 random observations in [-1, 1),
cycled; masks allowing every action), each call timed on its own; one JSON line per mode, as
bench_latency prints them.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path, calls = argv[1], int(argv[2]) if len(argv) == 3 else 20000
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(1024):
        feed = {}
        for spec in sess.get_inputs():
            shape = [1 if not isinstance(d, int) else d for d in spec.shape]
            if spec.type == "tensor(bool)":
                feed[spec.name] = np.ones(shape, dtype=bool)
            else:
                feed[spec.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        feeds.append(feed)
    out_names = [o.name for o in sess.get_outputs()]
    for i in range(calls // 10):
        sess.run(out_names, feeds[i % 1024])
    ns = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        sess.run(out_names, feeds[i % 1024])
        ns[i] = clock() - start
    ns.sort()
    us = ns / 1000.0
    record = {
        "mode": "python sess.run",
        "calls": calls,
        "median_us": round(float(us[len(us) // 2]), 3),
        "p99_us": round(float(us[int(0.99 * (len(us) - 1))]), 3),
        "mean_us": round(float(us.mean()), 3),
        "min_us": round(float(us[0]), 3),
        "onnxruntime": ort.__version__,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
