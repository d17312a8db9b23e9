// Runs policyport artifacts on inputs given as JSON, in the browser: how the tests compare
// onnxruntime-web with JAX on any artifact (several observation inputs, a mask or none,
// whatever heads it has), and a way to check a deployment by hand.
//
// Query: one or more `case=URL`, each a JSON file
//   {"model": URL of the .onnx, "inputs": {inputName: {"shape": [batch, ...], "data": [...]}}}
// with inputs named as the artifact lists them (policyport.inputs): observation leaves as
// float32, `action_mask` as 0/1, and for a sample entry (contract 3) `noise` as float32 (e.g.
// policyport.sampling_noise's, to compare with JAX's samples). Cases run one after another
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

async function runCase(url) {
  const { model, inputs } = await (await fetchOk(url)).json();
  const policy = await Policy.load(ort, new Uint8Array(await (await fetchOk(model)).arrayBuffer()));
  const { spec } = policy;
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
