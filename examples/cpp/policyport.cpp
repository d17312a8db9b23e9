// policyport.cpp: see policyport.hpp for the API and docs/embedding.md for a walk-through.
#include "policyport.hpp"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

namespace policyport {
namespace {

constexpr const char* kContractVersionKey = "policyport.contract_version";
constexpr const char* kDocs = "docs/artifact.md";
// Tensors of higher rank than this (batch included), and more inputs or outputs than this, are
// refused when loading (limits in policyport.hpp), so every call keeps its shapes on the stack.
constexpr std::size_t kMaxRank = limits::kMaxRank;
constexpr std::size_t kMaxTensors = limits::kMaxTensors;

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
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return "int16";
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

// An integer observation input (contract 5) from the caller's floats, into `storage`, which
// the tensor then reads. Each value must be an integer in the type's range: a NaN, a
// fraction (frames scaled to [0, 1] by mistake) or 256 for a uint8 is refused, never
// truncated or wrapped (a float-to-integer cast out of range is undefined behaviour).
template <typename T>
Ort::Value integer_input(const Ort::MemoryInfo& memory, const std::string& name,
                         const float* values, std::size_t count, const int64_t* shape,
                         std::size_t rank, std::vector<uint8_t>* storage) {
  storage->resize(count * sizeof(T));
  T* out = reinterpret_cast<T*>(storage->data());
  const double lowest = static_cast<double>(std::numeric_limits<T>::lowest());
  const double highest = static_cast<double>(std::numeric_limits<T>::max());
  for (std::size_t i = 0; i < count; ++i) {
    const double value = values[i];
    if (!(value >= lowest && value <= highest) || value != std::floor(value)) {
      std::ostringstream message;
      message << "observation input '" << name << "' takes integers from " << lowest << " to "
              << highest << "; value " << i << " is " << values[i];
      throw InputError(message.str());
    }
    out[i] = static_cast<T>(value);
  }
  return Ort::Value::CreateTensor<T>(memory, out, count, shape, rank);
}

// `count` null Ort::Values on the stack (Ort::Value has no default constructor).
template <std::size_t... I>
std::array<Ort::Value, sizeof...(I)> null_values(std::index_sequence<I...>) {
  return {{(static_cast<void>(I), Ort::Value(nullptr))...}};
}

std::string names_of(const std::vector<TensorInfo>& tensors) {
  std::string out;
  // A hostile file's names may be long: each is cut, so the message stays short.
  for (const TensorInfo& tensor : tensors) {
    out += (out.empty() ? "" : ", ") + tensor.name.substr(0, 64);
  }
  return out.empty() ? "none" : out;
}

// How one observation is laid out, for messages: "shape [6]" or
// "observation.pos [3] + observation.kind [] concatenated".
std::string layout(const ModelInfo& info) {
  if (info.observation_inputs.size() == 1) return "shape " + shape_string(info.observation_shape);
  std::string out;
  for (const TensorInfo& input : info.observation_inputs) {
    out += (out.empty() ? "" : " + ") + input.name + " " + shape_string(input.shape);
  }
  return out + " concatenated";
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

// `file` in the folder of `path` (the entries name files beside each other).
std::string sibling(const std::string& path, const std::string& file) {
  const std::size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? file : path.substr(0, slash + 1) + file;
}

// The sample entry export-policy --sample would write beside `path`: <stem>.sample<suffix>.
std::string sample_entry_name(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  const std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return path + ".sample";
  }
  return path.substr(0, dot) + ".sample" + path.substr(dot);
}

// The metadata of an .onnx file, read from the file itself: one pass over the ModelProto's
// top level (ONNX Runtime's lookups copy the whole table on every call, and cut a value at
// its first NUL).
Metadata onnx_metadata(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("cannot open model file '" + path + "': " + std::strerror(errno));
  return read_onnx_metadata(file, path);
}

// The metadata of an .ort file, through ONNX Runtime: the keys once (counted and checked),
// then only the values this wrapper reads (each lookup copies the whole table).
Metadata ort_metadata(const Ort::Session& session, const std::string& path) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata model = session.GetModelMetadata();
  std::vector<std::string> keys;
  for (auto& key : model.GetCustomMetadataMapKeysAllocated(allocator)) keys.push_back(key.get());
  check_keys(keys, path);
  Metadata metadata;
  for (const std::string& key : read_keys()) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
    auto value = model.LookupCustomMetadataMapAllocated(key.c_str(), allocator);
    metadata[key] = value ? value.get() : "";
  }
  return metadata;
}

