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
//   4 (2026-12-05): recurrent policies: after the mask, the state leaves (float32 `state`, or
//     `state.<path>` per leaf, [batch, *leaf_shape]) and `reset` bool [batch] (rows that
//     start from the policy's initial state); after the heads, `next_state` /
//     `next_state.<path>`, one per state input in the same order; metadata
//     `policyport.state`. Both entries of a sampled recurrent policy declare 4.
//   5 (2026-12-05): an observation input may be an integer type (uint8 camera frames; also
//     int8, uint16, int16, int32), as its Box declares; such an artifact declares 5, with or
//     without the sampling path or state (versions add up), and is fed that type (a
//     Uint8Array for uint8).
export const SUPPORTED_CONTRACT_VERSIONS = [1, 2, 3, 4, 5];
// The version that introduced the sampling path (a recurrent sample entry declares 4).
const SAMPLING_CONTRACT_VERSION = 3;
// The version that introduced state (a recurrent artifact with frames declares 5).
const RECURRENT_CONTRACT_VERSION = 4;
const TYPED_OBSERVATION_CONTRACT_VERSION = 5;
// The observation inputs' types and the typed arrays that feed them.
// The integer observation types' ranges, both bounds included.
const INTEGER_RANGES = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
};
export const OBSERVATION_ARRAYS = {
  float32: Float32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  int32: Int32Array,
};

const PREFIX = 'policyport.';
// ModelProto field 14 is `repeated StringStringEntryProto metadata_props` (key = 1, value = 2).
const MODEL_METADATA_PROPS = 14;

// The limits every consumer applies to what an artifact's metadata says (docs/artifact.md,
// "Limits"; examples/cpp/policyport.hpp holds the same numbers). Files beyond them are refused
// when loading, so no size computed from a file can overflow or run away.
export const LIMITS = Object.freeze({
  metadataKeys: 1024, // metadata entries in all
  keyBytes: 256, // each key
  valueBytes: 1 << 20, // each value a consumer reads
  jsonDepth: 32, // nested lists and objects in a value
  tensors: 16, // inputs, and outputs
  rank: 8, // dimensions of a tensor, batch included
  rowElements: 1 << 24, // one row of a tensor; every dimension too; the observation inputs together
  noiseBlocks: 4096, // blocks of policyport.noise
  nameBytes: 256, // tensor and distribution names
  fileNameBytes: 255, // each file of policyport.entries
  quotedBytes: 200, // of a value quoted in a message
});

// The metadata keys a consumer reads (the others are only counted).
const READ_KEYS = [
  'contract_version', 'policyport_version', 'format', 'policy_class', 'observation_space', 'action_space',
  'inputs', 'outputs', 'noise', 'entry', 'entries', 'weights_sha256', 'state',
].map((key) => PREFIX + key);

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const byteLength = (text) => new TextEncoder().encode(text).length;

