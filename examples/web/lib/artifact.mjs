// Reading a policyport artifact (docs/artifact.md) and running it with ONNX Runtime.
//
// Shared by the Node program (examples/node, onnxruntime-node) and the web page
// (onnxruntime-web): both packages implement the same `onnxruntime-common` API, so the
// caller passes in whichever `ort` module it loaded.

// The contract versions this consumer understands; docs/artifact.md asks consumers to refuse
// any other, because a new version may rename inputs or change what the outputs mean.
export const SUPPORTED_CONTRACT_VERSIONS = [1];

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

// The mask length the contract defines for each maskable action space; null for Box.
function maskSize(space) {
  switch (space.type) {
    case 'Discrete':
      return space.n;
    case 'MultiDiscrete':
      return space.nvec.reduce((a, b) => a + b, 0);
    case 'MultiBinary':
      return [space.n].flat().reduce((a, b) => a * b, 1);
    case 'Box':
      return null;
    default:
      throw new Error(`unknown action space type ${JSON.stringify(space.type)}`);
  }
}

// Checks the contract version and decodes the JSON-valued keys into a plain description.
export function describeArtifact(metadata) {
  const raw = metadata[`${PREFIX}contract_version`];
  if (raw === undefined) {
    throw new Error(
      'not a policyport artifact: no policyport.contract_version in the model metadata; ' +
        'export it with `export-policy`',
    );
  }
  const version = Number(raw);
  if (!SUPPORTED_CONTRACT_VERSIONS.includes(version)) {
    throw new Error(
      `unsupported artifact contract version ${raw} (written by policyport ` +
        `${metadata[`${PREFIX}policyport_version`] ?? '?'}); this consumer knows versions ` +
        `${SUPPORTED_CONTRACT_VERSIONS.join(', ')}: use a consumer written for version ${raw}, ` +
        'or re-export with a policyport that writes a supported version',
    );
  }
  const json = (key) => JSON.parse(metadata[PREFIX + key]);
  const observationSpace = json('observation_space');
  const actionSpace = json('action_space');
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
    actionSpace,
    observationSize: observationSpace.shape.reduce((a, b) => a * b, 1),
    maskSize: maskSize(actionSpace),
    inputs: json('inputs'),
    outputs: json('outputs'),
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

export class Policy {
  // `ort` is the onnxruntime-node or onnxruntime-web module; `bytes` the .onnx file.
  static async load(ort, bytes, sessionOptions = {}) {
    const model = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const spec = describeArtifact(readOnnxMetadata(model));
    const session = await ort.InferenceSession.create(model, sessionOptions);
    return new Policy(ort, session, spec);
  }

  constructor(ort, session, spec) {
    this.ort = ort;
    this.session = session;
    this.spec = spec;
    this.masked = session.inputNames.includes('action_mask');
  }

  // Runs a batch. `observations` is a Float32Array of `batch * observationSize` values;
  // `masks` a Uint8Array of `batch * maskSize` 0/1 values (1 = allowed), or null for
  // "everything allowed". Returns { action, actionShape, value }: `action` is a plain array
  // of numbers (int64 actions come back from ORT as BigInt64Array), flat and row-major.
  async run(observations, batch, masks = null) {
    const { Tensor } = this.ort;
    const { observationSize, observationSpace, maskSize: nMask } = this.spec;
    if (observations.length !== batch * observationSize) {
      throw new Error(
        `expected ${batch} x ${observationSize} observation values, got ${observations.length}`,
      );
    }
    const feeds = { observation: new Tensor('float32', observations, [batch, ...observationSpace.shape]) };
    if (this.masked) {
      const mask = masks ?? new Uint8Array(batch * nMask).fill(1);
      if (mask.length !== batch * nMask) {
        throw new Error(`expected ${batch} x ${nMask} mask values, got ${mask.length}`);
      }
      // ORT's bool tensors take one byte per element.
      feeds.action_mask = new Tensor('bool', mask, [batch, nMask]);
    }
    const out = await this.session.run(feeds);
    return {
      action: Array.from(out.action.data, Number),
      actionShape: out.action.dims.map(Number),
      value: Float32Array.from(out.value.data),
    };
  }
}