// The model's inputs (or outputs) as its session reports them.
std::vector<TensorSpec> model_tensors(const Ort::Session& session, bool inputs) {
  Ort::AllocatorWithDefaultOptions allocator;
  const std::size_t count = inputs ? session.GetInputCount() : session.GetOutputCount();
  std::vector<TensorSpec> specs;
  for (std::size_t i = 0; i < count && i <= kMaxTensors; ++i) {
    const std::string name = inputs ? session.GetInputNameAllocated(i, allocator).get()
                                    : session.GetOutputNameAllocated(i, allocator).get();
    specs.push_back(spec_of(name, inputs ? session.GetInputTypeInfo(i) : session.GetOutputTypeInfo(i)));
  }
  return specs;
}

// "" when `spec` (the model's) is `listed` (the metadata's): name, dtype, and shape with a
// dynamic batch dimension first; else the difference, for a message.
std::string difference(const TensorSpec& spec, const TensorInfo& listed) {
  std::vector<int64_t> listed_shape = {-1};
  listed_shape.insert(listed_shape.end(), listed.shape.begin(), listed.shape.end());
  const bool dynamic_batch = !spec.shape.empty() && spec.shape[0] < 0;
  std::vector<int64_t> shape = spec.shape;
  if (dynamic_batch) shape[0] = -1;
  if (spec.name == listed.name && type_name(spec.type) == listed.dtype && shape == listed_shape) {
    return "";
  }
  return "the model's " + quote(spec.name) + " is " + type_name(spec.type) + " " +
         shape_string(spec.shape) + ", the metadata lists " + quote(listed.name) + " " +
         listed.dtype + " " + shape_string(listed_shape) +
         (dynamic_batch ? "" : " (a dynamic batch dimension first)");
}

// The model's inputs and outputs are the ones its metadata lists: the session is what runs,
// so a file edited after export is refused here rather than misread later.
void check_model_matches(const Ort::Session& session, const ModelInfo& info) {
  const std::vector<TensorSpec> inputs = model_tensors(session, true);
  const std::vector<TensorSpec> outputs = model_tensors(session, false);
  std::string problem;
  auto compare = [&](const std::vector<TensorSpec>& specs, const std::vector<TensorInfo>& listed) {
    if (specs.size() != listed.size() && problem.empty()) {
      problem = "the model has " + std::to_string(session.GetInputCount()) + " inputs and " +
                std::to_string(session.GetOutputCount()) + " outputs";
    }
    for (std::size_t i = 0; i < specs.size() && i < listed.size() && problem.empty(); ++i) {
      problem = difference(specs[i], listed[i]);
    }
  };
  compare(inputs, info.inputs);
  compare(outputs, info.outputs);
  if (problem.empty()) return;
  std::vector<TensorInfo> input_names, output_names;
  for (const TensorSpec& spec : inputs) input_names.push_back(TensorInfo{spec.name, "", {}, 0});
  for (const TensorSpec& spec : outputs) output_names.push_back(TensorInfo{spec.name, "", {}, 0});
  throw Error("'" + info.path + "': its inputs (" + names_of(input_names) + ") and outputs (" +
              names_of(output_names) + ") are not the ones its policyport.inputs / "
              "policyport.outputs metadata lists (" + problem + "): the file was changed after "
              "export. Re-export the policy with policyport's export-policy.");
}

}  // namespace

