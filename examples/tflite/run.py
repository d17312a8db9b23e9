"""Run an exported `model.tflite` with LiteRT: numpy and `ai_edge_litert` only (no JAX, no TF).

Usage, from the repository root:

    .venv/bin/export-policy examples/cartpole/policy.eqx --env lerax.env:CartPole --format tflite
    .venv/bin/python examples/tflite/run.py examples/cartpole/policy.tflite --batch 4
    .venv/bin/python examples/tflite/run.py model.tflite --inputs inputs.npz

`--inputs` is an `.npz` holding one array per input, named as the artifact names them
(`observation`, `action_mask`, ...); without it, `--batch` rows of observations uniform in
[-1, 1] and all-True masks are made up. Prints one JSON object: the signature's inputs and
outputs as the artifact declares them, and each output's values.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.schema_py_generated import Model

SUPPORTED_CONTRACT_VERSIONS = ("2",)
DTYPES = {"float32": np.float32, "bool": np.bool_, "int64": np.int64}


def read_metadata(path: str) -> dict[str, str]:
    """policyport's metadata: the JSON object in the flatbuffer's `policyport` entry."""
    with open(path, "rb") as f:
        model = Model.GetRootAs(f.read(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"policyport":
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    sys.exit(f"{path}: no policyport metadata; export it with `export-policy --format tflite`.")


def made_up_inputs(specs: list[dict], batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in specs:
        shape = (batch, *spec["shape"][1:])  # the metadata writes the batch as "batch"
        if spec["dtype"] == "bool":
            inputs[spec["name"]] = np.ones(shape, np.bool_)
        else:
            inputs[spec["name"]] = rng.uniform(-1, 1, shape).astype(DTYPES[spec["dtype"]])
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--inputs", help=".npz with one array per input name")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    metadata = read_metadata(args.model)
    version = metadata.get("policyport.contract_version")
    if version not in SUPPORTED_CONTRACT_VERSIONS:
        sys.exit(f"{args.model}: policyport contract version {version!r} is not supported.")
    specs = json.loads(metadata["policyport.inputs"])
    if args.inputs:
        with np.load(args.inputs) as data:  # never unpickles: allow_pickle is False
            inputs = {s["name"]: data[s["name"]].astype(DTYPES[s["dtype"]]) for s in specs}
    else:
        inputs = made_up_inputs(specs, args.batch)

    # The artifact has one signature; its inputs and outputs carry the contract's names.
    # The batch is dynamic: the runner resizes the inputs to each call's batch.
    runner = Interpreter(model_path=args.model).get_signature_runner()
    outputs = runner(**inputs)
    print(
        json.dumps(
            {
                "inputs": {
                    k: v["shape_signature"].tolist() for k, v in runner.get_input_details().items()
                },
                "outputs": {k: v.tolist() for k, v in outputs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
