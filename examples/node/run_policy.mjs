#!/usr/bin/env node
// Runs a policyport ONNX artifact from Node.js with onnxruntime-node.
//
//   node run_policy.mjs info MODEL.onnx
//   node run_policy.mjs cartpole MODEL.onnx [--init x,x_dot,theta,theta_dot] [--max-steps 500] [--sample SEED]
//   node run_policy.mjs batch MODEL.onnx --observations OBS.f32 [--masks MASKS.u8] [--sample SEED] --out OUT.json
//   node run_policy.mjs batch MODEL.onnx --input NAME=FILE [--input NAME=FILE ...] [--sample SEED] --out OUT.json
//   node run_policy.mjs sequence MODEL.onnx --steps T --observations OBS.f32 --resets RESETS.u8 [--masks MASKS.u8] --out OUT.json
//
// Each command prints a summary to stderr and exactly one JSON line to stdout.
// Batch files are raw and row-major. --observations: float32 little-endian [N, observation
// size], each row the observation's leaves concatenated in the artifact's input order (for a
// Box space simply [N, *obs_shape]); --input NAME=FILE: one file per input the artifact lists
// (float32 [N, *shape] for observation inputs, or the input's own type for an integer one such
// as uint8 frames (contract 5); uint8 0/1 [N, mask_size] for action_mask); --observations
// is in the observation input's type too when there is one input;
// --masks FILE is --input action_mask=FILE. N comes from the files' sizes. OUT.json holds every
// output the artifact has, by name (action, then value and/or q_values).
//
// A sample entry (MODEL.sample.onnx, contract 3) also takes `noise`: --input noise=FILE (float32
// [N, noise_size], e.g. policyport.sampling_noise's, to reproduce JAX's samples exactly), or
// --sample SEED to draw the documented noise with xoshiro128** seeded with SEED (row after row);
// OUT.json then has sampled_action and log_prob too, and, when drawn, the noise. `cartpole
// --sample SEED` drives the episode with sampled actions and records every step's noise.
//
// `sequence` drives a recurrent policy (contract 4) over T steps of B rows, carrying its state
// from call to call (`next_state` fed back as `state`, zeros at the start): OBS.f32 is float32
// [T, B, observation size], RESETS.u8 uint8 0/1 [T, B] (1: that row starts from the policy's
// initial state at that step, as at an episode's start), MASKS.u8 uint8 [T, B, mask_size].
// OUT.json holds every output by name, nested [T, B, ...].

import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as ort from 'onnxruntime-node';

// The artifact reader and the CartPole dynamics are shared with the web page.
import { MASK, NOISE, OBSERVATION_ARRAYS, Policy, cannotSample, nest } from '../web/lib/artifact.mjs';
import { DEFAULT_INITIAL_STATE, MAX_STEPS, checkPolicy, runEpisode, sampler } from '../web/lib/cartpole.mjs';
import { Xoshiro128 } from '../web/lib/random.mjs';

const USAGE = `usage:
  node run_policy.mjs info MODEL.onnx
  node run_policy.mjs cartpole MODEL.onnx [--init x,x_dot,theta,theta_dot] [--max-steps N] [--sample SEED]
  node run_policy.mjs batch MODEL.onnx --observations OBS.f32 [--masks MASKS.u8] [--sample SEED] --out OUT.json
  node run_policy.mjs batch MODEL.onnx --input NAME=FILE [--input NAME=FILE ...] [--sample SEED] --out OUT.json
  node run_policy.mjs sequence MODEL.onnx --steps T --observations OBS.f32 --resets RESETS.u8 [--masks MASKS.u8] --out OUT.json
  (a sample entry takes its noise from --sample SEED or --input noise=FILE)`;

// One thread: a batch-1 control loop gains nothing from more, and results stay reproducible.
const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1 };

function summary(spec) {
  return {
    contract_version: spec.contractVersion,
    policyport_version: spec.policyportVersion,
    policy_class: spec.policyClass,
    observation_space: spec.observationSpace,
    action_space: spec.actionSpace,
    mask_size: spec.maskSize,
    observation_size: spec.observationSize,
    heads: spec.heads,
    state: spec.state && spec.state.leaves.map(({ input, output, shape }) => ({ input, output, shape })),
    entry: spec.entry,
    entries: spec.entries,
    noise: spec.noise && spec.noise.blocks.map(({ offset, shape, distribution }) => ({ offset, shape, distribution })),
    inputs: spec.inputs.map(({ name, dtype, shape }) => ({ name, dtype, shape: ['batch', ...shape] })),
    outputs: spec.outputs.map(({ name, dtype, shape }) => ({ name, dtype, shape: ['batch', ...shape] })),
    weights_sha256: spec.weightsSha256,
  };
}