const TensorInfo* ModelInfo::head(const std::string& name) const {
  for (const TensorInfo& tensor : heads) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

namespace {
const std::vector<float>& find_head(const std::map<std::string, std::vector<float>>& heads,
                                    const char* name) {
  auto it = heads.find(name);
  if (it == heads.end()) {
    std::string present;
    for (const auto& entry : heads) present += (present.empty() ? "" : ", ") + entry.first;
    throw InputError(std::string("this policy has no '") + name + "' output (its heads: " +
                     (present.empty() ? "none" : present) +
                     "); read the heads it has, listed in ModelInfo::heads.");
  }
  return it->second;
}
}  // namespace

float Action::value() const { return find_head(heads, kValueHead).at(0); }
const std::vector<float>& Action::q_values() const { return find_head(heads, kQValuesHead); }
const std::vector<float>& BatchResult::values() const { return find_head(heads, kValueHead); }
const std::vector<float>& BatchResult::q_values() const { return find_head(heads, kQValuesHead); }

struct Policy::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<std::string> input_name_storage, output_name_storage;
  std::vector<const char*> input_names;   // the observation inputs, then action_mask if any
  std::vector<const char*> output_names;  // action, then the heads
};

// The function-try-block turns any ONNX Runtime error while reading the model into our Error.
Policy::Policy(const std::string& path, const Options& options) try : impl_(new Impl) {
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

  // What the metadata says, checked against the contract and its limits; then the model's
  // own inputs and outputs must be exactly the ones listed there.
  info_ = describe_artifact(ort_format ? ort_metadata(impl_->session, path) : onnx_metadata(path),
                            path);
  check_model_matches(impl_->session, info_);
  for (const TensorInfo& tensor : info_.inputs) impl_->input_name_storage.push_back(tensor.name);
  for (const TensorInfo& tensor : info_.outputs) impl_->output_name_storage.push_back(tensor.name);
  for (const std::string& name : impl_->input_name_storage) {
    impl_->input_names.push_back(name.c_str());
  }
  for (const std::string& name : impl_->output_name_storage) {
    impl_->output_names.push_back(name.c_str());
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
                     " per observation (" + layout(info_) + "), so pass a positive multiple of " +
                     std::to_string(obs_size) + ".");
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

void Policy::run_session(const float* const* observations, const uint8_t* masks,
                         const float* noise, std::size_t batch, int64_t* discrete_actions,
                         float* continuous_actions, float* const* heads, int64_t* sampled_discrete,
                         float* sampled_continuous, float* log_probs, const float* const* states,
                         const uint8_t* resets, float* const* next_states) const {
  // Every stateless call ends here: a recurrent artifact needs step()'s state and reset.
  if (states == nullptr || resets == nullptr || next_states == nullptr) {
    refuse_recurrent("act(), run() and the sampling calls");
  }
  try {
    const auto& memory = impl_->memory;
    const int64_t rows = static_cast<int64_t>(batch);
    // Shapes on the stack (no allocation per call): the batch, then the fixed dimensions.
    std::array<std::array<int64_t, kMaxRank>, 2 * kMaxTensors> shapes{};
    std::size_t next_shape = 0;
    auto shape_of = [&](const TensorInfo& tensor) {
      std::array<int64_t, kMaxRank>& shape = shapes[next_shape++];
      shape[0] = rows;
      std::copy(tensor.shape.begin(), tensor.shape.end(), shape.begin() + 1);
      return shape.data();
    };
    auto inputs = null_values(std::make_index_sequence<kMaxTensors>());
    auto outputs = null_values(std::make_index_sequence<kMaxTensors>());
    // ONNX Runtime never writes to inputs; CreateTensor takes non-const pointers regardless.
    std::size_t n_in = 0;
    // Integer observation inputs (uint8 frames) are converted per call; float32 ones are read
    // in place.
    std::array<std::vector<uint8_t>, kMaxTensors> converted;
    for (const TensorInfo& input : info_.observation_inputs) {
      const float* values = observations[n_in];
      const std::size_t count = batch * input.size;
      const int64_t* shape = shape_of(input);
      const std::size_t rank = input.shape.size() + 1;
      std::vector<uint8_t>* storage = &converted[n_in];
      if (input.dtype == "uint8") {
        inputs[n_in] =
            integer_input<uint8_t>(memory, input.name, values, count, shape, rank, storage);
      } else if (input.dtype == "int8") {
        inputs[n_in] =
            integer_input<int8_t>(memory, input.name, values, count, shape, rank, storage);
      } else if (input.dtype == "uint16") {
        inputs[n_in] =
            integer_input<uint16_t>(memory, input.name, values, count, shape, rank, storage);
      } else if (input.dtype == "int16") {
        inputs[n_in] =
            integer_input<int16_t>(memory, input.name, values, count, shape, rank, storage);
      } else if (input.dtype == "int32") {
        inputs[n_in] =
            integer_input<int32_t>(memory, input.name, values, count, shape, rank, storage);
      } else {
        inputs[n_in] = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(values), count,
                                                       shape, rank);
      }
      ++n_in;
    }
    if (info_.has_mask()) {
      const TensorInfo& mask = info_.inputs[n_in];
      inputs[n_in++] = Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(masks),
                                                batch * mask.size, shape_of(mask),
                                                mask.shape.size() + 1,
                                                ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL);
    }
    if (info_.is_recurrent()) {
      for (std::size_t s = 0; s < info_.state_inputs.size(); ++s) {
        const TensorInfo& leaf = info_.state_inputs[s];
        inputs[n_in++] = Ort::Value::CreateTensor<float>(
            memory, const_cast<float*>(states[s]), batch * leaf.size, shape_of(leaf),
            leaf.shape.size() + 1);
      }
      const TensorInfo& reset = info_.inputs[n_in];
      inputs[n_in++] = Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(resets), batch,
                                                shape_of(reset), 1,
                                                ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL);
    }
    if (info_.is_sample_entry()) {
      const TensorInfo& input = info_.inputs.back();
      inputs[n_in++] = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(noise),
                                                       batch * input.size, shape_of(input),
                                                       input.shape.size() + 1);
    }
    // An action-like output (`action`, `sampled_action`) into the caller's int64 or float buffer.
    auto action_value = [&](const TensorInfo& tensor, int64_t* discrete, float* continuous) {
      int64_t* shape = shape_of(tensor);
      return info_.integer_actions
                 ? Ort::Value::CreateTensor<int64_t>(memory, discrete, batch * tensor.size, shape,
                                                     tensor.shape.size() + 1)
                 : Ort::Value::CreateTensor<float>(memory, continuous, batch * tensor.size, shape,
                                                   tensor.shape.size() + 1);
    };
    std::size_t n_out = 0;
    outputs[n_out++] = action_value(info_.outputs[0], discrete_actions, continuous_actions);
    for (std::size_t h = 0; h < info_.heads.size(); ++h) {
      const TensorInfo& head = info_.heads[h];
      outputs[n_out++] = Ort::Value::CreateTensor<float>(memory, heads[h], batch * head.size,
                                                         shape_of(head), head.shape.size() + 1);
    }
    for (std::size_t s = 0; next_states != nullptr && s < info_.state_outputs.size(); ++s) {
      const TensorInfo& leaf = info_.state_outputs[s];
      outputs[n_out++] = Ort::Value::CreateTensor<float>(memory, next_states[s], batch * leaf.size,
                                                         shape_of(leaf), leaf.shape.size() + 1);
    }
    // The outputs are action, the heads, then sampled_action and log_prob: fetching the first
    // n_out leaves the sampled ones out when they are not asked for.
    if (log_probs != nullptr) {
      const std::size_t last = info_.outputs.size() - 1;
      outputs[n_out++] = action_value(info_.outputs[last - 1], sampled_discrete,
                                      sampled_continuous);
      const TensorInfo& log_prob = info_.outputs[last];
      outputs[n_out++] = Ort::Value::CreateTensor<float>(memory, log_probs, batch,
                                                         shape_of(log_prob), 1);
    }
    impl_->session.Run(Ort::RunOptions{nullptr}, impl_->input_names.data(), inputs.data(), n_in,
                       impl_->output_names.data(), outputs.data(), n_out);
  } catch (const Ort::Exception& e) {
    throw Error("running '" + info_.path + "' failed: " + e.what());
  }
}

