// policyport.hpp: run a policy exported by policyport (.onnx or .ort) from C++17 with
// ONNX Runtime's C++ API. Copy this file and policyport.cpp into your project and link
// ONNX Runtime (see CMakeLists.txt next to it, and docs/embedding.md).
//
// The artifact contract (docs/artifact.md) in one paragraph. The wrapper reads the inputs and
// outputs from the artifact itself instead of assuming names:
//   inputs:  one float32 input per observation leaf, [batch, *leaf_shape]: `observation` for an
//            array observation space, `observation.<key>` / `observation.<i>` for the leaves of
//            Dict / Tuple spaces (contract 2), in the space's order; then `action_mask` bool
//            [batch, mask_size] (true = allowed), only when the policy takes a mask;
//   outputs: `action` (int64 [batch] for Discrete, int64 [batch, k] for MultiDiscrete and
//            MultiBinary, float32 [batch, *act_shape] for Box; the deterministic action), then
//            the policy's heads, float32: `value` [batch] (actor-critics), `q_values`
//            [batch, n] (Q-policies); only those it has.
// Contract 3 (the sample entry, `<stem>.sample.onnx`, written by `export-policy --sample`) adds a
// last input `noise` float32 [batch, noise_size] and last outputs `sampled_action` (as `action`)
// and `log_prob` float32 [batch]; metadata `policyport.noise` lists the noise blocks and the
// distribution each is drawn from. sample() draws that noise with your generator;
// sample_with_noise() / run_sample() take noise you drew (or JAX's, for exact reproduction).
// Contract 1 artifacts (observation[, action_mask] -> action, value) are read the same way.
// The batch size is dynamic. One observation is passed as its leaves' values concatenated in
// input order (for an array observation space that is simply the observation).
//
// Threads: a Policy is immutable after construction. act(), value(), q_values(), run(),
// run_into() and the sampling calls are const and may be called concurrently from any number of threads on one Policy
// (ONNX Runtime's Session::Run is thread-safe, and every call uses its own buffers; sample()
// uses the generator it is given, so give each thread its own). By default
// each call runs on the calling thread only (intra-op threads = 1): for networks this small a
// thread pool adds latency. Construct the Policy once (loading takes milliseconds) and reuse it.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace policyport {

// The artifact contract versions this wrapper understands (docs/artifact.md, "Versions").
//   1 (2026-11-25): first version: observation[, action_mask] -> action, value.
//   2 (2026-12-02): one input per observation leaf; outputs action + the policy's heads.
//   3 (2026-12-02): the sample entry: input `noise`, outputs `sampled_action`, `log_prob`;
//                   metadata `noise`, `entry`, `entries`. (Default entries stay 2.)
//   4 (2026-12-05): recurrent policies: after the mask, the state leaves (`state`, or
//                   `state.<path>` per leaf, float32 [batch, *leaf_shape]) and `reset` bool
//                   [batch]; after the heads, `next_state` / `next_state.<path>`. step() runs
//                   them (a State per agent); the other calls refuse a recurrent artifact.
//   5 (2026-12-05): an observation input may be an integer type (uint8 frames; int8, uint16,
//                   int16, int32), as its Box declares. The float API below converts the
//                   caller's floats to it (exact for integers in the type's range). Versions
//                   add up: a 5 artifact may carry 4's state and 3's noise.
constexpr int kMinContractVersion = 1;
constexpr int kMaxContractVersion = 5;
constexpr int kSamplingContractVersion = 3;
constexpr int kRecurrentContractVersion = 4;
constexpr int kTypedObservationContractVersion = 5;
// Whether this wrapper understands `version`.
constexpr bool is_supported_contract_version(int version) {
  return version >= kMinContractVersion && version <= kMaxContractVersion;
}

