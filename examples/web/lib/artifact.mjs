// Reading a policyport artifact (docs/artifact.md) and running it with ONNX Runtime.
//
// Shared by the Node program (examples/node, onnxruntime-node) and the web page
// (onnxruntime-web): both packages implement the same `onnxruntime-common` API, so the
// caller passes in whichever `ort` module it loaded.

import { drawNoise } from './random.mjs';

// The contract versions this consumer understands; docs/artifact.md asks consumers to refuse
// any other, because a new version may rename inputs or change what the outputs mean.
//   1 (2026-11-25): inputs observation[, action_mask]; outputs action, value.
//   2 (2026-12-02): one float32 input per observation leaf (`observation`, or
//     `observation.<key>` for Dict/Tuple leaves), then action_mask if the policy uses one;
//     outputs action, then the policy's heads (value, q_values). Both versions list their
//     inputs and outputs in the `policyport.inputs` / `policyport.outputs` metadata, which
//     is what this file reads: nothing below assumes a name but `action_mask` and `action`.
//   3 (2026-12-02): the sample entry `<stem>.sample.onnx` that `export-policy --sample`
//     writes beside the default entry (still version 2): a last input `noise` float32
//     [batch, noise_size] (its blocks in `policyport.noise`), last outputs `sampled_action`
//     (as `action`) and `log_prob` float32 [batch]. Both entries name each other in
//     `policyport.entries`; `policyport.entry` says which one a file is.
export const SUPPORTED_CONTRACT_VERSIONS = [1, 2, 3];
// The version that carries the sampling path (and only it).
const SAMPLING_CONTRACT_VERSION = 3;

const PREFIX = 'policyport.';
// ModelProto field 14 is `repeated StringStringEntryProto metadata_props` (key = 1, value = 2).
const MODEL_METADATA_PROPS = 14;

// onnxruntime-common exposes input and output metadata but not the model's
// `metadata_props`, so read them from the protobuf ourselves. Only the top level of the
// ModelProto is walked; every other field (the graph and its weights) is skipped by length.
export function readOnnxMetadata(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const metadata = {};
  for (const [field, value] of protobufFields(view)) {
    if (field !== MODEL_METADATA_PROPS) continue;
    const entry = {};
    for (const [f, v] of protobufFields(value)) entry[f] = new TextDecoder().decode(v);
    metadata[entry[1] ?? ''] = entry[2] ?? '';
  }
  return metadata;
}

// Yields [fieldNumber, value] for each field of one protobuf message; length-delimited values
// are Uint8Array views (not copies), the others are skipped over and yielded as null.
function* protobufFields(bytes) {
  let pos = 0;
  const varint = () => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (pos >= bytes.length) throw new Error('truncated protobuf varint');
      const byte = bytes[pos++];
      result += (byte & 0x7f) * scale; // multiplication, not <<, so values past 2^31 survive
      if (byte < 0x80) return result;
      scale *= 128;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      varint();
      yield [field, null];
    } else if (wireType === 1 || wireType === 5) {
      pos += wireType === 1 ? 8 : 4;
      yield [field, null];
    } else if (wireType === 2) {
      const length = varint();
      if (pos + length > bytes.length) throw new Error('truncated protobuf field');
      yield [field, bytes.subarray(pos, pos + length)];
      pos += length;
    } else {
      throw new Error(`not an ONNX model: protobuf wire type ${wireType} at byte ${pos}`);
    }
  }
}

// Infinite Box bounds are stored as the strings "inf" and "-inf" (JSON has no infinity).
const toNumber = (x) => (x === 'inf' ? Infinity : x === '-inf' ? -Infinity : x);

export const MASK = 'action_mask';
export const ACTION = 'action';
// The sample entry's (contract 3) extra input and outputs.
export const NOISE = 'noise';
export const SAMPLED_ACTION = 'sampled_action';
export const LOG_PROB = 'log_prob';
// Where ONNX Runtime's JS API and the metadata spell an element type differently.
const TENSOR_TYPES = { float32: 'float32', int64: 'int64', bool: 'bool' };
const REEXPORT = 're-export the policy with export-policy';