namespace {
std::vector<const float*> split_inputs(const ModelInfo& info, const float* rows,
                                       std::size_t batch, std::vector<float>* storage);
}  // namespace

void Policy::refuse_recurrent(const char* call) const {
  if (!info_.is_recurrent()) return;
  throw InputError(std::string(call) + ": '" + info_.path + "' is a recurrent policy (contract " +
                   std::to_string(info_.contract_version) +
                   "): each call takes its state and a reset flag. Call step() with a State "
                   "per agent (initial_state() at first).");
}

State Policy::initial_state() const {
  if (!info_.is_recurrent()) {
    throw InputError("initial_state(): '" + info_.path +
                     "' is a stateless policy (no state inputs): call act() or run().");
  }
  State state;
  for (const TensorInfo& leaf : info_.state_inputs) state.leaves.emplace_back(leaf.size, 0.0f);
  return state;
}

BatchResult Policy::step(const std::vector<float>& observations, const std::vector<uint8_t>& masks,
                         std::vector<State>& states) const {
  if (!info_.is_recurrent()) {
    throw InputError("step(): '" + info_.path +
                     "' is a stateless policy (no state inputs): call act() or run().");
  }
  if (info_.is_sample_entry()) {
    throw EntryError("step(): '" + info_.path + "' is a recurrent sample entry; this wrapper "
                     "steps the default entry only.");
  }
  BatchResult result;
  result.batch = check_batch(observations.size(), masks.empty() ? nullptr : masks.data(),
                             masks.size());
  if (states.size() != result.batch) {
    throw InputError("step(): " + std::to_string(result.batch) + " observation(s) need as many "
                     "states, got " + std::to_string(states.size()) + ".");
  }
  const std::size_t n_leaves = info_.state_inputs.size();
  std::vector<std::vector<float>> in(n_leaves), out(n_leaves);
  std::vector<const float*> in_ptrs(n_leaves);
  std::vector<float*> out_ptrs(n_leaves);
  for (std::size_t s = 0; s < n_leaves; ++s) {
    const std::size_t size = info_.state_inputs[s].size;
    in[s].resize(result.batch * size);
    out[s].resize(result.batch * size);
    for (std::size_t r = 0; r < result.batch; ++r) {
      if (states[r].leaves.size() != n_leaves || states[r].leaves[s].size() != size) {
        throw InputError("step(): state " + std::to_string(r) + " is not this policy's (" +
                         std::to_string(n_leaves) + " leaves, '" + info_.state_inputs[s].name +
                         "' of " + std::to_string(size) + " floats): start from initial_state().");
      }
      std::copy(states[r].leaves[s].begin(), states[r].leaves[s].end(), in[s].begin() + r * size);
    }
    in_ptrs[s] = in[s].data();
    out_ptrs[s] = out[s].data();
  }
  std::vector<uint8_t> resets(result.batch);
  for (std::size_t r = 0; r < result.batch; ++r) resets[r] = states[r].reset ? 1 : 0;
  std::vector<uint8_t> mask_storage;
  const uint8_t* bools = as_bool_bytes(masks.empty() ? nullptr : masks.data(), masks.size(),
                                       &mask_storage);
  std::vector<float> input_storage;
  const std::vector<const float*> inputs =
      split_inputs(info_, observations.data(), result.batch, &input_storage);
  if (info_.integer_actions) {
    result.discrete_actions.resize(result.batch * info_.action_size);
  } else {
    result.continuous_actions.resize(result.batch * info_.action_size);
  }
  std::vector<float*> head_ptrs;
  for (const TensorInfo& head : info_.heads) {
    std::vector<float>& values = result.heads[head.name];
    values.resize(result.batch * head.size);
    head_ptrs.push_back(values.data());
  }
  run_session(inputs.data(), bools, nullptr, result.batch, result.discrete_actions.data(),
              result.continuous_actions.data(), head_ptrs.data(), nullptr, nullptr, nullptr,
              in_ptrs.data(), resets.data(), out_ptrs.data());
  for (std::size_t r = 0; r < result.batch; ++r) {
    for (std::size_t s = 0; s < n_leaves; ++s) {
      const std::size_t size = info_.state_inputs[s].size;
      std::copy_n(out[s].begin() + r * size, size, states[r].leaves[s].begin());
    }
    states[r].reset = false;
  }
  return result;
}

