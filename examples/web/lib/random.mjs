// A small seedable generator and the three noise distributions a policyport sample entry
// takes (docs/artifact.md, "Sampling: the noise is an input").
//
// xoshiro128** (Blackman and Vigna, 2018: https://prng.di.unimi.it/xoshiro128starstar.c),
// 128 bits of state, seeded from one integer with SplitMix64 as its authors recommend. Both
// are checked against their published outputs (tests/test_node_sampling.py). Plain JS numbers
// and Math.imul: the same stream in Node and in every browser.
//
// The distributions, and why each stays inside its domain:
//   uniform   [0, 1): 24 random bits / 2^24, exact in float32, so the stored value is < 1
//             (32 bits / 2^32 would round up to 1.0 in float32 for the top 128 values).
//   gumbel    -log(-log(u)) with u = (k + 0.5) / 2^52 in (0, 1) for a 52-bit k: u is never 0
//             or 1 (both would give an infinite draw, and -inf logit + inf noise is NaN), so
//             every draw is finite, within [-3.6, 36.8].
//   standard_normal: Box-Muller, sqrt(-2 log u1) cos(2 pi u2), u1 as for gumbel (never 0).

const MASK64 = (1n << 64n) - 1n;

// SplitMix64 (Vigna, https://prng.di.unimi.it/splitmix64.c): 64-bit outputs as BigInt.
export function* splitMix64(seed) {
  let state = BigInt(seed) & MASK64;
  for (;;) {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    yield z ^ (z >> 31n);
  }
}

const rotl = (x, k) => (x << k) | (x >>> (32 - k));

export class Xoshiro128 {
  // `state`: four uint32 words, not all zero. Use Xoshiro128.fromSeed(seed) unless you are
  // reproducing a stream from a known state.
  constructor(state) {
    if (state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) || state.every((w) => w === 0)) {
      throw new Error(`xoshiro128** needs four uint32 state words, not all zero; got ${JSON.stringify(Array.from(state))}`);
    }
    this.s = Uint32Array.from(state);
  }

  // The generator for an integer seed (0 <= seed < 2^64: a Number up to 2^53 or a BigInt):
  // two SplitMix64 outputs, low word first, make the four state words.
  static fromSeed(seed) {
    const valid = typeof seed === 'bigint' ? seed >= 0n && seed <= MASK64 : Number.isSafeInteger(seed) && seed >= 0;
    if (!valid) throw new Error(`a seed is an integer in [0, 2^64), got ${String(seed)}`);
    const words = [];
    const mix = splitMix64(seed);
    for (let i = 0; i < 2; i++) {
      const z = mix.next().value;
      words.push(Number(z & 0xffffffffn), Number(z >> 32n));
    }
    return new Xoshiro128(words);
  }

  // The next uint32 (the reference `next()`).
  nextUint32() {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  // Uniform on [0, 1), a multiple of 2^-24: exactly representable in float32.
  uniform() {
    return (this.nextUint32() >>> 8) / 2 ** 24;
  }

  // Uniform on the open (0, 1), 52 random bits, in float64; never 0, never 1.
  openUniform() {
    const high = this.nextUint32() >>> 12; // 20 bits
    const low = this.nextUint32(); // 32 bits
    return (high * 2 ** 32 + low + 0.5) / 2 ** 52;
  }

  gumbel() {
    return -Math.log(-Math.log(this.openUniform()));
  }

  standardNormal() {
    const radius = Math.sqrt(-2 * Math.log(this.openUniform()));
    return radius * Math.cos(2 * Math.PI * this.uniform());
  }
}

// The distributions a noise block may name (policyport.noise), and how each is drawn.
export const DRAWS = {
  standard_normal: (rng) => rng.standardNormal(),
  gumbel: (rng) => rng.gumbel(),
  uniform: (rng) => rng.uniform(),
};

// `batch` rows of noise for `blocks` (the artifact's policyport.noise: {offset, size,
// distribution}), `size` values a row, as one row-major Float32Array. Rows are drawn one
// after another, each block in order: the same seed gives the same rows whatever the batch.
export function drawNoise(blocks, size, rng, batch = 1) {
  if (!rng || typeof rng.nextUint32 !== 'function') {
    throw new Error('drawing noise needs a generator such as Xoshiro128.fromSeed(seed)');
  }
  const unknown = blocks.find((b) => !(b.distribution in DRAWS));
  if (unknown) {
    throw new Error(
      `noise block at offset ${unknown.offset} is drawn from "${unknown.distribution}", which this ` +
        `consumer cannot draw (it knows ${Object.keys(DRAWS).join(', ')}): pass the noise explicitly ` +
        '(policyport.sampling_noise gives it for a JAX key)',
    );
  }
  const noise = new Float32Array(batch * size);
  for (let r = 0; r < batch; r++) {
    for (const { offset, size: count, distribution } of blocks) {
      const draw = DRAWS[distribution];
      for (let i = 0; i < count; i++) noise[r * size + offset + i] = draw(rng);
    }
  }
  return noise;
}