// One input or output as the metadata lists it ({name, shape: ["batch", ...], dtype}), with
// the per-row shape and element count a caller needs.
function tensorSpec(entry, where) {
  const { name, shape, dtype } = entry ?? {};
  const row = Array.isArray(shape) ? shape.slice(1) : null;
  if (typeof name !== 'string' || !row || shape[0] !== 'batch' || !row.every(Number.isInteger) || !(dtype in TENSOR_TYPES)) {
    throw new Error(
      `${where} lists ${JSON.stringify(entry)}; expected {name, shape: ["batch", ...sizes], ` +
        `dtype: float32|int64|bool}: ${REEXPORT}`,
    );
  }
  return { name, shape: row, dtype, size: row.reduce((a, b) => a * b, 1) };
}

// The sample entry's noise: its `noise` input and `policyport.noise` blocks, checked to tile
// [0, noise_size) in order. Returns {size, blocks: [{offset, shape, size, distribution}]}.
function noiseLayout(input, blocks) {
  const bad = (why) =>
    new Error(`the sample entry's noise ${why} (policyport.noise ${JSON.stringify(blocks)}); ${REEXPORT} --sample`);
  if (!input || input.dtype !== 'float32' || input.shape.length !== 1) {
    throw bad(`input is ${input ? `${input.dtype} [batch, ${input.shape}]` : 'missing'}, not the last input float32 [batch, noise_size]`);
  }
  if (!Array.isArray(blocks) || blocks.length === 0) throw bad('blocks are not a non-empty list');
  let offset = 0;
  const layout = blocks.map((block) => {
    const shape = block?.shape;
    if (block?.offset !== offset || !Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0) || typeof block.distribution !== 'string') {
      throw bad(`block ${JSON.stringify(block)} is not {offset: ${offset}, shape: [...], distribution}`);
    }
    const size = shape.reduce((a, b) => a * b, 1);
    offset += size;
    return { offset: block.offset, shape, size, distribution: block.distribution };
  });
  if (offset !== input.size) throw bad(`blocks cover ${offset} values, the input has ${input.size}`);
  return { size: input.size, blocks: layout };
}