// The names the contract fixes; every other name is read from the artifact.
constexpr const char* kMaskInput = "action_mask";
constexpr const char* kActionOutput = "action";
constexpr const char* kValueHead = "value";
constexpr const char* kQValuesHead = "q_values";
constexpr const char* kNoiseInput = "noise";
constexpr const char* kSampledActionOutput = "sampled_action";
constexpr const char* kLogProbOutput = "log_prob";
constexpr const char* kStateInput = "state";           // and "state.<path>" per leaf
constexpr const char* kNextStateOutput = "next_state";  // and "next_state.<path>"
constexpr const char* kResetInput = "reset";
// The noise distributions the contract names (metadata `policyport.noise`, "distribution").
constexpr const char* kStandardNormal = "standard_normal";  // Box: mean + exp(log_std) * noise
constexpr const char* kGumbel = "gumbel";  // Discrete, MultiDiscrete: argmax(log_softmax + noise)
constexpr const char* kUniform = "uniform";  // MultiBinary: bit = noise < sigmoid(logit), [0, 1)

// The limits every consumer applies to what an artifact's metadata says (docs/artifact.md,
// "Limits"; examples/web/lib/artifact.mjs holds the same numbers). Files beyond them are
// refused when loading, so that no size computed from a file can overflow or run away.
namespace limits {
constexpr std::size_t kMaxMetadataKeys = 1024;       // metadata entries in all
constexpr std::size_t kMaxKeyBytes = 256;            // each key
constexpr std::size_t kMaxValueBytes = 1 << 20;      // each value the wrapper reads
constexpr std::size_t kMaxJsonDepth = 32;            // nested lists and objects in a value
constexpr std::size_t kMaxTensors = 16;              // inputs, and outputs
constexpr std::size_t kMaxRank = 8;                  // dimensions of a tensor, batch included
constexpr std::size_t kMaxRowElements = 1 << 24;     // one row of a tensor; every dimension
                                                     // too; the observation inputs together
constexpr std::size_t kMaxNoiseBlocks = 4096;        // blocks of policyport.noise
constexpr std::size_t kMaxNameBytes = 256;           // tensor and distribution names
constexpr std::size_t kMaxFileNameBytes = 255;       // each file of policyport.entries
constexpr std::size_t kMaxQuotedBytes = 200;         // of a value quoted in a message
}  // namespace limits

// Every error this wrapper raises. The message says what was expected, what was found and
// what to do. ONNX Runtime's own errors (Ort::Exception) are caught and re-raised as this.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The artifact's contract version is not one this wrapper knows (or it has none).
class ContractVersionError : public Error {
 public:
  using Error::Error;
};

// An input has the wrong number of elements, a mask was missing or not expected, or a head
// was asked for that the artifact does not have.
class InputError : public Error {
 public:
  using Error::Error;
};

// The call needs the artifact's other entry point: sampling on a default entry (contract 2, no
// `noise` input), or run_into() on a sample entry. The message names the file to load.
class EntryError : public Error {
 public:
  using Error::Error;
};

// One input or output of the artifact, as its session reports it.
struct TensorInfo {
  std::string name;
  std::string dtype;           // "float32", "int64", "bool", or an observation's integer type
  std::vector<int64_t> shape;  // per row: without the batch dimension ({} for [batch])
  std::size_t size = 0;        // elements per row (product of shape; 1 for {})
};

// One block of the `noise` input (metadata `policyport.noise`): elements [offset, offset + size)
// of each row, drawn from `distribution`.
struct NoiseBlock {
  std::size_t offset = 0;
  std::vector<int64_t> shape;
  std::size_t size = 0;      // product of shape
  std::string distribution;  // kStandardNormal, kGumbel, kUniform, or another name the
                             // exporter wrote ("other"): sample() refuses it, run_sample() runs
};

