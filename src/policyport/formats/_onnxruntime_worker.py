"""Runs one ONNX model in whichever onnxruntime this process imports; driven over pipes.

Started as a script (`python _onnxruntime_worker.py MODEL`) by `_onnxruntime_legacy.py`
with an older onnxruntime first on `PYTHONPATH`: two onnxruntime versions cannot share one
process (same module and native library names). It imports nothing from policyport.

Protocol, on stdin/stdout: first one JSON line `{"version", "outputs"}` (or `{"error"}`);
then per request a frame in (8-byte little-endian length, an `.npz` of named inputs) and a
frame out (1 status byte, 0 ok / 1 error, then length and an `.npz` of the outputs or a
UTF-8 message). Arrays only, loaded with `allow_pickle=False`: nothing is unpickled.
"""

import io
import json
import struct
import sys

import numpy as np


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _reply(out, status: int, payload: bytes) -> None:
    out.write(struct.pack("<BQ", status, len(payload)) + payload)
    out.flush()


def main(model: str) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
    except Exception as e:  # reported to the parent, which raises it as the load's error
        stdout.write((json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n").encode())
        stdout.flush()
        return
    stdout.write((json.dumps({"version": ort.__version__, "outputs": names}) + "\n").encode())
    stdout.flush()
    while True:
        try:
            (size,) = struct.unpack("<Q", _read_exact(stdin, 8))
            request = _read_exact(stdin, size)
        except EOFError:
            return
        try:
            with np.load(io.BytesIO(request), allow_pickle=False) as feeds:
                inputs = {k: feeds[k] for k in feeds.files}
            buffer = io.BytesIO()
            np.savez(buffer, **dict(zip(names, session.run(names, inputs), strict=True)))
            _reply(stdout, 0, buffer.getvalue())
        except Exception as e:  # the runtime's own error, sent back to be raised there
            _reply(stdout, 1, f"{type(e).__name__}: {e}".encode())


if __name__ == "__main__":
    main(sys.argv[1])