// Checks the contract version and decodes the JSON-valued keys into a plain description.
// `inputs` and `outputs` come from the artifact itself, in its order: observation inputs
// first (one per observation leaf), then the mask if the policy takes one, then `noise` for a
// sample entry; `action`, then the heads (e.g. `value`, `q_values`), then `sampled_action`
// and `log_prob` for a sample entry.
export function describeArtifact(metadata) {
  const raw = metadata[`${PREFIX}contract_version`];
  if (raw === undefined) {
    throw new Error(
      'not a policyport artifact: no policyport.contract_version in the model metadata; ' +
        'export it with `export-policy`',
    );
  }
  const version = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !SUPPORTED_CONTRACT_VERSIONS.includes(version)) {
    throw new Error(
      `unsupported artifact contract version ${raw} (written by policyport ` +
        `${metadata[`${PREFIX}policyport_version`] ?? '?'}); this consumer knows versions ` +
        `${SUPPORTED_CONTRACT_VERSIONS.join(', ')}: use a consumer written for version ${raw}, ` +
        'or re-export with a policyport that writes a supported version',
    );
  }
  const json = (key) => {
    if (metadata[PREFIX + key] === undefined) {
      throw new Error(`the artifact has no ${PREFIX}${key} metadata; ${REEXPORT}`);
    }
    return JSON.parse(metadata[PREFIX + key]);
  };
  const sampling = version === SAMPLING_CONTRACT_VERSION;
  const observationSpace = json('observation_space');
  const inputs = json('inputs').map((entry) => tensorSpec(entry, `${PREFIX}inputs`));
  const outputs = json('outputs').map((entry) => tensorSpec(entry, `${PREFIX}outputs`));
  const noiseInput = sampling ? inputs.at(-1) : null;
  const noise = sampling ? noiseLayout(noiseInput?.name === NOISE ? noiseInput : null, json('noise')) : null;
  const maskInput = inputs.find((i) => i.name === MASK) ?? null;
  const observationInputs = inputs.filter((i) => i !== maskInput && i !== noiseInput);
  const actionOutput = outputs.find((o) => o.name === ACTION);
  const badInput = observationInputs.find((i) => i.dtype !== 'float32' || !(i.name === 'observation' || i.name.startsWith('observation.')));
  if (badInput || (maskInput && (maskInput.dtype !== 'bool' || maskInput.shape.length !== 1))) {
    const what = badInput ?? maskInput;
    throw new Error(
      `input ${JSON.stringify(what.name)} (${what.dtype} [batch, ${what.shape}]) is not the contract's: ` +
        'observation inputs are float32 `observation` or `observation.<key>`, the mask is bool ' +
        `[batch, mask_size]${sampling ? ', then float32 `noise`' : ''}; ${REEXPORT}`,
    );
  }
  // A sample entry ends with sampled_action (as action) and log_prob (float32 [batch]).
  const [sampled, logProb] = sampling ? outputs.slice(-2) : [null, null];
  const heads = outputs.slice(1, sampling ? -2 : undefined);
  const sampledOk =
    !sampling ||
    (sampled?.name === SAMPLED_ACTION && sampled.dtype === actionOutput?.dtype && sampled.size === actionOutput?.size &&
      logProb?.name === LOG_PROB && logProb.dtype === 'float32' && logProb.shape.length === 0);
  if (!actionOutput || outputs[0] !== actionOutput || heads.some((o) => o.dtype !== 'float32') || !sampledOk) {
    throw new Error(
      `outputs ${JSON.stringify(outputs.map((o) => o.name))}: the contract's are \`action\` first, ` +
        `then float32 heads${sampling ? ', then `sampled_action` (as `action`) and float32 `log_prob`' : ''}; ${REEXPORT}`,
    );
  }
  return {
    contractVersion: version,
    policyportVersion: metadata[`${PREFIX}policyport_version`],
    format: metadata[`${PREFIX}format`],
    policyClass: metadata[`${PREFIX}policy_class`],
    observationSpace, // as written: infinite bounds stay "inf" strings, fit for JSON
    observationBounds: {
      low: observationSpace.low?.map(toNumber),
      high: observationSpace.high?.map(toNumber),
    },
    actionSpace: json('action_space'),
    inputs,
    outputs,
    observationInputs,
    // The values of one observation, all leaves concatenated in input order.
    observationSize: observationInputs.reduce((total, i) => total + i.size, 0),
    maskSize: maskInput ? maskInput.size : null,
    actionShape: actionOutput.shape,
    heads: heads.map((o) => o.name),
    // "default" or "sample"; files written before entries existed are plain, i.e. default.
    entry: metadata[`${PREFIX}entry`] ?? 'default',
    // {default: file, sample: file} (names in the artifact's folder), or null without --sample.
    entries: metadata[`${PREFIX}entries`] === undefined ? null : json('entries'),
    // The sample entry's {size, blocks}; null for a default entry (it cannot sample).
    noise,
    weightsSha256: metadata[`${PREFIX}weights_sha256`],
  };
}

// Rebuilds a row-major flat array as nested arrays of `shape` (for JSON output).
export function nest(flat, shape) {
  if (shape.length <= 1) return Array.from(flat);
  const stride = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] }, (_, i) =>
    nest(flat.slice(i * stride, (i + 1) * stride), shape.slice(1)),
  );
}

