// The masked-action maze of examples/gridworld, following the spec in its README: the same
// observations, masks, rewards and episode ends as gridworld.py.

export const ROWS = 7;
export const COLS = 7;
export const WALLS = [
  [0, 3], [1, 1], [1, 3], [1, 5], [2, 1], [2, 5], [3, 1], [3, 2], [3, 3],
  [3, 4], [3, 5], [4, 3], [5, 0], [5, 1], [5, 3], [5, 5], [5, 6],
];
export const GOAL = [6, 6];
export const MAX_STEPS = 50;
export const GOAL_REWARD = 1.0;
export const STEP_PENALTY = -0.01;
// Action a moves by MOVES[a] = [dRow, dCol]: 0 up, 1 right, 2 down, 3 left.
export const MOVES = [[-1, 0], [0, 1], [1, 0], [0, -1]];
export const ACTION_NAMES = ['up', 'right', 'down', 'left'];

const wallSet = new Set(WALLS.map(([r, c]) => r * COLS + c));

export const isWall = (row, col) => wallSet.has(row * COLS + col);
export const isFree = (row, col) => row >= 0 && row < ROWS && col >= 0 && col < COLS && !isWall(row, col);
export const isGoal = (row, col) => row === GOAL[0] && col === GOAL[1];

// The cells an episode may start from: every free cell but the goal.
export const STARTS = [];
for (let r = 0; r < ROWS; r++) for (let c = 0; c < COLS; c++) if (isFree(r, c) && !isGoal(r, c)) STARTS.push([r, c]);

// Throws unless the artifact (its describeArtifact() spec) fits: 49 observations, masked Discrete(4).
export function checkPolicy(spec) {
  if (spec.observationSize !== ROWS * COLS || spec.actionSpace.type !== 'Discrete' || spec.actionSpace.n !== 4) {
    throw new Error(
      `the gridworld needs a policy with ${ROWS * COLS} observations and Discrete(4) actions; ` +
        `this one has ${JSON.stringify(spec.observationSpace.shape)} and ${JSON.stringify(spec.actionSpace)}`,
    );
  }
}

export class GridWorld {
  constructor([row, col]) {
    if (!isFree(row, col)) throw new Error(`start (${row},${col}) is a wall or off the grid`);
    this.row = row;
    this.col = col;
    this.steps = 0;
  }

  // One-hot float32[49] of the agent's cell.
  observation() {
    const obs = new Float32Array(ROWS * COLS);
    obs[this.row * COLS + this.col] = 1;
    return obs;
  }

  // Uint8Array[4], 1 where the move stays inside the grid and off the walls.
  mask() {
    return Uint8Array.from(MOVES, ([dr, dc]) => (isFree(this.row + dr, this.col + dc) ? 1 : 0));
  }

  // Returns { reward, terminated, truncated, legal }. An illegal move leaves the agent where it
  // is but still costs a step, as in gridworld.py.
  step(action) {
    const [dr, dc] = MOVES[action];
    const legal = isFree(this.row + dr, this.col + dc);
    if (legal) [this.row, this.col] = [this.row + dr, this.col + dc];
    this.steps += 1;
    const terminated = isGoal(this.row, this.col);
    return {
      reward: terminated ? GOAL_REWARD : STEP_PENALTY,
      terminated,
      truncated: !terminated && this.steps >= MAX_STEPS,
      legal,
    };
  }
}