// `text` for a message: in quotes, cut to LIMITS.quotedBytes, control characters escaped
// (a hostile value can be megabytes long, or hold terminal escapes).
export function quote(text) {
  const value = String(text);
  const shown = value.slice(0, LIMITS.quotedBytes).replace(/[\u0000-\u001f\u007f\\]/g, (c) =>
    c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return value.length > LIMITS.quotedBytes ? `'${shown}...' (${byteLength(value)} bytes in all)` : `'${shown}'`;
}

const REEXPORT = 're-export the policy with export-policy';
const refuse = (what) => new Error(`${what} (docs/artifact.md); ${REEXPORT}`);

// onnxruntime-common exposes input and output metadata but not the model's
// `metadata_props`, so read them from the protobuf ourselves. Only the top level of the
// ModelProto is walked; every other field (the graph and its weights) is skipped by length.
// Keys are counted, checked and never repeated; the values a consumer reads are checked
// (length, UTF-8, no NUL) as they are decoded. The C++ wrapper reads them the same way.
export function readOnnxMetadata(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const metadata = {};
  let count = 0;
  for (const [field, value] of protobufFields(view)) {
    if (field !== MODEL_METADATA_PROPS) continue;
    if (++count > LIMITS.metadataKeys) {
      throw refuse(`the model has more than ${LIMITS.metadataKeys} metadata keys, the most a policyport artifact may have`);
    }
    const entry = {};
    for (const [f, v] of protobufFields(value)) if (v) entry[f] = v;
    const key = decodeKey(entry[1] ?? new Uint8Array());
    if (Object.hasOwn(metadata, key)) throw refuse(`the model has the metadata key ${quote(key)} twice`);
    metadata[key] = decodeValue(key, entry[2] ?? new Uint8Array());
  }
  return metadata;
}

function decodeKey(bytes) {
  let key = null;
  try {
    key = bytes.length <= LIMITS.keyBytes ? strictUtf8.decode(bytes) : null;
  } catch {
    key = null;
  }
  if (key === null || key.includes('\0')) {
    const shown = new TextDecoder().decode(bytes.subarray(0, LIMITS.quotedBytes));
    throw refuse(`the model has the metadata key ${quote(shown)}, not UTF-8 text of at most ${LIMITS.keyBytes} bytes without NUL`);
  }
  return key;
}

// A value a consumer reads: checked; any other: decoded as it comes (it is never looked at).
function decodeValue(key, bytes) {
  if (!READ_KEYS.includes(key)) return new TextDecoder().decode(bytes);
  if (bytes.length > LIMITS.valueBytes) {
    throw refuse(`its ${key} metadata holds ${bytes.length} bytes, more than the ${LIMITS.valueBytes} a value may hold`);
  }
  let value = null;
  try {
    value = strictUtf8.decode(bytes);
  } catch {
    value = null;
  }
  if (value === null || value.includes('\0')) {
    const shown = new TextDecoder().decode(bytes.subarray(0, LIMITS.quotedBytes));
    throw refuse(`its ${key} metadata ${quote(shown)} is not UTF-8 text without NUL characters`);
  }
  return value;
}

// Yields [fieldNumber, value] for each field of one protobuf message; length-delimited values
// are Uint8Array views (not copies), the others are skipped over and yielded as null.
function* protobufFields(bytes) {
  let pos = 0;
  const malformed = (what) => new Error(`the model is not a well-formed ONNX protobuf: ${what}`);
  // At most 10 bytes, and a value JavaScript holds exactly (below 2^53).
  const varint = () => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) throw malformed('a varint is cut short');
      const byte = bytes[pos++];
      if (i === 7 && (byte & 0x7f) > 0xf) throw malformed('a varint exceeds 2^53');
      result += (byte & 0x7f) * scale; // multiplication, not <<, so values past 2^31 survive
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw malformed('a varint is longer than 10 bytes');
  };
  while (pos < bytes.length) {
    const tag = varint();
    if (tag >= 2 ** 32) throw malformed('a field number exceeds 2^29');
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      varint();
      yield [field, null];
    } else if (wireType === 1 || wireType === 5) {
      const length = wireType === 1 ? 8 : 4;
      if (length > bytes.length - pos) throw malformed('a fixed-size field is cut short');
      pos += length;
      yield [field, null];
    } else if (wireType === 2) {
      const length = varint();
      if (length > bytes.length - pos) throw malformed('a field is longer than what holds it');
      yield [field, bytes.subarray(pos, pos + length)];
      pos += length;
    } else {
      throw malformed('a field has a wire type other than 0, 1, 2 and 5');
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
// A recurrent policy's (contract 4) state inputs and outputs, and the reset input.
export const STATE = 'state';
export const NEXT_STATE = 'next_state';
export const RESET = 'reset';
const isLeafOf = (name, base) => name === base || name.startsWith(`${base}.`);
const VALUE = 'value';
const Q_VALUES = 'q_values';
const DTYPES = new Set(['float32', 'int64', 'bool', 'uint8', 'int8', 'uint16', 'int16', 'int32']);

// JSON.parse reads any depth, and keeps the last of two members of one name where the C++
// wrapper's reader would see the first: this scan (run on text JSON.parse accepts) refuses
// both, so that the consumers read the same values.
function jsonShapeProblem(text) {
  const stack = []; // per open container: null for a list, {keys, expectKey} for an object
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[' || c === '{') {
      stack.push(c === '[' ? null : { keys: new Set(), expectKey: true });
      if (stack.length > LIMITS.jsonDepth) return `nests lists and objects more than ${LIMITS.jsonDepth} deep`;
    } else if (c === ']' || c === '}') {
      stack.pop();
    } else if (c === ',' && stack.at(-1)) {
      stack.at(-1).expectKey = true;
    } else if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      const top = stack.at(-1);
      if (top?.expectKey) {
        const key = JSON.parse(text.slice(start, i + 1));
        if (top.keys.has(key)) return `names the member ${quote(key)} twice`;
        top.keys.add(key);
        top.expectKey = false;
      }
    }
  }
  return null;
}