// What the artifact says about itself: read from its inputs, outputs and metadata.
struct ModelInfo {
  std::string path;
  int contract_version = 0;
  std::string producer_version;    // policyport.policyport_version, e.g. "0.1.0"
  std::string format;              // policyport.format: "onnx" or "ort"
  std::string action_space_type;   // "Discrete", "MultiDiscrete", "MultiBinary" or "Box"
  // In the artifact's order: observation leaves, then the mask, then (sample entry) noise.
  std::vector<TensorInfo> inputs;
  // `action`, then the heads, then (sample entry) `sampled_action` and `log_prob`.
  std::vector<TensorInfo> outputs;
  std::vector<TensorInfo> observation_inputs;  // the inputs without the mask and the noise
  std::vector<TensorInfo> heads;               // the outputs after `action`: value, q_values
  // One observation: the observation inputs' values concatenated in order.
  std::size_t observation_size = 0;
  // The row shape of the only observation input; empty when there are several.
  std::vector<int64_t> observation_shape;
  std::size_t mask_size = 0;          // 0 when the model has no action_mask input
  std::vector<int64_t> action_shape;  // without the batch dimension ({} for Discrete)
  std::size_t action_size = 0;        // elements of one row's action (1 for Discrete)
  bool integer_actions = false;       // int64 actions (else float32, Box)
  // Entry points (policyport.entry / policyport.entries, written by `--sample`): "default",
  // "sample", or "" for an artifact exported without --sample; entries maps "default" and
  // "sample" to file names in this artifact's folder (empty without --sample).
  std::string entry;
  std::map<std::string, std::string> entries;
  // The sample entry's noise: noise_size floats per row, in blocks (0 and {} otherwise).
  std::size_t noise_size = 0;
  std::vector<NoiseBlock> noise_blocks;
  // A recurrent policy's (contract 4) state leaves: the inputs and, in the same order, the
  // next_state outputs (empty for a stateless policy).
  std::vector<TensorInfo> state_inputs;
  std::vector<TensorInfo> state_outputs;
  // The metadata: every key of an .onnx file; of an .ort file, the keys this wrapper reads
  // (ONNX Runtime copies the whole table on each lookup). Values as stored.
  std::map<std::string, std::string> metadata;

  bool has_mask() const { return mask_size > 0; }
  // True for a sample entry (contract 3: a `noise` input): sample() and run_sample() work.
  bool is_sample_entry() const { return noise_size > 0; }
  // True for a recurrent policy (contract 4: state inputs, `reset`): step() runs it.
  bool is_recurrent() const { return !state_inputs.empty(); }
  // The head called `name` ("value", "q_values", ...), or nullptr when there is none.
  const TensorInfo* head(const std::string& name) const;
  bool has_head(const std::string& name) const { return head(name) != nullptr; }
};

// One observation's result.
struct Action {
  // Discrete: {index}; MultiDiscrete: one index per sub-action; MultiBinary: one 0/1 per bit.
  // Empty for Box.
  std::vector<int64_t> discrete;
  // Box: the mean action, row-major over act_shape, *not* clipped to the space's bounds.
  // Empty otherwise.
  std::vector<float> continuous;
  // Every head the artifact has, computed by the same call, by name:
  // {"value": {v}} for an actor-critic, {"q_values": {q_0, ..., q_n-1}} for a Q-policy.
  std::map<std::string, std::vector<float>> heads;

  // The critic's value; throws InputError when the artifact has no `value` head.
  float value() const;
  // The Q-values, one per action; throws InputError when the artifact has no `q_values` head.
  const std::vector<float>& q_values() const;
};

// A batch's results, row-major: row i's action is elements [i*action_size, (i+1)*action_size).
// One agent's state for a recurrent policy (contract 4): one vector per state leaf
// (info().state_inputs order, leaf.size floats each). `reset` true makes the next step start
// from the policy's initial state (the graph holds it; the leaves' values are then ignored):
// a new State has it set; step() clears it; set it again when the agent's episode ends.
struct State {
  std::vector<std::vector<float>> leaves;
  bool reset = true;
};

struct BatchResult {
  std::size_t batch = 0;
  std::vector<int64_t> discrete_actions;  // integer_actions models
  std::vector<float> continuous_actions;  // Box models
  // Every head by name, row-major [batch * head.size]: "value" [batch], "q_values" [batch * n].
  std::map<std::string, std::vector<float>> heads;

  // heads["value"] / heads["q_values"]; throw InputError when the artifact has no such head.
  const std::vector<float>& values() const;
  const std::vector<float>& q_values() const;
};

// One observation's sample (Policy::sample, Policy::sample_with_noise).
struct Sample {
  // The sampled action, laid out as Action's: discrete (Discrete, MultiDiscrete, MultiBinary)
  // or continuous (Box: mean + std * noise, not clipped unless exported with --clip-actions).
  std::vector<int64_t> discrete;
  std::vector<float> continuous;
  // Its log-probability under the policy (NaN when a mask leaves a block nothing legal).
  float log_prob = std::numeric_limits<float>::quiet_NaN();
  // The same call's deterministic action (`action`, the mode) and every head (value, ...).
  Action mode;

