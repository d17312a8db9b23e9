// The page: loads the exported policies with onnxruntime-web and runs them in JS environments.
//
// Query parameters (all optional):
//   cartpole=URL   the CartPole .onnx (default models/cartpole.onnx)
//   grid=URL       the gridworld .onnx (default models/gridworld.onnx)
//   init=a,b,c,d   CartPole's initial state (default 0.01,-0.02,0.03,0.04)
//   start=row,col  the gridworld start cell (default: a random start cell)
//   fps=N          CartPole frames per second; 50 is real time (dt = 0.02 s), 0 runs unthrottled
//   sample=SEED    drive CartPole with sampled actions: its sample entry (policyport.entries of
//                  the cartpole model, or the model itself if it is one) fed noise drawn by
//                  xoshiro128** seeded with SEED; the "sample" checkbox does the same by hand,
//                  each run with a new random seed (shown, to replay with ?sample=SEED)
//   grid_fps=N     gridworld moves per second (default 4; 0 unthrottled)
// Results are also put on `window` (cartpoleResult, gridResult) for scripts such as drive.mjs.

// The plain-WASM build: ort.min.mjs would also fetch a 28 MB WebGPU/JSEP variant we don't use.
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

import { Policy, cannotSample, entryUrl } from './lib/artifact.mjs';
import * as cp from './lib/cartpole.mjs';
import * as gw from './lib/gridworld.mjs';
import { Xoshiro128 } from './lib/random.mjs';

// The .wasm files are served from node_modules beside the page, never copied or committed.
ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
// Threads need cross-origin isolation (COOP/COEP headers) that a plain static server does not
// send; one thread is plenty for batch-1 control.
ort.env.wasm.numThreads = 1;

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const rate = (name, fallback) => Number(params.get(name) ?? fallback);
// Unthrottled runs still yield to the browser now and then so the canvas gets painted.
const pace = async (fps, step) => (fps > 0 ? sleep(1000 / fps) : step % 50 === 0 && sleep(0));

async function loadPolicy(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return Policy.load(ort, new Uint8Array(await response.arrayBuffer()));
}

function describe(element, url, spec) {
  element.textContent =
    `${url}: contract v${spec.contractVersion}, inputs ${spec.inputs.map((i) => i.name).join(', ')}, ` +
    `outputs ${spec.outputs.map((o) => o.name).join(', ')}, ` +
    `actions ${JSON.stringify(spec.actionSpace)}, weights ${spec.weightsSha256.slice(0, 12)}…`;
}

function fail(panel, error) {
  console.error(error);
  $(`${panel}-status`).textContent = 'failed';
  $('error').textContent += `${panel}: ${error.message}\n`;
  window[`${panel}Result`] = { error: error.message };
}

// ---- CartPole -------------------------------------------------------------------------------

function drawCartPole(canvas, [x, , theta]) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const scale = width / (2.2 * cp.X_THRESHOLD); // pixels per metre; the track fits with margin
  const toPx = (metres) => width / 2 + metres * scale;
  const trackY = height - 50;
  ctx.clearRect(0, 0, width, height);
  // Track and the termination bounds.
  ctx.strokeStyle = '#333';
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(0, trackY);
  ctx.lineTo(width, trackY);
  ctx.stroke();
  ctx.strokeStyle = '#d33';
  ctx.setLineDash([4, 4]);
  for (const bound of [-cp.X_THRESHOLD, cp.X_THRESHOLD]) {
    ctx.beginPath();
    ctx.moveTo(toPx(bound), trackY + 10);
    ctx.lineTo(toPx(bound), 20);
    ctx.stroke();
  }
  ctx.setLineDash([]);
  // Cart, pole (2 x half_length long) and hinge.
  const [cartW, cartH] = [60, 30];
  const hinge = [toPx(x), trackY - cartH];
  ctx.fillStyle = '#222';
  ctx.fillRect(hinge[0] - cartW / 2, trackY - cartH, cartW, cartH);
  const poleLength = 2 * cp.HALF_LENGTH * scale;
  ctx.strokeStyle = '#c9995f';
  ctx.lineWidth = 10;
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(...hinge);
  ctx.lineTo(hinge[0] + poleLength * Math.sin(theta), hinge[1] - poleLength * Math.cos(theta));
  ctx.stroke();
  ctx.fillStyle = '#888';
  ctx.beginPath();
  ctx.arc(...hinge, 6, 0, 2 * Math.PI);
  ctx.fill();
}