// policyport.<key> as JSON: refused when missing (if `required`), not JSON, nested too deep or
// naming a member twice.
function readJson(metadata, key, required = true) {
  const text = metadata[PREFIX + key];
  if (text === undefined) {
    if (required) throw refuse(`the artifact has no ${PREFIX}${key} metadata`);
    return undefined;
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw refuse(`its ${PREFIX}${key} metadata is not JSON: ${quote(text)}`);
  }
  const problem = jsonShapeProblem(text);
  if (problem) throw refuse(`its ${PREFIX}${key} metadata ${problem}: ${quote(text)}`);
  return value;
}

const isObject = (x) => typeof x === 'object' && x !== null && !Array.isArray(x);
const isCount = (x, most) => Number.isInteger(x) && x >= 0 && x <= most;

// A row shape's problem ("" when it has at most `LIMITS.rank - 1` dimensions, each from 1 to
// LIMITS.rowElements, their product at most LIMITS.rowElements), and its element count.
function rowShape(dims) {
  if (dims.length > LIMITS.rank - 1) {
    return { problem: `has ${dims.length} dimensions, more than the ${LIMITS.rank - 1} allowed` };
  }
  let size = 1;
  for (const d of dims) {
    if (!isCount(d, LIMITS.rowElements) || d === 0) {
      return { problem: `has a dimension that is not an integer from 1 to ${LIMITS.rowElements}` };
    }
    size *= d;
    if (size > LIMITS.rowElements) return { problem: `has more than ${LIMITS.rowElements} elements per row` };
  }
  return { problem: '', size };
}

// policyport.inputs / policyport.outputs: [{name, dtype, shape: ["batch", ...]}], each with
// the per-row shape and element count a caller needs.
function tensorTable(metadata, key) {
  const list = readJson(metadata, key);
  const where = `its ${PREFIX}${key} metadata`;
  if (!Array.isArray(list) || list.length === 0 || list.length > LIMITS.tensors) {
    throw refuse(`${where} is not a list of 1 to ${LIMITS.tensors} tensors`);
  }
  return list.map((entry) => {
    const { name, dtype, shape } = isObject(entry) ? entry : {};
    const nameOk = typeof name === 'string' && name.length > 0 && byteLength(name) <= LIMITS.nameBytes;
    if (!nameOk || !DTYPES.has(dtype) || !Array.isArray(shape) || shape[0] !== 'batch') {
      throw refuse(
        `${where} lists a tensor that is not {"name" (1 to ${LIMITS.nameBytes} bytes), ` +
          '"dtype": float32|int64|bool|uint8|int8|uint16|int16|int32, "shape": ["batch", ...]}',
      );
    }
    const row = shape.slice(1);
    const { problem, size } = rowShape(row);
    if (problem) throw refuse(`${where}: ${quote(name)} ${problem}`);
    return { name, shape: row, dtype, size };
  });
}

const shapeText = (shape) => `[batch${shape.map((d) => `, ${d}`).join('')}]`;
const sameShape = (a, b) => a.length === b.length && a.every((d, i) => d === b[i]);