Action Policy::step(const std::vector<float>& observation, const std::vector<uint8_t>& mask,
                    State& state) const {
  std::vector<State> one(1);
  one[0] = std::move(state);
  BatchResult batch;
  try {
    batch = step(observation, mask, one);
  } catch (...) {
    state = std::move(one[0]);
    throw;
  }
  state = std::move(one[0]);
  Action action;
  action.discrete = std::move(batch.discrete_actions);
  action.continuous = std::move(batch.continuous_actions);
  action.heads = std::move(batch.heads);
  return action;
}

void Policy::run_into(const float* const* observations, const uint8_t* masks, std::size_t batch,
                      int64_t* discrete_actions, float* continuous_actions,
                      float* const* heads) const {
  refuse_recurrent("run_into()");
  if (info_.is_sample_entry()) {
    const auto it = info_.entries.find("default");
    throw EntryError(
        "run_into(): '" + info_.path + "' is a sample entry (contract " +
        std::to_string(info_.contract_version) +
        "): it takes a noise input. Call run_sample_into() (zero noise leaves `action` as it "
        "is), run() or act(), or load the default entry" +
        (it == info_.entries.end() ? std::string()
                                   : " '" + sibling(info_.path, it->second) + "'") +
        " for the deterministic action alone.");
  }
  run_session(observations, masks, nullptr, batch, discrete_actions, continuous_actions, heads,
              nullptr, nullptr, nullptr);
}

