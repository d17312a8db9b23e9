// policyport.cpp: see policyport.hpp for the API and docs/embedding.md for a walk-through.
#include "policyport.hpp"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace policyport {
namespace {

constexpr const char* kContractVersionKey = "policyport.contract_version";
constexpr const char* kDocs = "docs/artifact.md";
// Tensors of higher rank than this (batch included) are refused when loading, so that every
// call can keep its shapes on the stack.
constexpr std::size_t kMaxRank = 8;

// One ONNX Runtime environment per process (ONNX Runtime's advice). A function-local static is
// created on first use, thread-safely, and lives until exit.
Ort::Env& environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "policyport");
  return env;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    if (shape[i] < 0) {
      out << "batch";
    } else {
      out << shape[i];
    }
  }
  out << ']';
  return out.str();
}

const char* type_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return "bool";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return "int32";
    default:
      return "another type";
  }
}

// A tensor's name, element type and shape, as the session reports them.
struct TensorSpec {
  std::string name;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;  // -1 for symbolic dimensions
};

TensorSpec spec_of(const std::string& name, const Ort::TypeInfo& type_info) {
  TensorSpec spec;
  spec.name = name;
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) return spec;
  auto tensor = type_info.GetTensorTypeAndShapeInfo();
  spec.type = tensor.GetElementType();
  spec.shape = tensor.GetShape();
  return spec;
}

// The per-row shape (everything after a dynamic batch dimension) and its element count, or an
// Error naming the tensor when the shape is not [batch, fixed...].
std::vector<int64_t> row_shape(const TensorSpec& spec, const std::string& path) {
  bool ok = !spec.shape.empty() && spec.shape[0] < 0;
  for (std::size_t i = 1; ok && i < spec.shape.size(); ++i) ok = spec.shape[i] > 0;
  if (!ok) {
    throw Error("'" + path + "': " + spec.name + " has shape " + shape_string(spec.shape) +
                "; the policyport contract (" + kDocs +
                ") has a dynamic batch dimension first and fixed sizes after it. Re-export the "
                "policy with policyport's export-policy.");
  }
  if (spec.shape.size() > kMaxRank) {
    throw Error("'" + path + "': " + spec.name + " has " + std::to_string(spec.shape.size()) +
                " dimensions; policyport.cpp handles up to " + std::to_string(kMaxRank) +
                " (raise kMaxRank in policyport.cpp).");
  }
  return std::vector<int64_t>(spec.shape.begin() + 1, spec.shape.end());
}

std::size_t element_count(const std::vector<int64_t>& shape) {
  std::size_t count = 1;
  for (int64_t dim : shape) count *= static_cast<std::size_t>(dim);
  return count;
}

// Reads the `"type": "..."` field of a policyport space description (a flat JSON object).
std::string space_type(const std::string& json) {
  const std::string key = "\"type\"";
  std::size_t at = json.find(key);
  if (at == std::string::npos) return "";
  at = json.find('"', json.find(':', at + key.size()) + 1);
  std::size_t end = at == std::string::npos ? at : json.find('"', at + 1);
  if (end == std::string::npos) return "";
  return json.substr(at + 1, end - at - 1);
}

// ONNX Runtime's flatbuffer models (.ort) carry the identifier "ORTM" at byte 4. Telling the
// format from the content (not the file name) lets either kind be loaded from any name.
bool is_ort_format(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw Error("cannot open model file '" + path + "': " + std::strerror(errno) +
                ". Pass the path of a .onnx or .ort file written by policyport's export-policy.");
  }
  std::array<char, 8> head{};
  file.read(head.data(), head.size());
  return file.gcount() == 8 && std::memcmp(head.data() + 4, "ORTM", 4) == 0;
}

// Parses the contract version exactly: "1" is 1; "1.0", " 1" or "one" are not versions.
int parse_version(const std::string& text, bool* ok) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text.c_str(), &end, 10);
  *ok = !text.empty() && std::isdigit(static_cast<unsigned char>(text[0])) && errno == 0 &&
        end != nullptr && *end == '\0' && value < 1000000;
  return static_cast<int>(value);
}

}  // namespace

struct Policy::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<const char*> input_names;  // "observation"[, "action_mask"]
  std::array<const char*, 2> output_names{{"action", "value"}};
};