// The inputs' roles: observation leaves (float32), then bool action_mask [batch, n], then
// float32 noise [batch, n] (a sample entry, the last input).
function inputRoles(inputs) {
  const hasNoise = inputs.at(-1).name === NOISE;
  // Inputs after the mask: the state leaves and reset (contract 4), then noise.
  const afterMask = (i) => inputs.slice(i + 1).every((x) => isLeafOf(x.name, STATE) || x.name === RESET || x.name === NOISE);
  const roles = { observationInputs: [], observationSize: 0, maskInput: null, noiseInput: null, stateInputs: [], resetInput: null };
  inputs.forEach((input, i) => {
    const what = `${quote(input.name)} (${input.dtype} ${shapeText(input.shape)})`;
    if (input.name === MASK) {
      if (input.dtype !== 'bool' || input.shape.length !== 1 || !afterMask(i)) {
        throw refuse(`input ${what} is not the contract's bool [batch, mask_size], the last input (or the last before the state, reset and noise)`);
      }
      roles.maskInput = input;
    } else if (isLeafOf(input.name, STATE)) {
      const next = inputs[i + 1]?.name ?? '';
      if (input.dtype !== 'float32' || !(isLeafOf(next, STATE) || next === RESET)) {
        throw refuse(`input ${what} is not a contract state leaf: float32, after the observation and the mask, before 'reset'`);
      }
      roles.stateInputs.push(input);
    } else if (input.name === RESET) {
      if (input.dtype !== 'bool' || input.shape.length !== 0 || roles.stateInputs.length === 0 || i + 1 + (hasNoise ? 1 : 0) !== inputs.length) {
        throw refuse(`input ${what} is not the contract's bool [batch] 'reset', after the state leaves (the last input, or the last before noise)`);
      }
      roles.resetInput = input;
    } else if (input.name === NOISE) {
      if (input.dtype !== 'float32' || input.shape.length !== 1 || i + 1 !== inputs.length) {
        throw refuse(`input ${what} is not the contract's float32 [batch, noise_size], the last input`);
      }
      roles.noiseInput = input;
    } else if (!(input.name === 'observation' || input.name.startsWith('observation.')) || !(input.dtype in OBSERVATION_ARRAYS)) {
      throw refuse(
        `input ${what} is not one of the contract's: float32 (or integer) 'observation' or 'observation.<key>', ` +
          "then bool 'action_mask', then float32 'noise'",
      );
    } else {
      roles.observationInputs.push(input);
      roles.observationSize += input.size;
      if (roles.observationSize > LIMITS.rowElements) {
        throw refuse(`its observation inputs hold more than ${LIMITS.rowElements} values per row`);
      }
    }
  });
  if (roles.observationInputs.length === 0) throw refuse('the model has no observation input');
  if (roles.stateInputs.length > 0 && roles.resetInput === null) throw refuse("it has state inputs but no 'reset' input");
  return roles;
}

// The outputs' roles: action (int64, or float32 for Box), float32 heads, then (a sample
// entry) sampled_action as action and float32 log_prob [batch].
function outputRoles(outputs) {
  const [action] = outputs;
  if (action.name !== ACTION || (action.dtype !== 'int64' && action.dtype !== 'float32')) {
    throw refuse(`the first output is ${quote(action.name)} (${action.dtype}), not the contract's 'action' (int64, or float32 for Box)`);
  }
  const heads = [];
  const nextState = [];
  let sampled = false;
  let logProb = false;
  outputs.slice(1).forEach((output, k) => {
    const i = k + 1;
    if (isLeafOf(output.name, NEXT_STATE)) {
      if (output.dtype !== 'float32' || sampled) {
        throw refuse(`output ${quote(output.name)} (${output.dtype}) is not a contract next_state leaf: float32, after the heads`);
      }
      nextState.push(output);
    } else if (output.name === SAMPLED_ACTION) {
      if (i + 2 !== outputs.length || output.dtype !== action.dtype || !sameShape(output.shape, action.shape)) {
        throw refuse(
          `sampled_action is ${output.dtype} ${shapeText(output.shape)} at output ${i}; the contract's is the ` +
            'second-to-last output, of the dtype and shape of action',
        );
      }
      sampled = true;
    } else if (output.name === LOG_PROB) {
      if (!sampled || output.dtype !== 'float32' || output.shape.length !== 0) {
        throw refuse(`log_prob is ${output.dtype} ${shapeText(output.shape)}; the contract's is float32 [batch], the last output, after sampled_action`);
      }
      logProb = true;
    } else if (output.dtype !== 'float32' || sampled || nextState.length > 0) {
      throw refuse(`output ${quote(output.name)} (${output.dtype}) is not a head; the contract's heads are float32, after action`);
    } else if ((output.name === VALUE && output.shape.length !== 0) || (output.name === Q_VALUES && output.shape.length !== 1)) {
      throw refuse(`${output.name} has shape ${shapeText(output.shape)}, not the contract's (value [batch], q_values [batch, n])`);
    } else {
      heads.push(output);
    }
  });
  if (sampled !== logProb) throw refuse('it has sampled_action without log_prob');
  return { action, heads, sampled, nextState };
}