function printSummary(model, spec) {
  const space = (s) => JSON.stringify(s);
  console.error(`${model}: policyport contract v${spec.contractVersion}, ${spec.policyClass}`);
  console.error(`  observation space ${space(spec.observationSpace)}`);
  console.error(`  action space      ${space(spec.actionSpace)}`);
  const tensors = (list) => list.map((t) => `${t.name} ${t.dtype}[batch${t.shape.map((d) => `, ${d}`).join('')}]`).join(', ');
  console.error(`  inputs            ${tensors(spec.inputs)}`);
  console.error(`  outputs           ${tensors(spec.outputs)}`);
  if (spec.noise) {
    const blocks = spec.noise.blocks.map((b) => `${b.distribution}[${b.shape}]`).join(' + ');
    console.error(`  noise             ${blocks} (sample entry)`);
  } else if (spec.entries?.sample) {
    console.error(`  sample entry      ${spec.entries.sample}`);
  }
}

// The generator for --sample SEED; refused up front where the artifact has no noise input.
function generator(spec, seed) {
  if (seed === undefined) return null;
  if (!spec.noise) throw new Error(cannotSample(spec));
  if (!/^[0-9]+$/.test(seed)) throw new Error(`--sample takes a non-negative integer seed, got ${JSON.stringify(seed)}`);
  return Xoshiro128.fromSeed(BigInt(seed));
}

async function cartpole(policy, values) {
  checkPolicy(policy.spec);
  const initialState = values.init ? values.init.split(',').map(Number) : DEFAULT_INITIAL_STATE;
  if (initialState.length !== 4 || initialState.some(Number.isNaN)) {
    throw new Error(`--init needs 4 comma-separated numbers, got ${JSON.stringify(values.init)}`);
  }
  const maxSteps = values['max-steps'] ? Number(values['max-steps']) : MAX_STEPS;
  const rng = generator(policy.spec, values.sample);
  const sampling = rng ? sampler(policy, rng) : null;
  const started = performance.now();
  const act = sampling ? sampling.act : (observation) => policy.act(observation);
  const episode = await runEpisode(act, { initialState, maxSteps });
  const seconds = (performance.now() - started) / 1000;
  console.error(
    `CartPole from [${initialState}]${rng ? `, sampled (seed ${values.sample})` : ''}: return ` +
      `${episode.return} in ${episode.steps} steps (${episode.terminated ? 'terminated' : 'time limit'}), ` +
      `${(seconds * 1000).toFixed(0)} ms`,
  );
  const sampled = sampling ? { sample_seed: values.sample, ...sampling.record } : {};
  return { initial_state: initialState, max_steps: maxSteps, ...episode, ...sampled, seconds };
}

// A raw file as a typed array of whole rows of `rowSize` elements: [array, rows].
function readRows(path, name, rowSize, Type) {
  // Copy into a fresh buffer: Node's Buffer may sit at an offset not aligned for float32.
  const bytes = new Uint8Array(readFileSync(path));
  const rowBytes = rowSize * Type.BYTES_PER_ELEMENT;
  if (bytes.length === 0 || bytes.length % rowBytes !== 0) {
    throw new Error(
      `${path}: ${bytes.length} bytes is not a positive whole number of ${rowBytes}-byte rows ` +
        `(${name} takes ${rowSize} ${Type.name.replace('Array', '').toLowerCase()} values per row)`,
    );
  }
  return [new Type(bytes.buffer, 0, bytes.length / Type.BYTES_PER_ELEMENT), bytes.length / rowBytes];
}

// The files to read, by input name, from --observations/--masks or --input NAME=FILE.
function batchFiles(spec, values) {
  const files = new Map();
  for (const pair of values.input ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`--input takes NAME=FILE, got ${JSON.stringify(pair)}`);
    files.set(pair.slice(0, at), pair.slice(at + 1));
  }
  if (values.masks) files.set(MASK, values.masks);
  const known = spec.inputs.map((i) => i.name);
  for (const name of files.keys()) {
    if (!known.includes(name)) {
      const hint =
        name === MASK ? 'this policy takes no mask; drop it' : name === NOISE ? cannotSample(spec) : `its inputs are ${known.join(', ')}`;
      throw new Error(`the model has no input ${JSON.stringify(name)}: ${hint}`);
    }
  }
  if (spec.noise && files.has(NOISE) === (values.sample !== undefined)) {
    throw new Error(
      `a sample entry takes its noise (${spec.noise.size} float32 a row) from exactly one of ` +
        '--sample SEED (drawn here) and --input noise=FILE',
    );
  }
  const leaves = spec.observationInputs.map((i) => i.name);
  if (values.observations && leaves.some((name) => files.has(name))) {
    throw new Error('pass the observations either as --observations or as --input NAME=FILE, not both');
  }
  if (!values.observations && !leaves.every((name) => files.has(name))) {
    throw new Error(
      `batch needs --observations (rows of ${spec.observationSize} float32) or --input NAME=FILE ` +
        `for each of ${leaves.join(', ')}`,
    );
  }
  return files;
}

