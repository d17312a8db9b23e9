// Loads artifacts as the page does and reports what it makes of each: how the tests run the
// hostile-artifact corpus (tests/hostile_artifacts.py) through the browser's reader, and a way
// to check a file by hand before deploying it.
//
// Query: one or more `model=URL`. Each is fetched, loaded with onnxruntime-web (Policy.load:
// the metadata's rules and limits, then the model's inputs and outputs against it), and the
// files its policyport.entries name are resolved as app.mjs resolves them (entryUrl), without
// fetching them. Models are loaded one after another. Sets `window.inspectResult` to
//   {"models": [{"model": URL, "accepted": true} | {"model": URL, "accepted": false, "error": message}]}

import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

import { Policy, entryUrl } from './lib/artifact.mjs';

ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.wasm.numThreads = 1;

async function inspect(url) {
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const policy = await Policy.load(ort, new Uint8Array(await response.arrayBuffer()));
    const base = new URL(url, location.href).href;
    for (const file of Object.values(policy.spec.entries ?? {})) entryUrl(file, base);
    await policy.session.release();
    return { model: url, accepted: true };
  } catch (error) {
    return { model: url, accepted: false, error: String(error?.message ?? error) };
  }
}

const models = [];
for (const url of new URLSearchParams(location.search).getAll('model')) {
  const result = await inspect(url);
  document.getElementById('log').textContent += `${url}: ${result.accepted ? 'accepted' : result.error}\n`;
  models.push(result);
}
window.inspectResult = { models };