// Why an artifact without a `noise` input cannot sample, and where its sample entry is.
export function cannotSample(spec) {
  const { contractVersion, entry, entries } = spec;
  const where = entries?.sample
    ? `load its sample entry ${JSON.stringify(entries.sample)} (policyport.entries; same folder)`
    : 'export the policy with `export-policy ... --sample` and load the sample entry it writes (<stem>.sample.onnx)';
  return `this artifact is the ${entry} entry (contract ${contractVersion}, no \`${NOISE}\` input): it cannot sample; ${where}`;
}

const sameNames = (a, b) => a.length === b.length && a.every((name) => b.includes(name));

export class Policy {
  // `ort` is the onnxruntime-node or onnxruntime-web module; `bytes` the .onnx file.
  static async load(ort, bytes, sessionOptions = {}) {
    const model = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const spec = describeArtifact(readOnnxMetadata(model));
    const session = await ort.InferenceSession.create(model, sessionOptions);
    return new Policy(ort, session, spec);
  }

  constructor(ort, session, spec) {
    const names = (list) => list.map((t) => t.name);
    if (!sameNames(session.inputNames, names(spec.inputs)) || !sameNames(session.outputNames, names(spec.outputs))) {
      throw new Error(
        `the model's inputs ${JSON.stringify(session.inputNames)} and outputs ` +
          `${JSON.stringify(session.outputNames)} are not the ones its metadata lists ` +
          `(${JSON.stringify(names(spec.inputs))}, ${JSON.stringify(names(spec.outputs))}): ` +
          'the file was edited after export; re-export the policy with export-policy',
      );
    }
    this.ort = ort;
    this.session = session;
    this.spec = spec;
    this.masked = spec.maskSize !== null;
  }

  // Runs a batch of `batch` rows and returns every output by name, flat and row-major:
  // `action` (and `sampled_action`) as plain numbers (int64 comes back from ORT as
  // BigInt64Array), each float output as a Float32Array, and `shapes` ({name: [batch, ...]}).
  //
  // `observations`: a Float32Array of `batch * observationSize` values, each row the
  //   observation's leaves concatenated in input order (for a plain Box space, simply the
  //   observation); or an object {inputName: Float32Array of batch * size} with one entry per
  //   observation input (`observation.pos`, ...).
  // `masks`: a Uint8Array of `batch * maskSize` 0/1 values (1 = allowed), or null for
  //   "everything allowed"; refused for a policy that takes no mask.
  // `noise` (a sample entry only, where it is required): a Float32Array of
  //   `batch * spec.noise.size` values (e.g. policyport.sampling_noise's, to reproduce JAX), or
  //   a generator (random.mjs's Xoshiro128) to draw the documented noise from. The noise used
  //   is returned as `noise`.
  async run(observations, batch, masks = null, noise = null) {
    const { Tensor } = this.ort;
    const feeds = {};
    for (const [input, values] of this.#split(observations, batch)) {
      feeds[input.name] = new Tensor('float32', values, [batch, ...input.shape]);
    }
    if (this.masked) {
      const nMask = this.spec.maskSize;
      const mask = masks ?? new Uint8Array(batch * nMask).fill(1);
      if (mask.length !== batch * nMask) {
        throw new Error(`expected ${batch} x ${nMask} mask values, got ${mask.length}`);
      }
      // ORT's bool tensors take one byte per element.
      feeds[MASK] = new Tensor('bool', Uint8Array.from(mask, (m) => (m ? 1 : 0)), [batch, nMask]);
    } else if (masks !== null) {
      throw new Error(`this policy takes no ${MASK} (its inputs: ${this.spec.inputs.map((i) => i.name).join(', ')}); pass none`);
    }
    let used = null;
    if (this.spec.noise) {
      used = this.#noise(noise, batch);
      feeds[NOISE] = new Tensor('float32', used, [batch, this.spec.noise.size]);
    } else if (noise !== null) {
      throw new Error(cannotSample(this.spec));
    }
    const out = await this.session.run(feeds);
    const result = { shapes: {} };
    for (const { name, dtype } of this.spec.outputs) {
      const { data, dims } = out[name];
      result[name] = dtype === 'int64' ? Array.from(data, Number) : Float32Array.from(data);
      result.shapes[name] = dims.map(Number);
    }
    if (used) result[NOISE] = used;
    return result;
  }