  float value() const { return mode.value(); }
};

// A batch's samples, row-major like BatchResult: row i's sampled action is elements
// [i*action_size, (i+1)*action_size); log_probs [batch]; mode holds `action` and the heads.
struct BatchSample {
  std::size_t batch = 0;
  std::vector<int64_t> discrete_actions;  // integer_actions models
  std::vector<float> continuous_actions;  // Box models
  std::vector<float> log_probs;
  BatchResult mode;
};

// ---- Reading the metadata (policyport_metadata.cpp; no ONNX Runtime needed). Policy uses
// exactly these; they are exposed for tools and for the fuzzer (fuzz_metadata.cpp).
using Metadata = std::map<std::string, std::string>;

// The metadata_props of an ONNX model (a ModelProto) read from `file`: only the top level is
// walked, every other field (the graph and its weights) is skipped by its length. Throws
// Error naming `path` when the protobuf is malformed, or the keys break the limits (count,
// length, UTF-8, a key twice).
Metadata read_onnx_metadata(std::istream& file, const std::string& path);

// Checks the keys' count and lengths (the limits above); throws Error naming `path`.
void check_keys(const std::vector<std::string>& keys, const std::string& path);

// The metadata keys this wrapper reads (the others are only counted).
const std::vector<std::string>& read_keys();

// What the metadata says about the artifact at `path`, checked against the contract and the
// limits: everything in ModelInfo (inputs, outputs, noise blocks, entries...). Throws
// ContractVersionError or Error; messages quote at most limits::kMaxQuotedBytes of a value.
// Policy then checks that the model's inputs and outputs are the ones listed here.
ModelInfo describe_artifact(const Metadata& metadata, const std::string& path);

// `text` for a message: in quotes, cut to limits::kMaxQuotedBytes, control bytes escaped.
std::string quote(const std::string& text);

namespace detail {
// u in (0, 1), both ends excluded (Gumbel's -log(-log(u)) is finite), from `rng`'s bits.
// Redrawing (rather than clamping) keeps u uniform; generate_canonical may return 1 (LWG 2524).
template <class URBG>
double open_unit(URBG& rng) {
  double u;
  do {
    u = std::generate_canonical<double, std::numeric_limits<double>::digits>(rng);
  } while (u <= 0.0 || u >= 1.0);
  return u;
}
// u in [0, 1) as a float32: a double below 1 may round to 1.0f, so draw the float directly.
template <class URBG>
float unit_float(URBG& rng) {
  float u;
  do {
    u = std::generate_canonical<float, std::numeric_limits<float>::digits>(rng);
  } while (u >= 1.0f);
  return u;
}
}  // namespace detail

struct Options {
  // Threads ONNX Runtime may use inside one call. 1 (the caller's thread only) is fastest for
  // small policies; raise it only for large batches.
  int intra_op_threads = 1;
  // Graph optimisations ONNX Runtime applies when loading (.ort files are already optimised).
  bool optimize = true;
};

class Policy {
 public:
  // Loads `path` (.onnx or .ort; the format is told by the file's content), checks that it is a
  // policyport artifact of a known contract version with the contract's inputs and outputs.
  // Throws ContractVersionError or Error with a message saying what to do.
  explicit Policy(const std::string& path, const Options& options = Options());
  ~Policy();
  // Movable (a moved-from Policy may only be destroyed or assigned to), not copyable: share one
  // Policy between threads by reference instead.
  Policy(Policy&&) noexcept;
  Policy& operator=(Policy&&) noexcept;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  const ModelInfo& info() const { return info_; }

  // One observation (observation_size floats: the observation inputs' values concatenated in
  // info().observation_inputs order). `mask` holds mask_size bytes, nonzero = allowed; pass it
  // exactly when info().has_mask(). To run a masked policy without masking, pass all ones.
  // Throws InputError when a size is wrong.
  Action act(const float* observation, std::size_t observation_count, const uint8_t* mask = nullptr,
             std::size_t mask_count = 0) const;
  Action act(const std::vector<float>& observation,
             const std::vector<uint8_t>& mask = std::vector<uint8_t>()) const;