// The function-try-block turns any ONNX Runtime error while reading the model into our Error.
Policy::Policy(const std::string& path, const Options& options) try : impl_(new Impl) {
  info_.path = path;
  const bool ort_format = is_ort_format(path);

  Ort::SessionOptions session_options;
  session_options.SetIntraOpNumThreads(options.intra_op_threads);
  session_options.SetInterOpNumThreads(1);
  session_options.SetExecutionMode(ORT_SEQUENTIAL);
  session_options.SetGraphOptimizationLevel(options.optimize
                                                ? GraphOptimizationLevel::ORT_ENABLE_ALL
                                                : GraphOptimizationLevel::ORT_DISABLE_ALL);
  session_options.AddConfigEntry("session.load_model_format", ort_format ? "ORT" : "ONNX");
  try {
    impl_->session = Ort::Session(environment(), path.c_str(), session_options);
  } catch (const Ort::Exception& e) {
    const std::string hint =
        ort_format
            ? " An .ort file loads in the ONNX Runtime that wrote it or a newer one; this program "
              "links ONNX Runtime with C API version " +
                  std::to_string(ORT_API_VERSION) +
                  ". Re-export with --format ort using a matching onnxruntime, or load the .onnx."
            : " Pass a .onnx or .ort file written by policyport's export-policy.";
    std::string reason = e.what();
    if (!reason.empty() && reason.back() != '.') reason += '.';
    throw Error("cannot load '" + path + "' as " + (ort_format ? "an .ort" : "an ONNX") +
                " model: " + reason + hint);
  }

  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata metadata = impl_->session.GetModelMetadata();
  for (auto& key : metadata.GetCustomMetadataMapKeysAllocated(allocator)) {
    auto value = metadata.LookupCustomMetadataMapAllocated(key.get(), allocator);
    info_.metadata[key.get()] = value ? value.get() : "";
  }
  auto find = [this](const char* key) {
    auto it = info_.metadata.find(key);
    return it == info_.metadata.end() ? std::string() : it->second;
  };

  // The contract version first: if it is unknown, nothing else about the file can be trusted.
  const std::string version_text = find(kContractVersionKey);
  info_.producer_version = find("policyport.policyport_version");
  if (version_text.empty()) {
    throw ContractVersionError(
        "'" + path + "' has no '" + kContractVersionKey +
        "' metadata: it is not a policyport artifact. Export the policy with policyport's "
        "export-policy (--format onnx or ort).");
  }
  bool ok = false;
  info_.contract_version = parse_version(version_text, &ok);
  if (!ok || info_.contract_version < kMinContractVersion ||
      info_.contract_version > kMaxContractVersion) {
    throw ContractVersionError(
        "'" + path + "' uses policyport artifact contract version " + version_text +
        " (written by policyport " +
        (info_.producer_version.empty() ? std::string("of unknown version")
                                        : info_.producer_version) +
        "), but this policyport.hpp/.cpp understands versions " +
        std::to_string(kMinContractVersion) + " to " + std::to_string(kMaxContractVersion) +
        ". Copy policyport.hpp/.cpp from the policyport release that wrote the file, or "
        "re-export the policy with a policyport that writes contract version " +
        std::to_string(kMaxContractVersion) + " (see " + kDocs + ", \"Versions\").");
  }
  info_.format = find("policyport.format");
  info_.action_space_type = space_type(find("policyport.action_space"));

  // Inputs and outputs, as the session sees them (the metadata's tables describe the same).
  std::map<std::string, TensorSpec> inputs;
  std::map<std::string, TensorSpec> outputs;
  for (std::size_t i = 0; i < impl_->session.GetInputCount(); ++i) {
    std::string name = impl_->session.GetInputNameAllocated(i, allocator).get();
    inputs[name] = spec_of(name, impl_->session.GetInputTypeInfo(i));
  }
  for (std::size_t i = 0; i < impl_->session.GetOutputCount(); ++i) {
    std::string name = impl_->session.GetOutputNameAllocated(i, allocator).get();
    outputs[name] = spec_of(name, impl_->session.GetOutputTypeInfo(i));
  }
  auto expect = [&](const std::map<std::string, TensorSpec>& table, const char* name,
                    std::vector<ONNXTensorElementDataType> types) -> const TensorSpec& {
    auto it = table.find(name);
    if (it == table.end()) {
      throw Error("'" + path + "' has no '" + name + "' " +
                  (&table == &inputs ? "input" : "output") + "; the policyport contract (" + kDocs +
                  ") requires one. Re-export the policy with policyport's export-policy.");
    }
    for (auto type : types) {
      if (it->second.type == type) return it->second;
    }
    throw Error("'" + path + "': '" + name + "' has element type " + type_name(it->second.type) +
                ", not the contract's " + type_name(types[0]) + " (" + kDocs + ").");
  };
  const TensorSpec& observation =
      expect(inputs, "observation", {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT});
  info_.observation_shape = row_shape(observation, path);
  info_.observation_size = element_count(info_.observation_shape);
  impl_->input_names.push_back("observation");
  if (inputs.count("action_mask")) {
    const TensorSpec& mask = expect(inputs, "action_mask", {ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL});
    std::vector<int64_t> mask_shape = row_shape(mask, path);
    if (mask_shape.size() != 1) {
      throw Error("'" + path + "': action_mask has shape " + shape_string(mask.shape) +
                  ", not [batch, mask_size] (" + kDocs + ").");
    }
    info_.mask_size = static_cast<std::size_t>(mask_shape[0]);
    impl_->input_names.push_back("action_mask");
  }
  if (inputs.size() != impl_->input_names.size()) {
    throw Error("'" + path + "' has inputs beyond the contract's observation and action_mask (" +
                kDocs + "); re-export the policy with policyport's export-policy.");
  }
  const TensorSpec& action =
      expect(outputs, "action",
             {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT});
  info_.integer_actions = action.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  info_.action_shape = row_shape(action, path);
  info_.action_size = element_count(info_.action_shape);
  const TensorSpec& value = expect(outputs, "value", {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT});
  if (row_shape(value, path).size() != 0) {
    throw Error("'" + path + "': value has shape " + shape_string(value.shape) + ", not [batch] (" +
                kDocs + ").");
  }
} catch (const Ort::Exception& e) {
  throw Error("reading '" + path + "' failed: " + e.what());
}

