#!/usr/bin/env node
// Runs a policyport ONNX artifact from Node.js with onnxruntime-node.
//
//   node run_policy.mjs info MODEL.onnx
//   node run_policy.mjs cartpole MODEL.onnx [--init x,x_dot,theta,theta_dot] [--max-steps 500]
//   node run_policy.mjs batch MODEL.onnx --observations OBS.f32 [--masks MASKS.u8] --out OUT.json
//
// Each command prints a summary to stderr and exactly one JSON line to stdout.
// Batch files are raw and row-major: observations float32 little-endian [N, *obs_shape],
// masks uint8 0/1 [N, mask_size]; N comes from the observation file's size.

import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as ort from 'onnxruntime-node';

// The artifact reader and the CartPole dynamics are shared with the web page.
import { Policy, nest } from '../web/lib/artifact.mjs';
import { DEFAULT_INITIAL_STATE, MAX_STEPS, checkPolicy, runEpisode } from '../web/lib/cartpole.mjs';

const USAGE = `usage:
  node run_policy.mjs info MODEL.onnx
  node run_policy.mjs cartpole MODEL.onnx [--init x,x_dot,theta,theta_dot] [--max-steps N]
  node run_policy.mjs batch MODEL.onnx --observations OBS.f32 [--masks MASKS.u8] --out OUT.json`;

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
    inputs: spec.inputs,
    outputs: spec.outputs,
    weights_sha256: spec.weightsSha256,
  };
}

function printSummary(model, spec) {
  const space = (s) => JSON.stringify(s);
  console.error(`${model}: policyport contract v${spec.contractVersion}, ${spec.policyClass}`);
  console.error(`  observation space ${space(spec.observationSpace)}`);
  console.error(`  action space      ${space(spec.actionSpace)}`);
}

async function cartpole(policy, values) {
  checkPolicy(policy.spec);
  const initialState = values.init ? values.init.split(',').map(Number) : DEFAULT_INITIAL_STATE;
  if (initialState.length !== 4 || initialState.some(Number.isNaN)) {
    throw new Error(`--init needs 4 comma-separated numbers, got ${JSON.stringify(values.init)}`);
  }
  const maxSteps = values['max-steps'] ? Number(values['max-steps']) : MAX_STEPS;
  const started = performance.now();
  const act = async (observation) => (await policy.run(observation, 1)).action[0];
  const episode = await runEpisode(act, { initialState, maxSteps });
  const seconds = (performance.now() - started) / 1000;
  console.error(
    `CartPole from [${initialState}]: return ${episode.return} in ${episode.steps} steps ` +
      `(${episode.terminated ? 'terminated' : 'time limit'}), ${(seconds * 1000).toFixed(0)} ms`,
  );
  return { initial_state: initialState, max_steps: maxSteps, ...episode, seconds };
}

async function batch(policy, values) {
  const { observationSize, maskSize } = policy.spec;
  if (!values.observations || !values.out) throw new Error('batch needs --observations and --out');
  // Copy into a fresh buffer: Node's Buffer may sit at an offset not aligned for float32.
  const obsBytes = new Uint8Array(readFileSync(values.observations));
  const rowBytes = 4 * observationSize;
  if (obsBytes.length % rowBytes !== 0) {
    throw new Error(`${values.observations}: ${obsBytes.length} bytes is not a whole number of ${rowBytes}-byte rows`);
  }
  const n = obsBytes.length / rowBytes;
  const observations = new Float32Array(obsBytes.buffer, 0, n * observationSize);
  let masks = null;
  if (values.masks) {
    if (maskSize === null) throw new Error(`this policy's action space has no mask; drop --masks`);
    masks = new Uint8Array(readFileSync(values.masks));
    if (masks.length !== n * maskSize) {
      throw new Error(`${values.masks}: expected ${n} x ${maskSize} bytes, got ${masks.length}`);
    }
  }
  const out = await policy.run(observations, n, masks);
  writeFileSync(values.out, JSON.stringify({ action: nest(out.action, out.actionShape), value: Array.from(out.value) }));
  console.error(`batch of ${n}: wrote ${values.out}`);
  return { rows: n, out: values.out };
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      init: { type: 'string' },
      'max-steps': { type: 'string' },
      observations: { type: 'string' },
      masks: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const [command, model] = positionals;
  if (!['info', 'cartpole', 'batch'].includes(command) || !model || positionals.length > 2) {
    console.error(USAGE);
    return 2;
  }
  const policy = await Policy.load(ort, readFileSync(model), SESSION_OPTIONS);
  printSummary(model, policy.spec);
  const result = { command, model, ...summary(policy.spec) };
  if (command === 'cartpole') Object.assign(result, await cartpole(policy, values));
  if (command === 'batch') Object.assign(result, await batch(policy, values));
  console.log(JSON.stringify(result));
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