  // The critic's value of one observation; the Q-values of one observation. Masked models are
  // run with an all-allowed mask (the heads do not depend on the mask). Throw InputError when
  // the artifact has no such head (see info().heads).
  float value(const float* observation, std::size_t observation_count) const;
  float value(const std::vector<float>& observation) const;
  std::vector<float> q_values(const float* observation, std::size_t observation_count) const;
  std::vector<float> q_values(const std::vector<float>& observation) const;

  // A batch: `observations` holds batch * observation_size floats, row by row (each row as
  // act() takes it), `masks` holds batch * mask_size bytes (or nothing for models without a
  // mask). The batch size follows from the observations' length. Throws InputError when a size
  // is wrong.
  BatchResult run(const float* observations, std::size_t observation_count,
                  const uint8_t* masks = nullptr, std::size_t mask_count = 0) const;
  BatchResult run(const std::vector<float>& observations,
                  const std::vector<uint8_t>& masks = std::vector<uint8_t>()) const;

  // ---- Recurrent policies (info().is_recurrent(), contract 4).
  //
  // A State for one agent: zeros of each leaf, `reset` set (the first step starts from the
  // policy's initial state). Throws InputError for a stateless policy.
  State initial_state() const;
  // One step of `states.size()` agents in one call: `observations` and `masks` as run()'s, one
  // row per agent, `states[i]` agent i's (initial_state() at first). Each state is replaced by
  // its next state and its `reset` cleared. Throws InputError when a size is wrong.
  BatchResult step(const std::vector<float>& observations, const std::vector<uint8_t>& masks,
                   std::vector<State>& states) const;
  // One agent: as step() with one row; returns its action and heads.
  Action step(const std::vector<float>& observation, const std::vector<uint8_t>& mask,
              State& state) const;

  // The lowest-overhead call: no allocation besides ONNX Runtime's own. The caller owns every
  // buffer: `observations` has one pointer per observation input (info().observation_inputs
  // order), each to [batch * input.size] floats; masks [batch * mask_size] holding only 0/1
  // (or nullptr without a mask); either discrete_actions or continuous_actions
  // [batch * action_size] (the other nullptr); `heads` one pointer per head (info().heads
  // order), each to [batch * head.size] floats. Sizes are the caller's responsibility here;
  // the other calls check them and then call this.
  // Default entries only (a sample entry needs noise: run_sample_into, or run()).
  void run_into(const float* const* observations, const uint8_t* masks, std::size_t batch,
                int64_t* discrete_actions, float* continuous_actions, float* const* heads) const;

  // ---- Sampling: sample entries only (info().is_sample_entry(), contract 3, the
  // `<stem>.sample.onnx` that `export-policy --sample` writes). On a default entry these throw
  // EntryError naming the sample entry's file. act() and run() work on a sample entry too (they
  // feed zero noise; `action` does not depend on it), at the cost of its sampling graph.
  //
  // Noise for `rows` observations ([rows * noise_size] floats, row-major), each block drawn
  // from its distribution with `rng` (any UniformRandomBitGenerator, e.g. std::mt19937_64):
  // standard normal (std::normal_distribution), Gumbel(0, 1) as -log(-log(u)) with u uniform in
  // (0, 1), uniform on [0, 1). Throws EntryError for a block of a distribution it cannot draw.
  // The same seed gives the same noise with the same standard library (std::normal_distribution
  // is implementation-defined); for noise that is the same everywhere, draw it yourself.
  template <class URBG>
  void draw_noise(URBG& rng, float* noise, std::size_t rows) const;
  template <class URBG>
  std::vector<float> draw_noise(URBG& rng, std::size_t rows = 1) const {
    std::vector<float> noise(rows * info_.noise_size);
    draw_noise(rng, noise.data(), rows);
    return noise;
  }

