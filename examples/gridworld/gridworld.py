"""A 7x7 maze whose illegal moves are masked: the lerax env behind `examples/gridworld`.

The spec (walls, goal, start rule, observation, reward, step limit, action order, mask rule)
is in `README.md` next to this file; a JavaScript page reimplements the env from it, so any
change here must change the README too.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import equinox as eqx
import numpy as np
from jax import numpy as jnp
from jax import random as jr
from jaxtyping import Array, Bool, Float, Int, Key
from lerax.env import AbstractEnv, AbstractEnvState
from lerax.render import AbstractRenderer
from lerax.space import Box, Discrete

GRID_SIZE = 7
WALLS: tuple[tuple[int, int], ...] = (
    (0, 3),
    (1, 1), (1, 3), (1, 5),
    (2, 1), (2, 5),
    (3, 1), (3, 2), (3, 3), (3, 4), (3, 5),
    (4, 3),
    (5, 0), (5, 1), (5, 3), (5, 5), (5, 6),
)  # fmt: skip
GOAL = (6, 6)
MAX_STEPS = 50
GOAL_REWARD = 1.0
STEP_REWARD = -0.01
# (row, col) offsets of actions 0 up, 1 right, 2 down, 3 left.
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
NUM_ACTIONS = len(MOVES)
OBS_SIZE = GRID_SIZE * GRID_SIZE


def wall_grid() -> np.ndarray:
    """`bool[GRID_SIZE, GRID_SIZE]`, True on walls: the layout as one array."""
    grid = np.zeros((GRID_SIZE, GRID_SIZE), dtype=bool)
    for row, col in WALLS:
        grid[row, col] = True
    return grid


def start_cells() -> np.ndarray:
    """`int[n, 2]`: every free cell except the goal, row-major; starts are drawn from these."""
    walls = wall_grid()
    return np.array(
        [
            (row, col)
            for row in range(GRID_SIZE)
            for col in range(GRID_SIZE)
            if not walls[row, col] and (row, col) != GOAL
        ],
        dtype=np.int32,
    )


def legal_moves(row: int, col: int) -> list[int]:
    """The actions allowed at `(row, col)`: the mask rule in plain Python, for checks."""
    walls = wall_grid()
    return [
        action
        for action, (d_row, d_col) in enumerate(MOVES)
        if 0 <= row + d_row < GRID_SIZE
        and 0 <= col + d_col < GRID_SIZE
        and not walls[row + d_row, col + d_col]
    ]


def shortest_distances() -> dict[tuple[int, int], int]:
    """Fewest moves from each reachable cell to the goal (breadth-first from the goal)."""
    distances = {GOAL: 0}
    frontier = deque([GOAL])
    while frontier:
        row, col = frontier.popleft()
        for action in legal_moves(row, col):  # moves are reversible, so BFS from the goal works
            cell = (row + MOVES[action][0], col + MOVES[action][1])
            if cell not in distances:
                distances[cell] = distances[row, col] + 1
                frontier.append(cell)
    return distances


def ascii_map(position: tuple[int, int] | None = None) -> str:
    """The maze as text (`#` wall, `.` free, `G` goal, `A` agent), for READMEs and debugging."""
    walls = wall_grid()
    rows = []
    for row in range(GRID_SIZE):
        cells = []
        for col in range(GRID_SIZE):
            if (row, col) == position:
                cells.append("A")
            elif (row, col) == GOAL:
                cells.append("G")
            else:
                cells.append("#" if walls[row, col] else ".")
        rows.append("".join(cells))
    return "\n".join(rows)


class GridworldState(AbstractEnvState):
    """The agent's `(row, col)` and the number of steps taken this episode."""

    position: Int[Array, "2"]
    t: Int[Array, ""]


class Gridworld(
    AbstractEnv[GridworldState, Int[Array, ""], Float[Array, " 49"], Bool[Array, " 4"]]
):
    """The maze of `README.md`: one-hot position in, one of four masked moves out.

    Walls are padded with a ring of blocked cells so the mask and the move are one lookup,
    with no bounds checks that a reimplementation could get subtly different.
    """

    name: ClassVar[str] = "Gridworld"

    action_space: Discrete
    observation_space: Box

    blocked: Bool[Array, "9 9"]
    starts: Int[Array, "n 2"]
    goal: Int[Array, "2"]
    moves: Int[Array, "4 2"]
    max_steps: int = eqx.field(static=True)

    def __init__(self, max_steps: int = MAX_STEPS):
        self.action_space = Discrete(NUM_ACTIONS)
        self.observation_space = Box(0.0, 1.0, shape=(OBS_SIZE,))
        self.blocked = jnp.asarray(np.pad(wall_grid(), 1, constant_values=True))
        self.starts = jnp.asarray(start_cells())
        self.goal = jnp.asarray(GOAL, dtype=jnp.int32)
        self.moves = jnp.asarray(MOVES, dtype=jnp.int32)
        self.max_steps = max_steps

    def initial(self, *, key: Key[Array, ""]) -> GridworldState:
        index = jr.randint(key, (), 0, self.starts.shape[0])
        return GridworldState(position=self.starts[index], t=jnp.array(0, dtype=jnp.int32))

    def action_mask(self, state: GridworldState, *, key: Key[Array, ""]) -> Bool[Array, " 4"]:
        targets = state.position[None, :] + self.moves + 1  # +1: index into the padded grid
        return ~self.blocked[targets[:, 0], targets[:, 1]]

    def transition(
        self, state: GridworldState, action: Int[Array, ""], *, key: Key[Array, ""]
    ) -> GridworldState:
        legal = self.action_mask(state, key=key)[action]
        position = jnp.where(legal, state.position + self.moves[action], state.position)
        return GridworldState(position=position, t=state.t + 1)

    def observation(self, state: GridworldState, *, key: Key[Array, ""]) -> Float[Array, " 49"]:
        index = state.position[0] * GRID_SIZE + state.position[1]
        return jnp.zeros(OBS_SIZE, dtype=jnp.float32).at[index].set(1.0)

    def at_goal(self, state: GridworldState) -> Bool[Array, ""]:
        """Whether the agent stands on the goal."""
        return jnp.all(state.position == self.goal)

    def reward(
        self,
        state: GridworldState,
        action: Int[Array, ""],
        next_state: GridworldState,
        *,
        key: Key[Array, ""],
    ) -> Float[Array, ""]:
        return jnp.where(self.at_goal(next_state), GOAL_REWARD, STEP_REWARD)

    def terminal(self, state: GridworldState, *, key: Key[Array, ""]) -> Bool[Array, ""]:
        return self.at_goal(state)

    def truncate(self, state: GridworldState) -> Bool[Array, ""]:
        return state.t >= self.max_steps

    def state_info(self, state: GridworldState) -> dict:
        return {}

    def transition_info(
        self, state: GridworldState, action: Int[Array, ""], next_state: GridworldState
    ) -> dict:
        return {}

    def default_renderer(self) -> AbstractRenderer:
        raise NotImplementedError("Gridworld has no graphical renderer; use `ascii_map`.")

    def render(self, state: GridworldState, renderer: AbstractRenderer) -> None:
        raise NotImplementedError("Gridworld has no graphical renderer; use `ascii_map`.")
