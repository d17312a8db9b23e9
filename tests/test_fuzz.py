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

The test runs a bounded, seeded number of cases. For a longer run:

    .venv/bin/python tests/test_fuzz.py --cases 20000 --structured 0.5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/policyport-fuzz"))
    parser.add_argument(
        "--structured", type=float, default=0.5, help="share of structured header edits"
    )
    parser.add_argument("--time-limit", type=float, default=CASE_TIME_LIMIT)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
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
