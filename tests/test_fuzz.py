"""Fuzz the model loader: mutated valid files end in `ModelFileError` or load, nothing else.

Two seeds: a self-describing file (policyport's `serialize`) and a lerax-written one
(leaves only, loaded with its env). Mutations: bit flips, byte overwrites, truncations,
insertions, deletions, edits of the 4-byte header length, edits of header values, and (for
the self-describing file) leaf edits with the header's hash recomputed, so the leaf parser
is reached too.

The test runs a bounded, seeded number of cases. For a longer run:

    .venv/bin/python tests/test_fuzz.py --cases 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from policyport import ModelFileError
from policyport.policy import Box, Discrete, MLPActorCriticPolicy, SpacesEnv
from policyport.policy._serialization import _LENGTH, MAGIC

TEST_CASES = 500
SLOWEST_CASE_SECONDS = 10.0
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


def mutate(rng: random.Random, seed: Seed) -> bytes:
    if not seed.data.startswith(MAGIC):
        return _mutate_bytes(rng, seed.data)
    choice = rng.randrange(4)
    if choice == 0:
        return _edit_header(rng, seed.data)
    if choice == 1:
        return _edit_leaves_rehashed(rng, seed.data)
    if choice == 2:
        return _edit_length(rng, seed.data)
    return _mutate_bytes(rng, seed.data)


def make_seeds(folder: Path) -> list[Seed]:
    observation = Box(
        np.array([-1.0, -np.inf, 0.0], np.float32), np.array([1.0, np.inf, np.inf], np.float32)
    )
    policy = MLPActorCriticPolicy(
        SpacesEnv(observation, Discrete(3)), key=jax.random.key(0), feature_width=8
    )
    policy.serialize(folder / "ours.eqx")
    seeds = [Seed("self-describing", (folder / "ours.eqx").read_bytes(), _load_ours)]
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


@dataclass
class Tally:
    cases: int = 0
    refused: int = 0
    loaded: int = 0
    slowest: float = 0.0
    crashes: list[str] | None = None


def fuzz(seeds: list[Seed], cases: int, folder: Path, rng_seed: int = 0) -> Tally:
    """Run `cases` mutated files through the loader; collect anything but ModelFileError."""
    rng = random.Random(rng_seed)
    tally = Tally(crashes=[])
    path = folder / "mutant.eqx"
    for i in range(cases):
        seed = seeds[i % len(seeds)]
        path.write_bytes(mutate(rng, seed))
        start = time.perf_counter()
        try:
            seed.load(path)
        except ModelFileError:
            tally.refused += 1
        except Exception:
            crash = folder / f"crash-{i}.eqx"
            crash.write_bytes(path.read_bytes())
            where = f"case {i} ({seed.name}, saved as {crash})"
            tally.crashes.append(f"{where}:\n{traceback.format_exc()}")
        else:
            tally.loaded += 1
        tally.slowest = max(tally.slowest, time.perf_counter() - start)
        tally.cases += 1
    return tally


def test_the_loader_survives_mutated_files(tmp_path):
    seeds = make_seeds(tmp_path)
    start = time.perf_counter()
    tally = fuzz(seeds, TEST_CASES, tmp_path)
    seconds = time.perf_counter() - start
    assert tally.crashes == [], "\n".join(tally.crashes[:3])
    assert tally.cases == TEST_CASES and tally.refused > TEST_CASES // 2
    assert tally.slowest < SLOWEST_CASE_SECONDS, f"a case took {tally.slowest:.1f} s"
    assert seconds < 120, f"{TEST_CASES} cases took {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/policyport-fuzz"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    seeds = make_seeds(args.folder)
    start = time.perf_counter()
    tally = fuzz(seeds, args.cases, args.folder, args.seed)
    seconds = time.perf_counter() - start
    print(
        f"{tally.cases} cases in {seconds:.1f} s ({', '.join(s.name for s in seeds)}): "
        f"{tally.refused} refused with ModelFileError, {tally.loaded} loaded, "
        f"{len(tally.crashes)} crashes; slowest case {tally.slowest:.2f} s"
    )
    for crash in tally.crashes[:5]:
        print(crash)
    sys.exit(1 if tally.crashes else 0)


if __name__ == "__main__":
    main()