  // One observation sampled with noise drawn from `rng`: the policy's stochastic action, as
  // JAX's policy(None, observation, key=k, action_mask=mask) is distributed. `mask` as act()'s.
  template <class URBG>
  Sample sample(const float* observation, std::size_t observation_count, const uint8_t* mask,
                std::size_t mask_count, URBG& rng) const {
    require_sample_entry("sample()", true);
    std::vector<float> noise = draw_noise(rng, 1);
    return sample_with_noise(observation, observation_count, mask, mask_count, noise.data(),
                             noise.size());
  }
  template <class URBG>
  Sample sample(const std::vector<float>& observation, const std::vector<uint8_t>& mask,
                URBG& rng) const {
    return sample(observation.data(), observation.size(), mask.empty() ? nullptr : mask.data(),
                  mask.size(), rng);
  }

  // One observation sampled with the given noise (noise_size floats): the same noise always
  // gives the same sample. Noise from policyport.sampling_noise(policy, key) reproduces JAX's
  // policy(None, observation, key=key, action_mask=mask) exactly.
  Sample sample_with_noise(const float* observation, std::size_t observation_count,
                           const uint8_t* mask, std::size_t mask_count, const float* noise,
                           std::size_t noise_count) const;
  Sample sample_with_noise(const std::vector<float>& observation, const std::vector<uint8_t>& mask,
                           const std::vector<float>& noise) const;

  // A batch sampled with the given noise ([batch * noise_size] floats, row by row; draw it with
  // draw_noise(rng, batch)). Observations and masks as run()'s.
  BatchSample run_sample(const float* observations, std::size_t observation_count,
                         const uint8_t* masks, std::size_t mask_count, const float* noise,
                         std::size_t noise_count) const;
  BatchSample run_sample(const std::vector<float>& observations, const std::vector<uint8_t>& masks,
                         const std::vector<float>& noise) const;

  // Throws EntryError unless this is a sample entry (and, when `drawing`, every noise block's
  // distribution is one draw_noise() knows); the message names `call` and, on a default entry,
  // the sample entry's file to load (policyport.entries) or how to export one. Every sampling
  // call checks this first; call it to refuse a wrong file before doing anything else.
  void require_sample_entry(const char* call = "sample()", bool drawing = false) const;

  // run_into() for a sample entry: noise [batch * noise_size]; the sampled actions into
  // sampled_discrete or sampled_continuous [batch * action_size] (the other nullptr), log_probs
  // [batch]. No allocation of its own; sizes are the caller's responsibility.
  void run_sample_into(const float* const* observations, const uint8_t* masks, const float* noise,
                       std::size_t batch, int64_t* discrete_actions, float* continuous_actions,
                       float* const* heads, int64_t* sampled_discrete, float* sampled_continuous,
                       float* log_probs) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ModelInfo info_;

  std::size_t check_batch(std::size_t observation_count, const uint8_t* masks,
                          std::size_t mask_count) const;
  // One Session::Run: noise and the sampled outputs only for a sample entry (`noise` nullptr
  // fetches only `action` and the heads, feeding zeros).
  // `states`, `resets` and `next_states` for a recurrent policy only (one buffer per leaf).
  void run_session(const float* const* observations, const uint8_t* masks, const float* noise,
                   std::size_t batch, int64_t* discrete_actions, float* continuous_actions,
                   float* const* heads, int64_t* sampled_discrete, float* sampled_continuous,
                   float* log_probs, const float* const* states = nullptr,
                   const uint8_t* resets = nullptr, float* const* next_states = nullptr) const;
  void refuse_recurrent(const char* call) const;
};

template <class URBG>
void Policy::draw_noise(URBG& rng, float* noise, std::size_t rows) const {
  require_sample_entry("draw_noise()", true);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = noise + r * info_.noise_size;
    for (const NoiseBlock& block : info_.noise_blocks) {
      float* out = row + block.offset;
      if (block.distribution == kStandardNormal) {
        for (std::size_t i = 0; i < block.size; ++i) out[i] = static_cast<float>(normal(rng));
      } else if (block.distribution == kGumbel) {
        for (std::size_t i = 0; i < block.size; ++i) {
          out[i] = static_cast<float>(-std::log(-std::log(detail::open_unit(rng))));
        }
      } else {  // kUniform (require_sample_entry refused anything else)
        for (std::size_t i = 0; i < block.size; ++i) out[i] = detail::unit_float(rng);
      }
    }
  }
}

}  // namespace policyport