void Policy::run_sample_into(const float* const* observations, const uint8_t* masks,
                             const float* noise, std::size_t batch, int64_t* discrete_actions,
                             float* continuous_actions, float* const* heads,
                             int64_t* sampled_discrete, float* sampled_continuous,
                             float* log_probs) const {
  require_sample_entry("run_sample_into()", false);
  refuse_recurrent("run_sample_into()");
  run_session(observations, masks, noise, batch, discrete_actions, continuous_actions, heads,
              sampled_discrete, sampled_continuous, log_probs);
}

void Policy::require_sample_entry(const char* call, bool drawing) const {
  if (!info_.is_sample_entry()) {
    const auto it = info_.entries.find("sample");
    if (it != info_.entries.end()) {
      throw EntryError(std::string(call) + ": '" + info_.path +
                       "' is the default entry of its policy (contract " +
                       std::to_string(info_.contract_version) +
                       ": no noise input, no sampled_action). Load its sample entry '" +
                       sibling(info_.path, it->second) +
                       "' (policyport.entries) instead; it has the default entry's outputs too.");
    }
    throw EntryError(std::string(call) + ": '" + info_.path +
                     "' has no sampling path (contract " +
                     std::to_string(info_.contract_version) +
                     ": no noise input, no sampled_action): it was exported without --sample. "
                     "Re-export with `export-policy ... --sample` (Python: export(..., "
                     "sample=True)), which writes '" +
                     sample_entry_name(info_.path) + "' beside it, and load that.");
  }
  if (!drawing) return;
  for (const NoiseBlock& block : info_.noise_blocks) {
    if (block.distribution != kStandardNormal && block.distribution != kGumbel &&
        block.distribution != kUniform) {
      throw EntryError(std::string(call) + ": '" + info_.path + "' takes a noise block at " +
                       "offset " + std::to_string(block.offset) + " drawn from '" +
                       block.distribution + "', which this wrapper cannot draw (it draws " +
                       kStandardNormal + ", " + kGumbel + " and " + kUniform +
                       "). Draw that noise yourself, or in Python with "
                       "policyport.sampling_noise(policy, key), and call sample_with_noise() "
                       "or run_sample().");
    }
  }
}

