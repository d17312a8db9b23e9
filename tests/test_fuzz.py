"""Fuzz the model loader: mutated valid files end in `ModelFileError` or load, nothing else,
and every case ends within a time limit.

Seeds: self-describing files (policyport's `serialize`; Discrete, Box and MultiDiscrete
actions, a Dict observation) and a lerax-written one (leaves only, loaded with its env).
Mutations: bit flips, byte overwrites, truncations, insertions, deletions, edits of the
4-byte header length, random edits of header values, leaf edits with the header's hash
recomputed (so the leaf parser is reached), and structured edits of every header field:
numbers pushed to and past the loader's limits, space dimensions added, removed and
resized (with the bounds resized to match, so the architecture checks are reached), and
bounds set to NaN, infinities, overflowing or ill-typed values. The header's hashes cover
the leaves and the structure the header describes, so structured edits reach the
architecture checks and, when they leave the numbers legal, the builder.

Brax checkpoint folders (Brax's own `checkpoint.save` output) are fuzzed too: structured
edits of the network config and of Orbax's metadata, raw bytes, deleted files, and stored
arrays whose zarr metadata claims other shapes or dtypes; in a child process, since what
is guarded against includes Orbax aborting the process.

The tests run a bounded, seeded number of cases. For a longer run:

    .venv/bin/python tests/test_fuzz.py --cases 20000 --structured 0.5
    .venv/bin/python tests/test_fuzz.py --brax --cases 2000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from policyport import ModelFileError
from policyport.policy import (
    Box,
    Dict,
    Discrete,
    MLPActorCriticPolicy,
    MLPQPolicy,
    MultiDiscrete,
    SpacesEnv,
)
from policyport.policy._architecture import MAX_DEPTH, MAX_PARAMETERS, MAX_SPACE_SIZE, MAX_WIDTH
from policyport.policy._serialization import _LENGTH, MAGIC

TEST_CASES = 500
STRUCTURED_TEST_CASES = 400
# Per-case limit: a refusal takes milliseconds and a load well under a second here; 10 s
# leaves room for 2 cores shared with other jobs. Before the closed-form size check, a
# header asking for "feature_depth": 100000 took 107 s.
CASE_TIME_LIMIT = 10.0
# Numbers at and past the loader's limits, and ones no limit of a 32/64-bit type holds.
EDGE_NUMBERS = [
    MAX_DEPTH,
    MAX_DEPTH + 1,
    MAX_DEPTH + 2,
    MAX_WIDTH,
    MAX_WIDTH + 1,
    MAX_SPACE_SIZE,
    MAX_SPACE_SIZE + 1,
    MAX_PARAMETERS,
    100_000,
    2**24,
    2**31,
    2**32,
    2**63,
    10**30,
]
ODD_BOUNDS: list[object] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    "inf",
    "-inf",
    "nan",
    1e308,
    -1e308,
    1e39,  # overflows float32
    5e-324,
    0,
    True,
    None,
    "1",
    [1.0],
    {},
]
HEADER_VALUES: list[object] = [
    None,
    True,
    -1,
    0,
    1,
    2,
    7,
    2**31,
    2**64,
    10**400,
    1.5,
    float("nan"),
    "",
    "inf",
    "os.system",
    "__import__",
    [],
    [1, 2],
    [-1],
    [0],
    [10**9],
    {},
    {"type": "Discrete", "n": 0},
    {"type": "Box", "shape": [-1], "low": [], "high": []},
    {"type": "MultiBinary", "n": []},
    {"type": "MultiDiscrete", "nvec": [3, 10**7]},
    json.loads("[" * 5000 + "]" * 5000),  # too deep for a naive recursive reader
]


@dataclass(frozen=True)
class Seed:
    """A valid file and how to load it."""

    name: str
    data: bytes
    load: Callable[[Path], object]


def _split(data: bytes) -> tuple[dict, bytes]:
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack(data[len(MAGIC) : start])
    return json.loads(data[start : start + length]), data[start + length :]


def _join(header: dict, leaves: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded + leaves


def _random_path(rng: random.Random, tree: object) -> list:
    """A path of keys/indices to some node inside a JSON tree."""
    path = []
    while isinstance(tree, dict | list) and tree and rng.random() < 0.85:
        key = rng.choice(list(tree)) if isinstance(tree, dict) else rng.randrange(len(tree))
        path.append(key)
        tree = tree[key]
    return path


def _edit_header(rng: random.Random, data: bytes) -> bytes:
    header, leaves = _split(data)
    path = _random_path(rng, header)
    if not path:
        header[rng.choice(["extra", "class", "format_version"])] = rng.choice(HEADER_VALUES)
        return _join(header, leaves)
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.2 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(HEADER_VALUES)
    return _join(header, leaves)


def _edit_leaves_rehashed(rng: random.Random, data: bytes) -> bytes:
    header, leaves = _split(data)
    leaves = _mutate_bytes(rng, leaves)
    header["leaves_sha256"] = hashlib.sha256(leaves).hexdigest()
    return _join(header, leaves)


def _edit_length(rng: random.Random, data: bytes) -> bytes:
    at = len(MAGIC)
    (length,) = _LENGTH.unpack(data[at : at + _LENGTH.size])
    new = rng.choice([0, 1, length - 1, length + 1, length * 2, 2**32 - 1, rng.randrange(2**32)])
    return data[:at] + _LENGTH.pack(max(0, min(new, 2**32 - 1))) + data[at + _LENGTH.size :]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Bit flips, overwrites, truncations, insertions or deletions at random places."""
    data = bytearray(data)
    kind = rng.randrange(5)
    if not data or kind == 0:  # truncate
        return bytes(data[: rng.randrange(len(data) + 1)])
    at = rng.randrange(len(data))
    if kind == 1:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        data[at : at + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
    elif kind == 3:
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    else:
        del data[at : at + rng.randint(1, 64)]
    return bytes(data)


def _number(rng: random.Random, current: object) -> object:
    """A number near `current`, at or past a limit, random, fractional, or not a number."""
    base = current if isinstance(current, int) and not isinstance(current, bool) else 3
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice([0, 1, -1, 2, base - 1, base + 1, base * 2, -base])
    if kind == 1:
        return rng.choice(EDGE_NUMBERS)
    if kind == 2:
        return rng.randrange(2 ** rng.randrange(1, 40))
    if kind == 3:
        return rng.choice([float(base), base + 0.5, float("nan"), float("inf"), 1e300])
    return rng.choice([True, False, None, str(base), [base], {}, ""])


def _string(rng: random.Random, current: object) -> object:
    """Another string (a near miss, another class or dtype, a long one) or not a string."""
    text = current if isinstance(current, str) else ""
    return rng.choice(
        [
            "",
            text + "x",
            text.upper(),
            text[:-1],
            "MLPQPolicy",
            "float64",
            "float16",
            "0" * 64,
            rng.randbytes(32).hex(),
            "x" * 100_000,
            7,
            None,
            [text],
        ]
    )


def _dims(rng: random.Random, dims: object) -> tuple[object, str]:
    """Space dimensions with one entry changed, added or removed, or replaced wholesale."""
    dims = list(dims) if isinstance(dims, list) else []
    kind = rng.randrange(5)
    if kind == 0 and dims:
        i = rng.randrange(len(dims))
        dims[i] = _number(rng, dims[i])
        return dims, f"dim {i}"
    if kind == 1:
        dims.insert(rng.randrange(len(dims) + 1), _number(rng, 2))
        return dims, "dim added"
    if kind == 2 and dims:
        del dims[rng.randrange(len(dims))]
        return dims, "dim removed"
    whole = rng.choice([[], [0], [1] * 40, [2**12] * 3, [MAX_SPACE_SIZE + 1], [1] * 70])
    return whole, f"dims {str(whole)[:20]}"


def _bounds(rng: random.Random, space: dict) -> str:
    """Edit a Box's bounds in place: odd values, swapped, resized or replaced."""
    which = rng.choice(["low", "high"])
    values = space.get(which)
    kind = rng.randrange(4)
    if kind == 0 and isinstance(values, list) and values:
        value = rng.choice(ODD_BOUNDS)
        values[rng.randrange(len(values))] = value
        return f"{which} entry {value!r}"
    if kind == 1:
        space["low"], space["high"] = space.get("high"), space.get("low")
        return "low and high swapped"
    if kind == 2 and isinstance(values, list):
        space[which] = [*values, 0.0] if rng.random() < 0.5 else values[:-1]
        return f"{which} resized"
    space[which] = rng.choice(ODD_BOUNDS)
    return f"{which} replaced"


def _resize_bounds(space: dict) -> None:
    """Make a Box's bounds fit its (mutated) shape, so the loader gets past them."""
    shape = space.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return
    size = math.prod(shape)
    if size <= 10_000:
        space["low"], space["high"] = [-1.0] * size, [1.0] * size


def _space(rng: random.Random, space: object, depth: int = 0) -> tuple[object, str]:
    """A structured edit of a space description: a size, a bound, a sub-space, the kind."""
    if not isinstance(space, dict) or rng.random() < 0.08:
        other = rng.choice(
            [
                {"type": "Discrete", "n": _number(rng, 4)},
                {"type": "MultiBinary", "n": [_number(rng, 2)]},
                {"type": "Tuple", "spaces": [space] * rng.choice([1, 2, 65])},
                {"type": "Dict", "spaces": {"a": space}},
                {"type": "Box", "shape": [], "low": [0.0], "high": [1.0]},
            ]
        )
        return other, f"replaced by {other['type']}"
    kind = space.get("type")
    if kind == "Box":
        if rng.random() < 0.5:
            return space, _bounds(rng, space)
        space["shape"], what = _dims(rng, space.get("shape"))
        if rng.random() < 0.7:
            _resize_bounds(space)
        return space, f"Box shape {what}"
    if kind == "Discrete":
        space["n"] = _number(rng, space.get("n"))
        return space, f"Discrete n={space['n']!r:.20}"
    if kind in ("MultiDiscrete", "MultiBinary"):
        key = "nvec" if kind == "MultiDiscrete" else "n"
        space[key], what = _dims(rng, space.get(key))
        return space, f"{kind} {what}"
    if kind in ("Dict", "Tuple") and isinstance(space.get("spaces"), dict | list):
        subspaces = space["spaces"]
        keys = list(subspaces) if isinstance(subspaces, dict) else list(range(len(subspaces)))
        if keys and rng.random() < 0.8:
            key = rng.choice(keys)
            subspaces[key], what = _space(rng, subspaces[key], depth + 1)
            return space, f"{kind}[{key!r}] {what}"
        if isinstance(subspaces, dict):
            subspaces[rng.choice(["", "a.b", "z" * 50, "0"])] = {"type": "Discrete", "n": 2}
        else:
            subspaces.append({"type": "Discrete", "n": 2})
        return space, f"{kind} sub-space added"
    return {"type": kind}, f"{kind} emptied"


def _structured_header_edit(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Edit one header field the way a careless or hostile writer would."""
    header, leaves = _split(data)
    fields = [k for k in header if k != "kwargs"] + [f"kwargs.{k}" for k in header["kwargs"]]
    field = rng.choice(fields)
    if field.startswith("kwargs."):
        name = field.removeprefix("kwargs.")
        header["kwargs"][name] = _number(rng, header["kwargs"][name])
        label = f"{field}={header['kwargs'][name]!r:.24}"
    elif field in ("observation_space", "action_space"):
        header[field], what = _space(rng, header[field])
        label = f"{field}: {what}"
    elif field == "format_version":
        header[field] = _number(rng, header[field])
        label = f"{field}={header[field]!r:.24}"
    else:
        header[field] = _string(rng, header[field])
        label = f"{field}={header[field]!r:.24}"
    return _join(header, leaves), label


def mutate(rng: random.Random, seed: Seed, structured: float = 0.0) -> tuple[bytes, str]:
    """A mutant of `seed` and a label saying how it was made.

    `structured` is the share of structured header edits among self-describing mutants.
    """
    if not seed.data.startswith(MAGIC):
        return _mutate_bytes(rng, seed.data), "bytes"
    if rng.random() < structured:
        return _structured_header_edit(rng, seed.data)
    choice = rng.randrange(4)
    if choice == 0:
        return _edit_header(rng, seed.data), "header value"
    if choice == 1:
        return _edit_leaves_rehashed(rng, seed.data), "leaves rehashed"
    if choice == 2:
        return _edit_length(rng, seed.data), "header length"
    return _mutate_bytes(rng, seed.data), "bytes"


def make_seeds(folder: Path) -> list[Seed]:
    observation = Box(
        np.array([-1.0, -np.inf, 0.0], np.float32), np.array([1.0, np.inf, np.inf], np.float32)
    )
    spaces = {
        "self-describing": (observation, Discrete(3)),
        "self-describing Box action": (observation, Box(-np.ones((2, 1)), np.ones((2, 1)))),
        "self-describing Dict observation": (
            Dict({"pos": observation, "goal": Discrete(4)}),
            MultiDiscrete((2, 3)),
        ),
    }
    seeds = []
    for name, (obs, act) in spaces.items():
        policy = MLPActorCriticPolicy(SpacesEnv(obs, act), key=jax.random.key(0), feature_width=8)
        policy.serialize(folder / "ours.eqx")
        seeds.append(Seed(name, (folder / "ours.eqx").read_bytes(), _load_ours))
    q_policy = MLPQPolicy(SpacesEnv(observation, Discrete(3)), key=jax.random.key(0), width_size=8)
    q_policy.serialize(folder / "ours.eqx")
    seeds.append(Seed("self-describing Q", (folder / "ours.eqx").read_bytes(), _load_q))
    try:
        import lerax.env
    except ImportError:
        return seeds
    cartpole = lerax.env.CartPole()
    lerax_file = Path(__file__).parent.parent / "examples" / "cartpole" / "policy.eqx"
    seeds.append(
        Seed(
            "lerax",
            lerax_file.read_bytes(),
            lambda p: MLPActorCriticPolicy.deserialize(p, cartpole),
        )
    )
    return seeds


def _load_ours(path: Path) -> object:
    return MLPActorCriticPolicy.deserialize(path)


def _load_q(path: Path) -> object:
    return MLPQPolicy.deserialize(path)


class CaseTimeout(BaseException):
    """A case ran past its time limit (a BaseException: the loader's handlers miss it)."""


def _on_alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


@dataclass
class Tally:
    cases: int = 0
    refused: int = 0
    loaded: int = 0
    slowest: float = 0.0
    slowest_case: str = ""
    crashes: list[str] | None = None
    labels: set[str] | None = None


def fuzz(
    seeds: list[Seed],
    cases: int,
    folder: Path,
    rng_seed: int = 0,
    *,
    structured: float = 0.0,
    time_limit: float = CASE_TIME_LIMIT,
) -> Tally:
    """Run `cases` mutated files through the loader, each within `time_limit` seconds;
    collect anything but ModelFileError, and any case that runs out of time."""
    rng = random.Random(rng_seed)
    tally = Tally(crashes=[], labels=set())
    path = folder / "mutant.eqx"
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i in range(cases):
            seed = seeds[i % len(seeds)]
            data, label = mutate(rng, seed, structured)
            tally.labels.add(label)
            path.write_bytes(data)
            where = f"case {i} ({seed.name}: {label})"
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                seed.load(path)
            except ModelFileError:
                tally.refused += 1
            except CaseTimeout:
                tally.crashes.append(f"{where} ran past {time_limit} s: {_keep(path, folder, i)}")
            except Exception:
                tally.crashes.append(
                    f"{where}, {_keep(path, folder, i)}:\n{traceback.format_exc()}"
                )
            else:
                tally.loaded += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - start
            if seconds > tally.slowest:
                tally.slowest, tally.slowest_case = seconds, where
            tally.cases += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    return tally


def _keep(path: Path, folder: Path, i: int) -> str:
    crash = folder / f"crash-{i}.eqx"
    crash.write_bytes(path.read_bytes())
    return f"saved as {crash}"


def test_the_loader_survives_mutated_files(tmp_path):
    seeds = make_seeds(tmp_path)
    start = time.perf_counter()
    tally = fuzz(seeds, TEST_CASES, tmp_path)
    seconds = time.perf_counter() - start
    assert tally.crashes == [], "\n".join(tally.crashes[:3])
    assert tally.cases == TEST_CASES and tally.refused > TEST_CASES // 2
    assert seconds < 120, f"{TEST_CASES} cases took {seconds:.0f} s"


def test_structured_header_edits_are_refused_in_time(tmp_path):
    seeds = [s for s in make_seeds(tmp_path) if s.data.startswith(MAGIC)]
    tally = fuzz(seeds, STRUCTURED_TEST_CASES, tmp_path, rng_seed=3, structured=1.0)
    assert tally.crashes == [], "\n".join(tally.crashes[:3])
    assert tally.refused > STRUCTURED_TEST_CASES // 2
    # Every header field was edited, and the numbers reached past every limit.
    edited = {label.split("=")[0].split(":")[0] for label in tally.labels}
    header, _ = _split(seeds[0].data)
    fields = {k for k in header if k != "kwargs"} | {f"kwargs.{k}" for k in header["kwargs"]}
    assert fields <= edited, f"never edited: {sorted(fields - edited)}"
    for part in ("Box shape", "low", "high", "Discrete n", "MultiDiscrete", "Dict["):
        assert any(part in label for label in tally.labels), f"no edit of {part}"


def test_a_case_past_its_time_limit_is_reported(tmp_path):
    slow = Seed("slow", b"not a policy file", lambda p: time.sleep(5))
    tally = fuzz([slow], 1, tmp_path, time_limit=0.2)
    assert tally.slowest < 1.0
    assert len(tally.crashes) == 1 and "ran past 0.2 s" in tally.crashes[0]


# ---------------------------------------------------------------------------------------
# Brax checkpoint folders (issue 25): Brax's own `checkpoint.save` output, mutated in its
# config (structured edits at and past the limits, raw bytes), in Orbax's tree metadata
# (`_METADATA`) and in the stored arrays' own metadata (the zarr shapes and dtypes Orbax
# allocates by). Each case runs the reader; anything but ModelFileError, a case past its
# time limit, or the process dying (the run is a child process) is a failure.

BRAX_TEST_CASES = 120
BRAX_VALUES: list[object] = [
    *HEADER_VALUES,
    *EDGE_NUMBERS,
    [MAX_WIDTH] * 3,
    [16] * (MAX_DEPTH + 1),
    [16] * 10_000,
    ["16", 16],
    [16.5],
    [-16],
    {"shape": [10**9], "dtype": "float32"},
    {"pixels": [6]},
    {"state": [6], "privileged_state": [10**12]},
    "relu",
    "not_an_activation",
]
ZARR_SHAPES: list[list[int]] = [[10**12], [], [0], [1], [6, 10**12 // 6], [2**31], [16] * 40]
ZARR_DTYPES = ["<f8", "<f2", "|b1", "<i8", "<c16", "|S10", "<U4", "|O", "?"]


@dataclass(frozen=True)
class BraxSeed:
    """A step folder Brax's `checkpoint.save` wrote, and the reader for it."""

    name: str
    step: Path
    load: Callable[[Path], object]


def _brax_save(folder: Path, algorithm: str, observation_size: object) -> Path:
    """A small checkpoint saved with Brax's own code."""
    import functools

    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import checkpoint as ppo_checkpoint
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.sac import checkpoint as sac_checkpoint
    from brax.training.agents.sac import networks as sac_networks

    if algorithm == "ppo":
        checkpoint = ppo_checkpoint
        factory = functools.partial(
            ppo_networks.make_ppo_networks,
            policy_hidden_layer_sizes=(8, 8),
            value_hidden_layer_sizes=(8,),
        )
    else:
        checkpoint = sac_checkpoint
        factory = functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=(8, 8))
    networks = factory(observation_size, 2, preprocess_observations_fn=running_statistics.normalize)
    spec = jax.tree.map(lambda n: jax.ShapeDtypeStruct((n,), np.float32), observation_size)
    params = [running_statistics.init_state(spec), networks.policy_network.init(jax.random.key(0))]
    if algorithm == "ppo":
        params.append(networks.value_network.init(jax.random.key(1)))
    config = checkpoint.network_config(observation_size, 2, True, factory)
    checkpoint.save(folder, 7, tuple(params), config)
    return folder / f"{7:012d}"


def make_brax_seeds(folder: Path) -> list[BraxSeed]:
    from policyport.brax import from_ppo, from_sac

    return [
        BraxSeed("brax ppo", _brax_save(folder / "ppo", "ppo", 6), from_ppo),
        BraxSeed(
            "brax ppo dict",
            _brax_save(folder / "dict", "ppo", {"state": 5, "privileged": 3}),
            from_ppo,
        ),
        BraxSeed("brax sac", _brax_save(folder / "sac", "sac", 4), from_sac),
    ]


def _config_path(step: Path) -> Path:
    return next(step.glob("*_network_config.json"))


def _edit_json_file(rng: random.Random, path: Path) -> str:
    """A value anywhere in the JSON file set to an odd one, deleted, or a key added."""
    tree = json.loads(path.read_text())
    where = _random_path(rng, tree)
    parent = tree
    for key in where[:-1]:
        parent = parent[key]
    value = rng.choice(BRAX_VALUES)
    if not where:
        keep = isinstance(tree, dict) and rng.random() < 0.9
        tree = {**tree, "extra": value} if keep else value
    elif rng.random() < 0.15 and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    path.write_text(json.dumps(tree))
    return f"{path.name} {'.'.join(map(str, where)) or '(top)'}={str(value)[:30]}"


def _zarr_store(step: Path) -> object:
    import tensorstore as ts

    return ts.KvStore.open({"driver": "ocdbt", "base": f"file://{step}/"}).result()


def _edit_zarr(rng: random.Random, step: Path) -> str:
    """One stored array's zarr metadata claims another shape or dtype."""
    store = _zarr_store(step)
    keys = [k for k in store.list().result() if k.endswith(b"/.zarray")]
    key = rng.choice(keys)
    metadata = json.loads(store.read(key).result().value)
    if rng.random() < 0.6:
        shape = rng.choice(ZARR_SHAPES)
        metadata.update(shape=shape, chunks=[max(1, min(n, 1 << 20)) for n in shape])
        label = f"shape {shape if len(shape) < 4 else len(shape)}"
    else:
        metadata["dtype"] = rng.choice(ZARR_DTYPES)
        label = f"dtype {metadata['dtype']}"
    store.write(key, json.dumps(metadata).encode()).result()
    return f"zarr {key.decode().split('/')[0]} {label}"


def mutate_brax(rng: random.Random, step: Path) -> str:
    """Mutate the step folder in place; say how. A second mutation may find the first one's
    work in its way (a file deleted or no longer JSON): then it does nothing."""
    try:
        return _mutate_brax(rng, step)
    except (OSError, ValueError, TypeError, StopIteration, IndexError, KeyError):
        return "(nothing: an earlier edit is in the way)"


def _hostile_file(rng: random.Random, step: Path) -> str:
    """A file Orbax or the reader parses made huge (sparse) or nested past any limit."""
    path = rng.choice([_config_path(step), step / "_METADATA", step / "_sharding"])
    if rng.random() < 0.5:
        os.truncate(path, rng.choice([1 << 20, (1 << 20) + 1, 1 << 32]))
        return f"{path.name} grown to {path.stat().st_size} bytes"
    levels = rng.choice([17, 900, 100_000])
    path.write_text("[" * levels + "]" * levels)
    return f"{path.name} nested {levels} deep"


def _mutate_brax(rng: random.Random, step: Path) -> str:
    choice = rng.randrange(11)
    config = _config_path(step)
    if choice == 10:
        return _hostile_file(rng, step)
    if choice < 4:
        return _edit_json_file(rng, config)
    if choice == 4:
        config.write_bytes(_mutate_bytes(rng, config.read_bytes()))
        return "config bytes"
    if choice == 5:
        return _edit_json_file(rng, step / "_METADATA")
    if choice == 6:
        metadata = step / "_METADATA"
        metadata.write_bytes(_mutate_bytes(rng, metadata.read_bytes()))
        return "_METADATA bytes"
    if choice == 7:
        victim = rng.choice([p for p in step.rglob("*") if p.is_file()])
        victim.unlink()
        return f"deleted {victim.relative_to(step)}"
    return _edit_zarr(rng, step)


@dataclass
class BraxTally:
    cases: int = 0
    refused: int = 0
    loaded: int = 0
    hangs: list[str] | None = None
    wrong: list[str] | None = None
    slowest: float = 0.0
    slowest_case: str = ""
    targets: dict[str, int] | None = None  # mutated cases per file mutated


# What a mutation label names first: the file it mutated.
BRAX_TARGETS = ("_network_config", "config bytes", "_METADATA", "zarr", "deleted", "_sharding")


def fuzz_brax(
    seeds: list[BraxSeed],
    cases: int,
    folder: Path,
    rng_seed: int = 0,
    time_limit: float = CASE_TIME_LIMIT,
) -> BraxTally:
    """Run `cases` mutated step folders through the reader, each within `time_limit`.

    A wrong exit is any exception but InputError (the CLI's exit 2): exit 3 for a user."""
    import shutil

    from policyport import InputError

    rng = random.Random(rng_seed)
    tally = BraxTally(hangs=[], wrong=[], targets=dict.fromkeys(BRAX_TARGETS, 0))
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i in range(cases):
            seed = seeds[i % len(seeds)]
            step = folder / f"case-{i}" / seed.step.name
            shutil.copytree(seed.step, step)
            label = "; ".join(mutate_brax(rng, step) for _ in range(1 + (rng.random() < 0.3)))
            for target in BRAX_TARGETS:
                tally.targets[target] += target in label
            where = f"case {i} ({seed.name}: {label}), kept in {step}"
            print(f"started {where}", flush=True)  # the last line if the process dies
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                with jax.numpy_rank_promotion("allow"):
                    seed.load(step)
            except InputError:
                tally.refused += 1
                shutil.rmtree(step.parent)
            except CaseTimeout:
                tally.hangs.append(f"{where} ran past {time_limit} s")
            except Exception:
                tally.wrong.append(f"{where}:\n{traceback.format_exc()[-1500:]}")
            else:
                tally.loaded += 1
                shutil.rmtree(step.parent)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - start
            if seconds > tally.slowest:
                tally.slowest, tally.slowest_case = seconds, where
            tally.cases += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    return tally


def run_brax_fuzz(cases: int, folder: Path, rng_seed: int, time_limit: float) -> int:
    """The Brax fuzz with a summary line; exit status 1 on any failure."""
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's warnings on damaged folders
    seeds = make_brax_seeds(folder / "seeds")
    start = time.perf_counter()
    tally = fuzz_brax(seeds, cases, folder, rng_seed, time_limit)
    print(
        f"SUMMARY {tally.cases} cases in {time.perf_counter() - start:.1f} s: "
        f"{tally.refused} refused, {tally.loaded} loaded, 0 crashes, {len(tally.hangs)} "
        f"hangs, {len(tally.wrong)} wrong exits; slowest {tally.slowest:.2f} s: "
        f"{tally.slowest_case}"
    )
    print(f"TARGETS {json.dumps(tally.targets)}")
    for failure in (tally.hangs + tally.wrong)[:5]:
        print(failure)
    return 1 if tally.hangs or tally.wrong else 0


def test_brax_checkpoint_folders_survive_mutations(tmp_path):
    """In a child process: a crash (Orbax's SIGABRT) must be counted, not end pytest."""
    import subprocess

    import pytest

    pytest.importorskip("brax")
    command = [sys.executable, __file__, "--brax", "--cases", str(BRAX_TEST_CASES)]
    result = subprocess.run(
        [*command, "--folder", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    lines = result.stdout.splitlines()
    summary = next((line for line in lines if line.startswith("SUMMARY")), None)
    assert summary is not None, (
        f"the fuzz process died ({result.returncode}) in: "
        f"{next((x for x in reversed(lines) if x.startswith('started')), '?')}\n"
        f"{result.stderr[-2000:]}"
    )
    print(summary)
    assert result.returncode == 0, result.stdout[-4000:]
    refused = int(summary.split(" refused")[0].split()[-1])
    assert refused > BRAX_TEST_CASES // 2, summary
    # Every file the reader or Orbax parses was mutated, the stored arrays' metadata too.
    targets = json.loads(next(x for x in lines if x.startswith("TARGETS")).split(" ", 1)[1])
    assert all(count >= 3 for count in targets.values()), targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/policyport-fuzz"))
    parser.add_argument(
        "--structured", type=float, default=0.5, help="share of structured header edits"
    )
    parser.add_argument("--time-limit", type=float, default=CASE_TIME_LIMIT)
    parser.add_argument("--brax", action="store_true", help="fuzz Brax checkpoint folders")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.brax:
        sys.exit(run_brax_fuzz(args.cases, args.folder, args.seed, args.time_limit))
    seeds = make_seeds(args.folder)
    start = time.perf_counter()
    tally = fuzz(
        seeds,
        args.cases,
        args.folder,
        args.seed,
        structured=args.structured,
        time_limit=args.time_limit,
    )
    seconds = time.perf_counter() - start
    print(
        f"{tally.cases} cases in {seconds:.1f} s ({', '.join(s.name for s in seeds)}): "
        f"{tally.refused} refused with ModelFileError, {tally.loaded} loaded, "
        f"{len(tally.crashes)} crashes or timeouts; {len(tally.labels)} kinds of edit; "
        f"slowest case {tally.slowest:.2f} s: {tally.slowest_case}"
    )
    for crash in tally.crashes[:5]:
        print(crash)
    sys.exit(1 if tally.crashes else 0)


if __name__ == "__main__":
    main()