Policy::~Policy() = default;
Policy::Policy(Policy&&) noexcept = default;
Policy& Policy::operator=(Policy&&) noexcept = default;

std::size_t Policy::check_batch(std::size_t observation_count, const uint8_t* masks,
                                std::size_t mask_count) const {
  const std::size_t obs_size = info_.observation_size;
  if (observation_count == 0 || observation_count % obs_size != 0) {
    throw InputError("observations hold " + std::to_string(observation_count) +
                     " floats; this policy takes " + std::to_string(obs_size) +
                     " per observation (shape " + shape_string(info_.observation_shape) +
                     "), so pass a positive multiple of " + std::to_string(obs_size) + ".");
  }
  const std::size_t batch = observation_count / obs_size;
  if (info_.has_mask()) {
    if (masks == nullptr || mask_count == 0) {
      throw InputError("this policy's action space (" + info_.action_space_type +
                       ") takes an action_mask of " + std::to_string(info_.mask_size) +
                       " bytes per observation (nonzero = allowed) and none was given; to "
                       "allow every action pass all ones.");
    }
    if (mask_count != batch * info_.mask_size) {
      throw InputError("the mask holds " + std::to_string(mask_count) + " bytes; " +
                       std::to_string(batch) + " observation(s) need " +
                       std::to_string(batch * info_.mask_size) + " (" +
                       std::to_string(info_.mask_size) + " per observation).");
    }
  } else if (masks != nullptr || mask_count != 0) {
    throw InputError("this policy's action space (" + info_.action_space_type +
                     ") has no action_mask input; pass no mask.");
  }
  return batch;
}

namespace {
// A mask with only 0/1 bytes is passed to ONNX Runtime as it is; any other nonzero byte means
// "allowed" too, but a bool tensor must hold 0/1, so such a mask is copied as 0/1.
const uint8_t* as_bool_bytes(const uint8_t* masks, std::size_t count,
                             std::vector<uint8_t>* storage) {
  if (masks == nullptr) return nullptr;
  for (std::size_t i = 0; i < count; ++i) {
    if (masks[i] > 1) {
      storage->resize(count);
      for (std::size_t j = 0; j < count; ++j) (*storage)[j] = masks[j] != 0;
      return storage->data();
    }
  }
  return masks;
}
}  // namespace

