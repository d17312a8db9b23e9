// Runs policyport artifacts on inputs given as JSON, in the browser: how the tests compare
// onnxruntime-web with JAX on any artifact (several observation inputs, a mask or none,
// whatever heads it has), and a way to check a deployment by hand.
//
// Query: one or more `case=URL`, each a JSON file
//   {"model": URL of the .onnx, "inputs": {inputName: {"shape": [batch, ...], "data": [...]}}}
// with inputs named as the artifact lists them (policyport.inputs): observation leaves as
// float32, `action_mask` as 0/1, and for a sample entry (contract 3) `noise` as float32 (e.g.
// policyport.sampling_noise's, to compare with JAX's samples). A recurrent artifact
// (contract 4) runs a sequence instead: the case adds `"resets": {"shape": [T, B], "data":
// [0/1, ...]}` and its inputs hold T steps (`[T, B, ...]`); the page carries the state from
// step to step (each call's next_state fed back, reset where the flag is 1) and returns every
// output as `[T, B, ...]`. Cases run one after another
// (onnxruntime-web's WASM backend is not made for sessions created concurrently). Sets
// `window.checkResult` to
//   {"cases": [{"model", "inputs": [names], "outputs": {name: {"shape", "data"}}}]}
// or {"error": message}.

import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

import { MASK, NOISE, Policy } from './lib/artifact.mjs';

ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.wasm.numThreads = 1;

const log = (line) => {
  document.getElementById('log').textContent += `${line}\n`;
};

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

// T steps of B rows, one call per step, the state carried: every output as [T, B, ...].
async function runSequence(policy, inputs, resets) {
  const { spec } = policy;
  const [steps, batch] = resets.shape;
  const slice = (data, size, t, Type) => Type.from(data.slice(t * batch * size, (t + 1) * batch * size));
  const outputs = Object.fromEntries(spec.outputs.map(({ name }) => [name, { shape: null, data: [] }]));
  let state = policy.initialState(batch);
  for (let t = 0; t < steps; t++) {
    const observations = Object.fromEntries(
      spec.observationInputs.map(({ name, size }) => [name, slice(inputs[name].data, size, t, Float32Array)]),
    );
    const masks = MASK in inputs ? slice(inputs[MASK].data, spec.maskSize, t, Uint8Array) : null;
    const reset = slice(resets.data, 1, t, Uint8Array);
    const out = await policy.run(observations, batch, masks, null, { state, reset });
    for (const [name, output] of Object.entries(outputs)) {
      output.shape = [steps, ...out.shapes[name]];
      output.data.push(...out[name]);
    }
    state = out.state;
  }
  return outputs;
}

async function runCase(url) {
  const { model, inputs, resets } = await (await fetchOk(url)).json();
  const policy = await Policy.load(ort, new Uint8Array(await (await fetchOk(model)).arrayBuffer()));
  const { spec } = policy;
  if (spec.state) {
    if (!resets) throw new Error(`${model} is recurrent (contract 4): its case needs "resets" [T, B] and inputs of T steps`);
    const outputs = await runSequence(policy, inputs, resets);
    log(`${model}: ${spec.inputs.map((i) => i.name).join(', ')} -> ${Object.keys(outputs).join(', ')} (${resets.shape[0]} steps x ${resets.shape[1]} rows, state carried)`);
    return { model, inputs: spec.inputs.map((i) => i.name), outputs };
  }
  const batch = inputs[spec.observationInputs[0].name].shape[0];
  const observations = Object.fromEntries(
    spec.observationInputs.map(({ name }) => [name, Float32Array.from(inputs[name].data)]),
  );
  const masks = MASK in inputs ? Uint8Array.from(inputs[MASK].data) : null;
  const noise = NOISE in inputs ? Float32Array.from(inputs[NOISE].data) : null;
  const out = await policy.run(observations, batch, masks, noise);
  const outputs = Object.fromEntries(
    spec.outputs.map(({ name }) => [name, { shape: out.shapes[name], data: Array.from(out[name]) }]),
  );
  log(`${model}: ${spec.inputs.map((i) => i.name).join(', ')} -> ${Object.keys(outputs).join(', ')} (batch ${batch})`);
  return { model, inputs: spec.inputs.map((i) => i.name), outputs };
}

try {
  const urls = new URLSearchParams(location.search).getAll('case');
  if (urls.length === 0) throw new Error('no ?case=URL given');
  const cases = [];
  for (const url of urls) cases.push(await runCase(url));
  window.checkResult = { cases };
} catch (error) {
  console.error(error);
  document.getElementById('error').textContent = error.message;
  window.checkResult = { error: error.message };
}