// The sample entry's noise: policyport.noise's blocks, checked to tile [0, noise_size) in
// order. Returns {size, blocks: [{offset, shape, size, distribution}]}.
function noiseLayout(metadata, size) {
  const blocks = readJson(metadata, 'noise');
  const where = 'its policyport.noise metadata';
  if (!Array.isArray(blocks) || blocks.length === 0 || blocks.length > LIMITS.noiseBlocks) {
    throw refuse(`${where} is not a list of 1 to ${LIMITS.noiseBlocks} blocks`);
  }
  let next = 0;
  const layout = blocks.map((block) => {
    const { offset, shape, distribution } = isObject(block) ? block : {};
    const named = typeof distribution === 'string' && byteLength(distribution) <= LIMITS.nameBytes;
    if (!isCount(offset, LIMITS.rowElements) || !Array.isArray(shape) || !named) {
      throw refuse(`${where} has a block without an integer "offset", a "shape" list and a "distribution" name`);
    }
    if (offset !== next) {
      throw refuse(`${where} has a block at offset ${offset} where ${next} was expected (blocks are concatenated in order)`);
    }
    const row = rowShape(shape);
    if (row.problem) throw refuse(`${where}: the block at offset ${next} ${row.problem}`);
    next += row.size;
    if (next > size) throw refuse(`its policyport.noise blocks hold more than the ${size} values per row the noise input holds`);
    return { offset, shape, size: row.size, distribution };
  });
  if (next !== size) throw refuse(`its policyport.noise blocks hold ${next} values but the noise input holds ${size} per row`);
  return { size, blocks: layout };
}

// A recurrent policy's state (contract 4): the state inputs paired with the next_state
// outputs in order, each pair as policyport.state lists it. Null for a stateless artifact;
// refused where the version, the tensors and the metadata disagree.
function stateLayout(metadata, version, typed, inputs, outputs) {
  const recurrent = version === RECURRENT_CONTRACT_VERSION || (typed && inputs.length > 0);
  if (recurrent !== (inputs.length > 0) || inputs.length !== outputs.length) {
    throw refuse(
      `it declares contract version ${version} with ${inputs.length} state inputs and ${outputs.length} next_state ` +
        `outputs; contract ${RECURRENT_CONTRACT_VERSION} (recurrent) has one of each per state leaf, earlier versions none`,
    );
  }
  if (!recurrent) return null;
  const described = readJson(metadata, 'state');
  const leaves = isObject(described) && Array.isArray(described.leaves) ? described.leaves : null;
  if (leaves === null || leaves.length !== inputs.length || described.reset !== RESET) {
    throw refuse(`its policyport.state metadata does not list the ${inputs.length} state leaves and 'reset' its inputs have`);
  }
  return {
    leaves: inputs.map((input, i) => {
      const output = outputs[i];
      const leaf = isObject(leaves[i]) ? leaves[i] : {};
      const same =
        leaf.input === input.name && leaf.output === output.name && Array.isArray(leaf.shape) &&
        sameShape(leaf.shape, input.shape) && sameShape(output.shape, input.shape) &&
        output.name === NEXT_STATE + input.name.slice(STATE.length);
      if (!same) {
        throw refuse(`state leaf ${i}: input ${quote(input.name)}, output ${quote(output.name)} and policyport.state do not agree`);
      }
      return { input: input.name, output: output.name, shape: input.shape, size: input.size };
    }),
  };
}