async function batch(policy, values) {
  const { spec } = policy;
  if (!values.out) throw new Error('batch needs --out OUT.json');
  const files = batchFiles(spec, values);
  const rng = generator(spec, values.sample);
  let n = null;
  const rows = (path, name, size, Type) => {
    const [array, count] = readRows(path, name, size, Type);
    if (n !== null && count !== n) throw new Error(`${path} holds ${count} rows of ${name}, the other files ${n}`);
    n = count;
    return array;
  };
  let observations;
  if (values.observations) {
    const [only] = spec.observationInputs;
    const Type = spec.observationInputs.length === 1 ? OBSERVATION_ARRAYS[only.dtype] : Float32Array;
    observations = rows(values.observations, 'an observation', spec.observationSize, Type);
  } else {
    observations = Object.fromEntries(
      spec.observationInputs.map((i) => [i.name, rows(files.get(i.name), i.name, i.size, OBSERVATION_ARRAYS[i.dtype])]),
    );
  }
  const masks = files.has(MASK) ? rows(files.get(MASK), MASK, spec.maskSize, Uint8Array) : null;
  const noise = files.has(NOISE) ? rows(files.get(NOISE), NOISE, spec.noise.size, Float32Array) : rng;
  const out = await policy.run(observations, n, masks, noise);
  const result = Object.fromEntries(spec.outputs.map(({ name }) => [name, nest(out[name], out.shapes[name])]));
  if (rng) result[NOISE] = nest(out[NOISE], [n, spec.noise.size]); // what was drawn, to reproduce it
  writeFileSync(values.out, JSON.stringify(result));
  console.error(`batch of ${n}: wrote ${spec.outputs.map((o) => o.name).join(', ')} to ${values.out}`);
  return { rows: n, out: values.out };
}

// A recurrent policy over T steps of B rows, its state carried from call to call.
async function sequence(policy, values) {
  const { spec } = policy;
  if (!spec.state) throw new Error('sequence drives a recurrent policy (contract 4: state inputs and reset); use batch for this one');
  if (spec.noise) throw new Error('sequence runs the default entry; this is the sample entry');
  if (!values.out || !values.observations || !values.resets) throw new Error('sequence needs --steps, --observations, --resets and --out');
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps takes a positive integer, got ${JSON.stringify(values.steps)}`);
  const [observations, rows] = readRows(values.observations, 'an observation', spec.observationSize, Float32Array);
  if (rows % steps !== 0) throw new Error(`${values.observations} holds ${rows} observations, not ${steps} steps of whole batches`);
  const batch = rows / steps;
  const [resets, resetRows] = readRows(values.resets, 'reset', batch, Uint8Array);
  if (resetRows !== steps) throw new Error(`${values.resets} holds ${resetRows} steps of ${batch} reset flags, not ${steps}`);
  let masks = null;
  if (values.masks) {
    if (spec.maskSize === null) throw new Error('this policy takes no mask; drop --masks');
    const [all, maskRows] = readRows(values.masks, MASK, spec.maskSize, Uint8Array);
    if (maskRows !== rows) throw new Error(`${values.masks} holds ${maskRows} masks, not ${rows}`);
    masks = all;
  }
  const out = Object.fromEntries(spec.outputs.map(({ name }) => [name, []]));
  let state = policy.initialState(batch);
  for (let t = 0; t < steps; t++) {
    const rows = (array, size) => array.subarray(t * batch * size, (t + 1) * batch * size);
    const reset = resets.subarray(t * batch, (t + 1) * batch);
    const mask = masks && rows(masks, spec.maskSize);
    const result = await policy.run(rows(observations, spec.observationSize), batch, mask, null, { state, reset });
    for (const name of Object.keys(out)) out[name].push(nest(result[name], result.shapes[name]));
    state = result.state;
  }
  writeFileSync(values.out, JSON.stringify(out));
  console.error(`sequence of ${steps} steps x ${batch} rows, state carried: wrote ${Object.keys(out).join(', ')} to ${values.out}`);
  return { steps, rows: batch, out: values.out };
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      init: { type: 'string' },
      'max-steps': { type: 'string' },
      observations: { type: 'string' },
      masks: { type: 'string' },
      input: { type: 'string', multiple: true },
      out: { type: 'string' },
      sample: { type: 'string' },
      steps: { type: 'string' },
      resets: { type: 'string' },
    },
  });
  const [command, model] = positionals;
  if (!['info', 'cartpole', 'batch', 'sequence'].includes(command) || !model || positionals.length > 2) {
    console.error(USAGE);
    return 2;
  }
  const policy = await Policy.load(ort, readFileSync(model), SESSION_OPTIONS);
  printSummary(model, policy.spec);
  const result = { command, model, ...summary(policy.spec) };
  if (command === 'cartpole') Object.assign(result, await cartpole(policy, values));
  if (command === 'batch') Object.assign(result, await batch(policy, values));
  if (command === 'sequence') Object.assign(result, await sequence(policy, values));
  // Written, not logged: a pipe takes stdout asynchronously, and process.exit() would cut a
  // line longer than 64 KiB (a sampled episode's record) short. Exit once it is flushed.
  await new Promise((resolve, reject) =>
    process.stdout.write(`${JSON.stringify(result)}\n`, (error) => (error ? reject(error) : resolve())),
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    // One line, like export-policy's errors; exit 2 for a bad model or bad input.
    console.error(`error: ${error.message}`);
    process.exit(2);
  },
);