void Policy::run_into(const float* observations, const uint8_t* masks, std::size_t batch,
                      int64_t* discrete_actions, float* continuous_actions, float* values) const {
  try {
    const auto& memory = impl_->memory;
    const int64_t rows = static_cast<int64_t>(batch);
    // ONNX Runtime never writes to inputs; CreateTensor takes non-const pointers regardless.
    // Shapes on the stack (no allocation per call): the batch, then the fixed dimensions.
    std::array<int64_t, kMaxRank> obs_shape{};
    obs_shape[0] = rows;
    std::copy(info_.observation_shape.begin(), info_.observation_shape.end(),
              obs_shape.begin() + 1);
    const std::size_t obs_rank = info_.observation_shape.size() + 1;
    std::array<Ort::Value, 2> inputs{
        Ort::Value::CreateTensor<float>(memory, const_cast<float*>(observations),
                                        batch * info_.observation_size, obs_shape.data(), obs_rank),
        Ort::Value(nullptr)};
    const std::array<int64_t, 2> mask_shape{rows, static_cast<int64_t>(info_.mask_size)};
    if (info_.has_mask()) {
      inputs[1] = Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(masks),
                                           batch * info_.mask_size, mask_shape.data(),
                                           mask_shape.size(), ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL);
    }
    std::array<int64_t, kMaxRank> action_shape{};
    action_shape[0] = rows;
    std::copy(info_.action_shape.begin(), info_.action_shape.end(), action_shape.begin() + 1);
    const std::size_t action_rank = info_.action_shape.size() + 1;
    const std::size_t action_count = batch * info_.action_size;
    std::array<Ort::Value, 2> outputs{
        info_.integer_actions
            ? Ort::Value::CreateTensor<int64_t>(memory, discrete_actions, action_count,
                                                action_shape.data(), action_rank)
            : Ort::Value::CreateTensor<float>(memory, continuous_actions, action_count,
                                              action_shape.data(), action_rank),
        Ort::Value::CreateTensor<float>(memory, values, batch, &rows, 1)};
    impl_->session.Run(Ort::RunOptions{nullptr}, impl_->input_names.data(), inputs.data(),
                       impl_->input_names.size(), impl_->output_names.data(), outputs.data(),
                       outputs.size());
  } catch (const Ort::Exception& e) {
    throw Error("running '" + info_.path + "' failed: " + e.what());
  }
}

BatchResult Policy::run(const float* observations, std::size_t observation_count,
                        const uint8_t* masks, std::size_t mask_count) const {
  BatchResult result;
  result.batch = check_batch(observation_count, masks, mask_count);
  std::vector<uint8_t> storage;
  const uint8_t* bools = as_bool_bytes(masks, mask_count, &storage);
  if (info_.integer_actions) {
    result.discrete_actions.resize(result.batch * info_.action_size);
  } else {
    result.continuous_actions.resize(result.batch * info_.action_size);
  }
  result.values.resize(result.batch);
  run_into(observations, bools, result.batch, result.discrete_actions.data(),
           result.continuous_actions.data(), result.values.data());
  return result;
}

BatchResult Policy::run(const std::vector<float>& observations,
                        const std::vector<uint8_t>& masks) const {
  return run(observations.data(), observations.size(), masks.empty() ? nullptr : masks.data(),
             masks.size());
}

Action Policy::act(const float* observation, std::size_t observation_count, const uint8_t* mask,
                   std::size_t mask_count) const {
  if (observation_count != info_.observation_size) {
    throw InputError("act() takes one observation of " + std::to_string(info_.observation_size) +
                     " floats (shape " + shape_string(info_.observation_shape) + "), got " +
                     std::to_string(observation_count) + "; use run() for a batch.");
  }
  check_batch(observation_count, mask, mask_count);
  std::vector<uint8_t> storage;
  const uint8_t* bools = as_bool_bytes(mask, mask_count, &storage);
  Action action;
  if (info_.integer_actions) {
    action.discrete.resize(info_.action_size);
  } else {
    action.continuous.resize(info_.action_size);
  }
  run_into(observation, bools, 1, action.discrete.data(), action.continuous.data(), &action.value);
  return action;
}

Action Policy::act(const std::vector<float>& observation, const std::vector<uint8_t>& mask) const {
  return act(observation.data(), observation.size(), mask.empty() ? nullptr : mask.data(),
             mask.size());
}

float Policy::value(const float* observation, std::size_t observation_count) const {
  std::vector<uint8_t> all_allowed(info_.mask_size, 1);
  Action action = act(observation, observation_count,
                      info_.has_mask() ? all_allowed.data() : nullptr, all_allowed.size());
  return action.value;
}

float Policy::value(const std::vector<float>& observation) const {
  return value(observation.data(), observation.size());
}

}  // namespace policyport