namespace {
// The observation inputs' buffers for run_into(): `rows` as it is when there is one input,
// else each input's columns copied out of the concatenated rows into `storage`.
std::vector<const float*> split_inputs(const ModelInfo& info, const float* rows,
                                       std::size_t batch, std::vector<float>* storage) {
  if (info.observation_inputs.size() == 1) return {rows};
  storage->resize(batch * info.observation_size);
  std::vector<const float*> inputs;
  std::size_t offset = 0;  // of the input within a row
  float* out = storage->data();
  for (const TensorInfo& input : info.observation_inputs) {
    inputs.push_back(out);
    for (std::size_t r = 0; r < batch; ++r) {
      std::copy_n(rows + r * info.observation_size + offset, input.size, out);
      out += input.size;
    }
    offset += input.size;
  }
  return inputs;
}
}  // namespace

BatchResult Policy::run(const float* observations, std::size_t observation_count,
                        const uint8_t* masks, std::size_t mask_count) const {
  BatchResult result;
  result.batch = check_batch(observation_count, masks, mask_count);
  std::vector<uint8_t> mask_storage;
  const uint8_t* bools = as_bool_bytes(masks, mask_count, &mask_storage);
  std::vector<float> input_storage;
  const std::vector<const float*> inputs =
      split_inputs(info_, observations, result.batch, &input_storage);
  if (info_.integer_actions) {
    result.discrete_actions.resize(result.batch * info_.action_size);
  } else {
    result.continuous_actions.resize(result.batch * info_.action_size);
  }
  std::vector<float*> heads;
  for (const TensorInfo& head : info_.heads) {
    std::vector<float>& buffer = result.heads[head.name];
    buffer.resize(result.batch * head.size);
    heads.push_back(buffer.data());
  }
  // A sample entry takes noise; `action` and the heads do not depend on it.
  const std::vector<float> zero_noise(result.batch * info_.noise_size, 0.0f);
  run_session(inputs.data(), bools, zero_noise.data(), result.batch,
              result.discrete_actions.data(), result.continuous_actions.data(), heads.data(),
              nullptr, nullptr, nullptr);
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
                     " floats (" + layout(info_) + "), got " +
                     std::to_string(observation_count) + "; use run() for a batch.");
  }
  BatchResult result = run(observation, observation_count, mask, mask_count);
  Action action;
  action.discrete = std::move(result.discrete_actions);
  action.continuous = std::move(result.continuous_actions);
  action.heads = std::move(result.heads);
  return action;
}

Action Policy::act(const std::vector<float>& observation, const std::vector<uint8_t>& mask) const {
  return act(observation.data(), observation.size(), mask.empty() ? nullptr : mask.data(),
             mask.size());
}