  // One observation (see run()); returns its deterministic action (the mode): a number for a
  // scalar action (Discrete), an array otherwise. On a sample entry too: `action` does not
  // read the noise, so zeros are fed.
  async act(observation, mask = null) {
    const noise = this.spec.noise ? new Float32Array(this.spec.noise.size) : null;
    const { action } = await this.run(observation, 1, mask, noise);
    return this.spec.actionShape.length === 0 ? action[0] : action;
  }

  // One sampled action for one observation, from a sample entry: `rng` is a generator
  // (Xoshiro128.fromSeed(seed)) that draws the documented noise, or the noise itself (a
  // Float32Array of spec.noise.size values) to reproduce a given sample exactly. Returns
  // {action, logProb, noise, mode}: `action` as act() shapes it, `logProb` the policy's
  // log-probability of it, `noise` what was fed, `mode` the deterministic action (the same
  // call computes both). A default entry refuses, naming its sample entry.
  async sample(observation, mask = null, rng = null) {
    if (!this.spec.noise) throw new Error(cannotSample(this.spec));
    if (rng === null) throw new Error('sample(observation, mask, rng) needs a generator (Xoshiro128.fromSeed(seed)) or the noise');
    const out = await this.run(observation, 1, mask, rng);
    const one = (values) => (this.spec.actionShape.length === 0 ? values[0] : values);
    return { action: one(out[SAMPLED_ACTION]), logProb: out[LOG_PROB][0], noise: out[NOISE], mode: one(out[ACTION]) };
  }

  // The noise to feed a sample entry: given values checked, or drawn from a generator.
  #noise(noise, batch) {
    const { size, blocks } = this.spec.noise;
    if (noise === null) {
      throw new Error(
        `this sample entry takes a \`${NOISE}\` input (${size} values a row): pass a generator ` +
          '(Xoshiro128.fromSeed(seed)) or the noise; act() gives the deterministic action',
      );
    }
    if (ArrayBuffer.isView(noise)) {
      if (noise.length !== batch * size) throw new Error(`expected ${batch} x ${size} noise values, got ${noise.length}`);
      return noise instanceof Float32Array ? noise : Float32Array.from(noise);
    }
    return drawNoise(blocks, size, noise, batch);
  }

  // [input spec, Float32Array] per observation input, from either form run() accepts.
  #split(observations, batch) {
    const inputs = this.spec.observationInputs;
    if (ArrayBuffer.isView(observations)) {
      const size = this.spec.observationSize;
      if (observations.length !== batch * size) {
        throw new Error(
          `expected ${batch} x ${size} observation values (${inputs.map((i) => `${i.name} ${i.size}`).join(' + ')} per row), got ${observations.length}`,
        );
      }
      if (inputs.length === 1) return [[inputs[0], observations instanceof Float32Array ? observations : Float32Array.from(observations)]];
      // De-interleave: row r's leaf i sits at r * size + offset_i.
      let offset = 0;
      return inputs.map((input) => {
        const values = new Float32Array(batch * input.size);
        for (let r = 0; r < batch; r++) {
          values.set(observations.subarray(r * size + offset, r * size + offset + input.size), r * input.size);
        }
        offset += input.size;
        return [input, values];
      });
    }
    const given = Object.keys(observations);
    if (!sameNames(given, inputs.map((i) => i.name))) {
      throw new Error(`expected observation inputs ${JSON.stringify(inputs.map((i) => i.name))}, got ${JSON.stringify(given)}`);
    }
    return inputs.map((input) => {
      const values = observations[input.name];
      if (values.length !== batch * input.size) {
        throw new Error(`expected ${batch} x ${input.size} values for ${input.name}, got ${values.length}`);
      }
      return [input, Float32Array.from(values)];
    });
  }
}
