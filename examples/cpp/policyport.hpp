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
// Contract 1 artifacts (observation[, action_mask] -> action, value) are read the same way.
// The batch size is dynamic. One observation is passed as its leaves' values concatenated in
// input order (for an array observation space that is simply the observation).
//
// Threads: a Policy is immutable after construction. act(), value(), q_values(), run() and
// run_into() are const and may be called concurrently from any number of threads on one Policy
// (ONNX Runtime's Session::Run is thread-safe, and every call uses its own buffers). By default
// each call runs on the calling thread only (intra-op threads = 1): for networks this small a
// thread pool adds latency. Construct the Policy once (loading takes milliseconds) and reuse it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace policyport {

// The artifact contract versions this wrapper understands (docs/artifact.md, "Versions").
//   1 (2026-11-25): first version: observation[, action_mask] -> action, value.
//   2 (2026-12-02): one input per observation leaf; outputs action + the policy's heads.
constexpr int kMinContractVersion = 1;
constexpr int kMaxContractVersion = 2;

// The names the contract fixes; every other name is read from the artifact.
constexpr const char* kMaskInput = "action_mask";
constexpr const char* kActionOutput = "action";
constexpr const char* kValueHead = "value";
constexpr const char* kQValuesHead = "q_values";

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

// One input or output of the artifact, as its session reports it.
struct TensorInfo {
  std::string name;
  std::string dtype;           // "float32", "int64" or "bool"
  std::vector<int64_t> shape;  // per row: without the batch dimension ({} for [batch])
  std::size_t size = 0;        // elements per row (product of shape; 1 for {})
};

// What the artifact says about itself: read from its inputs, outputs and metadata.
struct ModelInfo {
  std::string path;
  int contract_version = 0;
  std::string producer_version;    // policyport.policyport_version, e.g. "0.1.0"
  std::string format;              // policyport.format: "onnx" or "ort"
  std::string action_space_type;   // "Discrete", "MultiDiscrete", "MultiBinary" or "Box"
  std::vector<TensorInfo> inputs;  // in the artifact's order: observation leaves, then the mask
  std::vector<TensorInfo> outputs;             // `action`, then the heads
  std::vector<TensorInfo> observation_inputs;  // the inputs without the mask
  std::vector<TensorInfo> heads;               // the outputs after `action`
  // One observation: the observation inputs' values concatenated in order.
  std::size_t observation_size = 0;
  // The row shape of the only observation input; empty when there are several.
  std::vector<int64_t> observation_shape;
  std::size_t mask_size = 0;          // 0 when the model has no action_mask input
  std::vector<int64_t> action_shape;  // without the batch dimension ({} for Discrete)
  std::size_t action_size = 0;        // elements of one row's action (1 for Discrete)
  bool integer_actions = false;       // int64 actions (else float32, Box)
  std::map<std::string, std::string> metadata;  // every metadata key, values as stored

  bool has_mask() const { return mask_size > 0; }
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

  // The lowest-overhead call: no allocation besides ONNX Runtime's own. The caller owns every
  // buffer: `observations` has one pointer per observation input (info().observation_inputs
  // order), each to [batch * input.size] floats; masks [batch * mask_size] holding only 0/1
  // (or nullptr without a mask); either discrete_actions or continuous_actions
  // [batch * action_size] (the other nullptr); `heads` one pointer per head (info().heads
  // order), each to [batch * head.size] floats. Sizes are the caller's responsibility here;
  // the other calls check them and then call this.
  void run_into(const float* const* observations, const uint8_t* masks, std::size_t batch,
                int64_t* discrete_actions, float* continuous_actions, float* const* heads) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ModelInfo info_;

  std::size_t check_batch(std::size_t observation_count, const uint8_t* masks,
                          std::size_t mask_count) const;
};

}  // namespace policyport