BatchSample Policy::run_sample(const float* observations, std::size_t observation_count,
                               const uint8_t* masks, std::size_t mask_count, const float* noise,
                               std::size_t noise_count) const {
  require_sample_entry("run_sample()", false);
  BatchSample result;
  result.batch = check_batch(observation_count, masks, mask_count);
  if (noise == nullptr || noise_count != result.batch * info_.noise_size) {
    throw InputError("the noise holds " + std::to_string(noise == nullptr ? 0 : noise_count) +
                     " floats; " + std::to_string(result.batch) + " observation(s) need " +
                     std::to_string(result.batch * info_.noise_size) + " (" +
                     std::to_string(info_.noise_size) +
                     " per observation, the blocks of ModelInfo::noise_blocks).");
  }
  std::vector<uint8_t> mask_storage;
  const uint8_t* bools = as_bool_bytes(masks, mask_count, &mask_storage);
  std::vector<float> input_storage;
  const std::vector<const float*> inputs =
      split_inputs(info_, observations, result.batch, &input_storage);
  BatchResult& mode = result.mode;
  mode.batch = result.batch;
  const std::size_t actions = result.batch * info_.action_size;
  if (info_.integer_actions) {
    mode.discrete_actions.resize(actions);
    result.discrete_actions.resize(actions);
  } else {
    mode.continuous_actions.resize(actions);
    result.continuous_actions.resize(actions);
  }
  std::vector<float*> heads;
  for (const TensorInfo& head : info_.heads) {
    std::vector<float>& buffer = mode.heads[head.name];
    buffer.resize(result.batch * head.size);
    heads.push_back(buffer.data());
  }
  result.log_probs.resize(result.batch);
  run_session(inputs.data(), bools, noise, result.batch, mode.discrete_actions.data(),
              mode.continuous_actions.data(), heads.data(), result.discrete_actions.data(),
              result.continuous_actions.data(), result.log_probs.data());
  return result;
}

BatchSample Policy::run_sample(const std::vector<float>& observations,
                               const std::vector<uint8_t>& masks,
                               const std::vector<float>& noise) const {
  return run_sample(observations.data(), observations.size(),
                    masks.empty() ? nullptr : masks.data(), masks.size(), noise.data(),
                    noise.size());
}

Sample Policy::sample_with_noise(const float* observation, std::size_t observation_count,
                                 const uint8_t* mask, std::size_t mask_count, const float* noise,
                                 std::size_t noise_count) const {
  require_sample_entry("sample_with_noise()", false);
  if (observation_count != info_.observation_size) {
    throw InputError("sample_with_noise() takes one observation of " +
                     std::to_string(info_.observation_size) + " floats (" + layout(info_) +
                     "), got " + std::to_string(observation_count) +
                     "; use run_sample() for a batch.");
  }
  BatchSample batch =
      run_sample(observation, observation_count, mask, mask_count, noise, noise_count);
  Sample result;
  result.discrete = std::move(batch.discrete_actions);
  result.continuous = std::move(batch.continuous_actions);
  result.log_prob = batch.log_probs.at(0);
  result.mode.discrete = std::move(batch.mode.discrete_actions);
  result.mode.continuous = std::move(batch.mode.continuous_actions);
  result.mode.heads = std::move(batch.mode.heads);
  return result;
}

Sample Policy::sample_with_noise(const std::vector<float>& observation,
                                 const std::vector<uint8_t>& mask,
                                 const std::vector<float>& noise) const {
  return sample_with_noise(observation.data(), observation.size(),
                           mask.empty() ? nullptr : mask.data(), mask.size(), noise.data(),
                           noise.size());
}

namespace {
// The heads do not depend on the mask: a masked model is run with every action allowed.
Action act_unmasked(const Policy& policy, const float* observation, std::size_t count,
                    const char* head) {
  const ModelInfo& info = policy.info();
  if (!info.has_head(head)) {
    throw InputError(std::string("this policy has no '") + head + "' output (its heads: " +
                     names_of(info.heads) + "); read the heads it has, listed in " +
                     "ModelInfo::heads.");
  }
  std::vector<uint8_t> all_allowed(info.mask_size, 1);
  return policy.act(observation, count, info.has_mask() ? all_allowed.data() : nullptr,
                    all_allowed.size());
}
}  // namespace

float Policy::value(const float* observation, std::size_t observation_count) const {
  return act_unmasked(*this, observation, observation_count, kValueHead).value();
}

float Policy::value(const std::vector<float>& observation) const {
  return value(observation.data(), observation.size());
}

std::vector<float> Policy::q_values(const float* observation, std::size_t observation_count) const {
  return act_unmasked(*this, observation, observation_count, kQValuesHead).q_values();
}

std::vector<float> Policy::q_values(const std::vector<float>& observation) const {
  return q_values(observation.data(), observation.size());
}

}  // namespace policyport