// A file in the artifact's own folder: a plain name, never a path, URL or query (the web page
// turns it into a URL: a name with any of these could point it elsewhere).
export function isPlainFileName(name) {
  return (
    typeof name === 'string' &&
    name !== '' &&
    name !== '.' &&
    name !== '..' &&
    byteLength(name) <= LIMITS.fileNameBytes &&
    !/[\u0000-\u001f\u007f/\\:?#%]/.test(name)
  );
}

// policyport.entry ("default" or "sample") and policyport.entries ({entry: file name}).
function entryPoints(metadata) {
  const entry = metadata[`${PREFIX}entry`];
  if (entry !== undefined && entry !== 'default' && entry !== 'sample') {
    throw refuse(`its policyport.entry metadata ${quote(entry)} is neither "default" nor "sample"`);
  }
  const entries = readJson(metadata, 'entries', false);
  if (entries === undefined) return { entry: entry ?? 'default', entries: null };
  if (!isObject(entries)) throw refuse('its policyport.entries metadata is not a JSON object of file names');
  for (const [name, file] of Object.entries(entries)) {
    if (!isPlainFileName(file)) {
      throw refuse(
        `its policyport.entries metadata names ${typeof file === 'string' ? quote(file) : 'a non-string'} for ` +
          `${quote(name)}, not a file name in the artifact's folder (1 to ${LIMITS.fileNameBytes} bytes, ` +
          'none of / \\ : ? # %, not . or ..)',
      );
    }
  }
  return { entry: entry ?? 'default', entries };
}

// The contract version exactly: the digits of a supported version ("03", "3.0" are not).
function contractVersion(metadata) {
  const raw = metadata[`${PREFIX}contract_version`];
  if (raw === undefined) {
    throw new Error(
      'not a policyport artifact: no policyport.contract_version in the model metadata; ' +
        'export it with `export-policy`',
    );
  }
  const version = Number(raw);
  if (!/^[0-9]$/.test(raw) || !SUPPORTED_CONTRACT_VERSIONS.includes(version)) {
    const shown = /^[0-9.]{1,20}$/.test(raw) ? raw : quote(raw);
    throw new Error(
      `unsupported artifact contract version ${shown} (written by policyport ` +
        `${quote(metadata[`${PREFIX}policyport_version`] ?? '?')}); this consumer knows versions ` +
        `${SUPPORTED_CONTRACT_VERSIONS.join(', ')}: use a consumer written for version ${shown}, ` +
        'or re-export with a policyport that writes a supported version',
    );
  }
  return version;
}

// Checks the contract version, the limits and the roles of the inputs and outputs, and decodes
// the JSON-valued keys into a plain description (the C++ wrapper's describe_artifact applies
// the same rules). `inputs` and `outputs` are the metadata's, in its order: observation inputs
// first (one per observation leaf), then the mask if the policy takes one, then `noise` for a
// sample entry; `action`, then the heads (e.g. `value`, `q_values`), then `sampled_action`
// and `log_prob` for a sample entry. Policy.load then checks the model has exactly these.
export function describeArtifact(metadata) {
  const version = contractVersion(metadata);
  const observationSpace = readJson(metadata, 'observation_space');
  const actionSpace = readJson(metadata, 'action_space');
  if (!isObject(observationSpace) || !isObject(actionSpace)) {
    throw refuse('its policyport.observation_space and policyport.action_space metadata are not both JSON objects');
  }
  const inputs = tensorTable(metadata, 'inputs');
  const outputs = tensorTable(metadata, 'outputs');
  const { observationInputs, observationSize, maskInput, noiseInput, stateInputs, resetInput } = inputRoles(inputs);
  const { action, heads, sampled, nextState } = outputRoles(outputs);
  // Integer observation inputs: exactly the artifacts that declare contract 5.
  const typed = observationInputs.some((i) => i.dtype !== 'float32');
  if (typed !== (version === TYPED_OBSERVATION_CONTRACT_VERSION)) {
    throw refuse(
      `it declares contract version ${version} and ${typed ? 'has' : 'has no'} integer observation input; ` +
        `contract ${TYPED_OBSERVATION_CONTRACT_VERSION} has one and earlier versions none`,
    );
  }
  const state = stateLayout(metadata, version, typed, stateInputs, nextState);
  // The sampling path: all of it (contract 3, or 4/5 with a noise input) or none of it.
  const sampling =
    version === SAMPLING_CONTRACT_VERSION || ((state !== null || typed) && noiseInput !== null);
  if (sampling !== (noiseInput !== null) || sampled !== (noiseInput !== null)) {
    const has = (x) => (x ? 'a' : 'no');
    throw refuse(
      `it declares contract version ${version} and has ${has(noiseInput)} 'noise' input, ${has(sampled)} ` +
        `'sampled_action' output and ${has(sampled)} 'log_prob' output; contract ${SAMPLING_CONTRACT_VERSION} ` +
        '(the sample entry) has all three and earlier versions none',
    );
  }
  const noise = noiseInput ? noiseLayout(metadata, noiseInput.size) : null;
  return {
    contractVersion: version,
    policyportVersion: metadata[`${PREFIX}policyport_version`],
    format: metadata[`${PREFIX}format`],
    policyClass: metadata[`${PREFIX}policy_class`],
    observationSpace, // as written: infinite bounds stay "inf" strings, fit for JSON
    observationBounds: {
      low: Array.isArray(observationSpace.low) ? observationSpace.low.map(toNumber) : undefined,
      high: Array.isArray(observationSpace.high) ? observationSpace.high.map(toNumber) : undefined,
    },
    actionSpace,
    inputs,
    outputs,
    observationInputs,
    // The values of one observation, all leaves concatenated in input order.
    observationSize,
    maskSize: maskInput ? maskInput.size : null,
    actionShape: action.shape,
    heads: heads.map((o) => o.name),
    // "default" or "sample" (files written before entries existed are plain, i.e. default),
    // and {default: file, sample: file} (plain names in the artifact's folder) or null.
    ...entryPoints(metadata),
    // The sample entry's {size, blocks}; null for a default entry (it cannot sample).
    noise,
    // A recurrent policy's (contract 4) {leaves: [{input, output, shape, size}], reset}; null
    // for a stateless one.
    state: state && { ...state, reset: resetInput.name },
    weightsSha256: metadata[`${PREFIX}weights_sha256`],
  };
}

// The URL of `file`, an entry named by policyport.entries, beside the artifact at `base`:
// refused unless it is a plain file name that stays in the same folder of the same origin.
export function entryUrl(file, base) {
  const folder = new URL('.', base);
  const url = isPlainFileName(file) ? new URL(file, folder) : null;
  if (!url || url.origin !== folder.origin || url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1) !== folder.pathname) {
    throw refuse(`policyport.entries names ${quote(file)}, not a file in the artifact's folder`);
  }
  return url.href;
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

// "" when the model's tensor (onnxruntime-common's ValueMetadata) is `listed` (the
// metadata's): name, dtype, and shape with a dynamic batch dimension first; else the
// difference, for a message.
function difference(model, listed) {
  const shape = model?.isTensor ? model.shape : [];
  const dynamicBatch = shape.length > 0 && (typeof shape[0] === 'string' || shape[0] < 0);
  const same =
    model?.name === listed.name && model.type === listed.dtype && dynamicBatch && sameShape(shape.slice(1), listed.shape);
  if (same) return '';
  const dims = shape.map((d) => (typeof d === 'string' || d < 0 ? 'batch' : d)).join(', ');
  return (
    `the model's ${quote(model?.name ?? 'nothing')} is ${model?.type ?? 'missing'} [${dims}], the metadata lists ` +
    `${quote(listed.name)} ${listed.dtype} ${shapeText(listed.shape)}${dynamicBatch ? '' : ' (a dynamic batch dimension first)'}`
  );
}

export class Policy {
  // `ort` is the onnxruntime-node or onnxruntime-web module; `bytes` the .onnx file.
  static async load(ort, bytes, sessionOptions = {}) {
    const model = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const spec = describeArtifact(readOnnxMetadata(model));
    const session = await ort.InferenceSession.create(model, sessionOptions);
    return new Policy(ort, session, spec);
  }

  constructor(ort, session, spec) {
    // The model's inputs and outputs are the ones its metadata lists, names, dtypes and shapes
    // in order: the session is what runs, so an edited file is refused here, not misread later.
    const compare = (model, listed) =>
      model.length !== listed.length
        ? `the model has ${model.length} of them, the metadata lists ${listed.length}`
        : listed.map((tensor, i) => difference(model[i], tensor)).find((d) => d) ?? '';
    const problem = compare(session.inputMetadata, spec.inputs) || compare(session.outputMetadata, spec.outputs);
    if (problem) {
      const cut = (names) => JSON.stringify(names.slice(0, LIMITS.tensors + 1).map((n) => n.slice(0, 64)));
      throw new Error(
        `the model's inputs ${cut(session.inputNames)} and outputs ${cut(session.outputNames)} are not the ` +
          `ones its metadata lists (${problem}): the file was edited after export; re-export the policy with export-policy`,
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
  // `carry` (a recurrent policy only, where it is required): {state, reset}, `state` an
  //   object {stateInputName: Float32Array of batch * leaf size} (initialState() or the last
  //   call's `state`), `reset` a Uint8Array of `batch` 0/1 values (1: the row starts from the
  //   policy's initial state). The next state is returned as `state`, keyed by input name.
  async run(observations, batch, masks = null, noise = null, carry = null) {
    const { Tensor } = this.ort;
    const feeds = {};
    for (const [input, values] of this.#split(observations, batch)) {
      feeds[input.name] = new Tensor(input.dtype, values, [batch, ...input.shape]);
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
    if (this.spec.state) {
      Object.assign(feeds, this.#carry(carry, batch));
    } else if (carry !== null) {
      throw new Error('this policy is stateless (contract < 4): it takes no state and no reset');
    }
    const out = await this.session.run(feeds);
    const result = { shapes: {} };
    for (const { name, dtype } of this.spec.outputs) {
      const { data, dims } = out[name];
      result[name] = dtype === 'int64' ? Array.from(data, Number) : Float32Array.from(data);
      result.shapes[name] = dims.map(Number);
    }
    if (used) result[NOISE] = used;
    if (this.spec.state) {
      result.state = Object.fromEntries(this.spec.state.leaves.map((leaf) => [leaf.input, result[leaf.output]]));
    }
    return result;
  }

  // A recurrent policy's state for `batch` rows, zeros (with `reset` set on a row, the artifact
  // replaces them by the policy's initial state, so their values never matter).
  initialState(batch) {
    if (!this.spec.state) throw new Error('this policy is stateless (contract < 4): it has no state');
    return Object.fromEntries(this.spec.state.leaves.map((leaf) => [leaf.input, new Float32Array(batch * leaf.size)]));
  }

  // The state and reset feeds of a recurrent policy, checked.
  #carry(carry, batch) {
    const { Tensor } = this.ort;
    const { leaves, reset } = this.spec.state;
    if (carry === null || !carry.state || !carry.reset) {
      throw new Error(
        `this recurrent policy takes its state (${leaves.map((l) => l.input).join(', ')}) and '${reset}' each call: ` +
          'pass {state: policy.initialState(batch) or the last call\'s state, reset: Uint8Array(batch)}',
      );
    }
    const given = Object.keys(carry.state);
    if (!sameNames(given, leaves.map((l) => l.input))) {
      throw new Error(`expected state leaves ${JSON.stringify(leaves.map((l) => l.input))}, got ${JSON.stringify(given)}`);
    }
    const feeds = {};
    for (const leaf of leaves) {
      const values = carry.state[leaf.input];
      if (values.length !== batch * leaf.size) {
        throw new Error(`expected ${batch} x ${leaf.size} values for ${leaf.input}, got ${values.length}`);
      }
      feeds[leaf.input] = new Tensor('float32', Float32Array.from(values), [batch, ...leaf.shape]);
    }
    if (carry.reset.length !== batch) throw new Error(`expected ${batch} reset values, got ${carry.reset.length}`);
    feeds[reset] = new Tensor('bool', Uint8Array.from(carry.reset, (r) => (r ? 1 : 0)), [batch]);
    return feeds;
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

  // [input spec, typed array of the input's dtype] per observation input, from either form
  // run() accepts (uint8 frames as a Uint8Array; other arrays are converted).
  #split(observations, batch) {
    const typed = (input, values) => {
      const Typed = OBSERVATION_ARRAYS[input.dtype];
      if (values instanceof Typed) return values;
      if (Typed !== Float32Array) {
        // An integer input: each value an integer of the type's range, never truncated or
        // wrapped (Uint8Array.from([0.5, 256]) would give [0, 0]).
        const [low, high] = INTEGER_RANGES[input.dtype];
        const bad = Array.prototype.findIndex.call(values, (v) => !(Number.isInteger(v) && v >= low && v <= high));
        if (bad >= 0) {
          throw new Error(`observation input '${input.name}' takes integers from ${low} to ${high}; value ${bad} is ${values[bad]}`);
        }
      }
      return Typed.from(values);
    };
    const inputs = this.spec.observationInputs;
    if (ArrayBuffer.isView(observations)) {
      const size = this.spec.observationSize;
      if (observations.length !== batch * size) {
        throw new Error(
          `expected ${batch} x ${size} observation values (${inputs.map((i) => `${i.name} ${i.size}`).join(' + ')} per row), got ${observations.length}`,
        );
      }
      if (inputs.length === 1) return [[inputs[0], typed(inputs[0], observations)]];
      // De-interleave: row r's leaf i sits at r * size + offset_i.
      let offset = 0;
      return inputs.map((input) => {
        const values = new OBSERVATION_ARRAYS[input.dtype](batch * input.size);
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
      return [input, typed(input, values)];
    });
  }
}