// `seed`: null for the deterministic action, else sample with a generator seeded with it.
async function runCartPole(policy, seed = null) {
  cp.checkPolicy(policy.spec);
  const canvas = $('cartpole-canvas');
  const fps = rate('fps', 50);
  const initialState = params.has('init') ? params.get('init').split(',').map(Number) : cp.DEFAULT_INITIAL_STATE;
  $('cartpole-status').textContent = 'running';
  $('cartpole-seed').textContent = seed === null ? '' : `seed ${seed} (replay: ?sample=${seed})`;
  drawCartPole(canvas, initialState);
  const sampling = seed === null ? null : cp.sampler(policy, Xoshiro128.fromSeed(seed));
  const act = sampling ? sampling.act : (observation) => policy.act(observation);
  const started = performance.now();
  const episode = await cp.runEpisode(act, {
    initialState,
    onStep: async ({ env, steps, return: ret }) => {
      drawCartPole(canvas, env.state);
      $('cartpole-steps').textContent = steps;
      $('cartpole-return').textContent = ret;
      await pace(fps, steps);
    },
  });
  $('cartpole-status').textContent = episode.terminated ? 'done: the pole fell' : `done: ${cp.MAX_STEPS}-step limit`;
  const seconds = (performance.now() - started) / 1000;
  const sampled = sampling ? { sample_seed: seed, ...sampling.record } : {};
  return { ...episode, initial_state: initialState, seconds, sampled: seed !== null, ...sampled };
}

// The seed a run samples with: ?sample=SEED for the first run, a random one afterwards.
function seedFromQuery() {
  if (!params.has('sample')) return null;
  const seed = params.get('sample');
  if (!/^[0-9]+$/.test(seed) || !Number.isSafeInteger(Number(seed))) {
    throw new Error(`sample=${seed} is not a seed: give a non-negative integer`);
  }
  return Number(seed);
}

const randomSeed = () => crypto.getRandomValues(new Uint32Array(1))[0];

// CartPole's panel: the deterministic policy (the model given) and, once sampling is asked
// for, the sample entry it names (loaded once). The checkbox and "Run again" start new runs.
async function cartpolePanel(url) {
  const base = new URL(url, location.href);
  const given = await loadPolicy(base.href);
  let sampleEntry = given.spec.noise ? { policy: given, url } : null;
  const entryFor = async (sampling) => {
    if (!sampling) return { policy: given, url };
    if (!sampleEntry) {
      if (!given.spec.entries?.sample) throw new Error(cannotSample(given.spec));
      // Only a plain file name beside the given model: never another folder or origin.
      const sampleUrl = entryUrl(given.spec.entries.sample, base);
      sampleEntry = { policy: await loadPolicy(sampleUrl), url: sampleUrl };
    }
    return sampleEntry;
  };
  const button = $('cartpole-restart');
  const box = $('cartpole-sample');
  let seed = seedFromQuery();
  box.checked = seed !== null;
  const once = async () => {
    button.disabled = box.disabled = true;
    try {
      const { policy, url: shown } = await entryFor(box.checked);
      describe($('cartpole-meta'), shown, policy.spec);
      window.cartpoleResult = await runCartPole(policy, box.checked ? (seed ?? randomSeed()) : null);
    } finally {
      seed = null; // later runs draw a new seed
      button.disabled = box.disabled = false;
    }
  };
  button.onclick = box.onchange = () => once().catch((error) => fail('cartpole', error));
  await once();
}

// ---- Gridworld ------------------------------------------------------------------------------

function drawGrid(canvas, world, path, choice) {
  const ctx = canvas.getContext('2d');
  // A margin around the maze leaves room for the arrows of moves off the grid.
  const margin = 24;
  const cell = (canvas.width - 2 * margin) / gw.COLS;
  const corner = (r, c) => [margin + c * cell, margin + r * cell];
  const centre = (r, c) => [margin + (c + 0.5) * cell, margin + (r + 0.5) * cell];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let r = 0; r < gw.ROWS; r++) {
    for (let c = 0; c < gw.COLS; c++) {
      ctx.fillStyle = gw.isWall(r, c) ? '#444' : gw.isGoal(r, c) ? '#b9e4b4' : '#fff';
      ctx.fillRect(...corner(r, c), cell, cell);
      ctx.strokeStyle = '#ccc';
      ctx.lineWidth = 1;
      ctx.strokeRect(...corner(r, c), cell, cell);
    }
  }
  ctx.fillStyle = '#2e7d32';
  ctx.font = `bold ${cell * 0.25}px sans-serif`;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'bottom'; // the bottom-left corner: no arrow points there
  const [gx, gy] = corner(...gw.GOAL);
  ctx.fillText('goal', gx + 3, gy + cell - 2);
  // The way travelled so far.
  ctx.strokeStyle = 'rgba(245, 124, 0, 0.35)';
  ctx.lineWidth = cell * 0.15;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  path.forEach(([r, c], i) => (i ? ctx.lineTo(...centre(r, c)) : ctx.moveTo(...centre(r, c))));
  ctx.stroke();
  // The agent and an arrow per move: grey and crossed out where the mask forbids it.
  const [ax, ay] = centre(world.row, world.col);
  const mask = world.mask();
  gw.MOVES.forEach(([dr, dc], action) => {
    const colour = !mask[action] ? '#bbb' : action === choice ? '#f57c00' : '#1976d2';
    const base = [ax + dc * cell * 0.25, ay + dr * cell * 0.25];
    const tip = [ax + dc * cell * 0.85, ay + dr * cell * 0.85];
    drawArrow(ctx, base, tip, colour, action === choice ? 5 : 3);
    if (!mask[action]) drawCross(ctx, [(base[0] + tip[0]) / 2, (base[1] + tip[1]) / 2], cell * 0.1);
  });
  ctx.fillStyle = '#f57c00';
  ctx.beginPath();
  ctx.arc(ax, ay, cell * 0.2, 0, 2 * Math.PI);
  ctx.fill();
}

