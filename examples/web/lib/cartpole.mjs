// CartPole with Gymnasium's equations, stepped by explicit Euler: the same numbers as
// lerax's `CartPole(solver=diffrax.Euler())` (and Gymnasium's CartPole-v1).
//
// JAX works in float32, so the state and time are stored in float32 (Math.fround) where
// lerax stores them. The derivative is computed in float64 and rounded once, so a step agrees
// with JAX's to about one float32 ulp, not bit for bit (XLA's sin/cos and fusions differ).
// A balanced pole amplifies such differences: after ~150 steps the two trajectories may take
// different (equally good) actions. Episodes that end early, and ones that reach the time
// limit, end with the same return as in JAX: that is what the tests compare.

const f32 = Math.fround;

export const GRAVITY = 9.8;
export const CART_MASS = 1.0;
export const POLE_MASS = 0.1;
export const HALF_LENGTH = 0.5; // lerax's `length`: half the pole
export const FORCE_MAG = 10.0;
export const DT = 0.02;
export const X_THRESHOLD = 2.4;
export const THETA_THRESHOLD = (12 * 2 * Math.PI) / 360;
export const MAX_STEPS = 500;
// The start state used by every consumer of the example (Node, the page, deploy_onnx.py),
// so their returns can be compared with the JAX rollout's.
export const DEFAULT_INITIAL_STATE = [0.01, -0.02, 0.03, 0.04];

const TOTAL_MASS = CART_MASS + POLE_MASS;
const POLEMASS_LENGTH = POLE_MASS * HALF_LENGTH;

// d/dt [x, x_dot, theta, theta_dot] under the force of `action` (0 pushes left, 1 right).
export function dynamics([, xDot, theta, thetaDot], action) {
  const force = (action * 2 - 1) * FORCE_MAG;
  const sin = Math.sin(theta);
  const cos = Math.cos(theta);
  const temp = (force + POLEMASS_LENGTH * thetaDot ** 2 * sin) / TOTAL_MASS;
  const thetaAcc =
    (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - (POLE_MASS * cos ** 2) / TOTAL_MASS));
  const xAcc = temp - (POLEMASS_LENGTH * thetaAcc * cos) / TOTAL_MASS;
  return [xDot, xAcc, thetaDot, thetaAcc];
}

// Throws unless the artifact (its describeArtifact() spec) fits: 4 observations, Discrete(2).
export function checkPolicy(spec) {
  if (spec.observationSize !== 4 || spec.actionSpace.type !== 'Discrete' || spec.actionSpace.n !== 2) {
    throw new Error(
      `CartPole needs a policy with 4 observations and Discrete(2) actions; this one has ` +
        `${JSON.stringify(spec.observationSpace.shape)} and ${JSON.stringify(spec.actionSpace)}`,
    );
  }
}

export class CartPole {
  constructor(initialState = DEFAULT_INITIAL_STATE) {
    if (initialState.length !== 4) throw new Error('a CartPole state has 4 numbers');
    this.state = Float32Array.from(initialState); // x, x_dot, theta, theta_dot
    this.t = 0;
  }

  observation() {
    return Float32Array.from(this.state);
  }

  terminated() {
    const [x, , theta] = this.state;
    // lerax holds the thresholds as float32 too.
    const [xMax, thetaMax] = [f32(X_THRESHOLD), f32(THETA_THRESHOLD)];
    return !(x >= -xMax && x <= xMax && theta >= -thetaMax && theta <= thetaMax);
  }

  // One Euler step; returns the reward (1 per step, the terminal step included).
  step(action) {
    // diffrax integrates from t to fl32(t + dt), so the step it takes is that float32
    // difference, not exactly 0.02.
    const t1 = f32(this.t + f32(DT));
    const h = f32(t1 - this.t);
    const derivative = dynamics(this.state, action);
    // XLA fuses y + h * dy/dt into one multiply-add: one rounding, hence no f32 around h * d.
    for (let i = 0; i < 4; i++) this.state[i] = f32(this.state[i] + h * f32(derivative[i]));
    this.t = t1;
    return 1;
  }
}

// Runs one episode of at most `maxSteps` steps, `act(observation)` choosing each action
// (it may be async: ONNX Runtime's run is). `onStep` sees every step, e.g. to draw it.
export async function runEpisode(act, { initialState, maxSteps = MAX_STEPS, onStep } = {}) {
  const env = new CartPole(initialState);
  const actions = [];
  let steps = 0;
  let ret = 0;
  let terminated = false;
  while (steps < maxSteps && !terminated) {
    const action = await act(env.observation());
    actions.push(action);
    ret += env.step(action);
    steps += 1;
    terminated = env.terminated();
    if (onStep) await onStep({ env, action, steps, return: ret, terminated });
  }
  return { steps, return: ret, terminated, final_state: Array.from(env.state), actions };
}

// An `act` for runEpisode that samples from a sample entry (contract 3) with `rng`, and the
// record of what it did, step by step: the observation, the noise it drew, the sampled action,
// its log-probability and the deterministic action (mode) for the same observation. With the
// noise and the observation, anyone can recompute each step's sample (the tests do, in JAX).
export function sampler(policy, rng) {
  const record = { observations: [], noise: [], log_probs: [], modes: [] };
  const act = async (observation) => {
    const { action, logProb, noise, mode } = await policy.sample(observation, null, rng);
    record.observations.push(Array.from(observation));
    record.noise.push(Array.from(noise));
    record.log_probs.push(logProb);
    record.modes.push(mode);
    return action;
  };
  return { act, record };
}