function drawArrow(ctx, [x0, y0], [x1, y1], colour, width) {
  const angle = Math.atan2(y1 - y0, x1 - x0);
  ctx.strokeStyle = ctx.fillStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x1 + 4 * Math.cos(angle), y1 + 4 * Math.sin(angle));
  ctx.lineTo(x1 - 10 * Math.cos(angle - 0.5), y1 - 10 * Math.sin(angle - 0.5));
  ctx.lineTo(x1 - 10 * Math.cos(angle + 0.5), y1 - 10 * Math.sin(angle + 0.5));
  ctx.fill();
}

function drawCross(ctx, [x, y], size) {
  ctx.strokeStyle = '#777';
  ctx.lineWidth = 2.5;
  ctx.beginPath();
  ctx.moveTo(x - size, y - size);
  ctx.lineTo(x + size, y + size);
  ctx.moveTo(x + size, y - size);
  ctx.lineTo(x - size, y + size);
  ctx.stroke();
}

async function runGrid(policy, start) {
  gw.checkPolicy(policy.spec);
  const canvas = $('grid-canvas');
  const fps = rate('grid_fps', 4);
  const world = new gw.GridWorld(start);
  const path = [[world.row, world.col]];
  const record = { start, actions: [], masks: [], masked_moves_chosen: 0 };
  let ret = 0;
  let done = false;
  $('grid-status').textContent = 'running';
  while (!done) {
    const mask = world.mask();
    const action = await policy.act(world.observation(), mask);
    drawGrid(canvas, world, path, action); // the choice, shown before the move
    record.actions.push(action);
    record.masks.push(Array.from(mask));
    if (!mask[action]) record.masked_moves_chosen += 1;
    const { reward, terminated, truncated } = world.step(action);
    ret += reward;
    path.push([world.row, world.col]);
    done = terminated || truncated;
    record.reached_goal = terminated;
    $('grid-steps').textContent = world.steps;
    $('grid-return').textContent = ret.toFixed(2);
    await pace(fps, world.steps);
  }
  drawGrid(canvas, world, path, null);
  $('grid-status').textContent = record.reached_goal ? 'done: reached the goal' : `done: ${gw.MAX_STEPS}-step limit`;
  return { ...record, steps: world.steps, return: ret, path };
}

// ---- Wiring ---------------------------------------------------------------------------------

function randomStart() {
  return gw.STARTS[Math.floor(Math.random() * gw.STARTS.length)];
}

// A panel with one policy and a "run again" button; `firstArgs()` gives the first run's arguments.
async function panel(name, url, run, firstArgs = () => []) {
  try {
    const policy = await loadPolicy(url);
    describe($(`${name}-meta`), url, policy.spec);
    const button = $(`${name}-restart`);
    const once = async (...args) => {
      button.disabled = true;
      window[`${name}Result`] = await run(policy, ...args);
      button.disabled = false;
    };
    button.onclick = () => once().catch((error) => fail(name, error));
    await once(...firstArgs());
  } catch (error) {
    fail(name, error);
  }
}

function startFromQuery() {
  if (!params.has('start')) return randomStart();
  const start = params.get('start').split(',').map(Number);
  if (start.length !== 2 || !gw.isFree(...start)) throw new Error(`start=${params.get('start')} is not a free cell`);
  return start;
}

// "New random start" calls this without a start.
const gridRun = (policy, start = randomStart()) => runGrid(policy, start);

await Promise.all([
  cartpolePanel(params.get('cartpole') ?? 'models/cartpole.onnx').catch((error) => fail('cartpole', error)),
  panel('grid', params.get('grid') ?? 'models/gridworld.onnx', gridRun, () => [startFromQuery()]),
]);
