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
#include <sstream>
#include <utility>
#include <vector>

namespace policyport {
namespace {

constexpr const char* kContractVersionKey = "policyport.contract_version";
constexpr const char* kDocs = "docs/artifact.md";
// Tensors of higher rank than this (batch included), and more inputs or outputs than this, are
// refused when loading, so that every call can keep its tensors and shapes on the stack.
constexpr std::size_t kMaxRank = 8;
constexpr std::size_t kMaxTensors = 16;

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

// `count` null Ort::Values on the stack (Ort::Value has no default constructor).
template <std::size_t... I>
std::array<Ort::Value, sizeof...(I)> null_values(std::index_sequence<I...>) {
  return {{(static_cast<void>(I), Ort::Value(nullptr))...}};
}

bool is_observation_name(const std::string& name) {
  return name == "observation" || name.rfind("observation.", 0) == 0;
}

// True when the metadata table `json` (policyport.inputs or policyport.outputs: a JSON list of
// {"dtype", "name", "shape"} objects) lists exactly `names`, in this order. The artifact's
// session is what the wrapper runs; this catches a file edited after export.
bool lists_in_order(const std::string& json, const std::vector<TensorInfo>& tensors) {
  std::size_t at = 0;
  for (const TensorInfo& tensor : tensors) {
    at = json.find("\"name\": \"" + tensor.name + "\"", at);
    if (at == std::string::npos) return false;
    ++at;
  }
  std::size_t listed = 0;
  for (std::size_t i = json.find("\"name\""); i != std::string::npos;
       i = json.find("\"name\"", i + 1)) {
    ++listed;
  }
  return listed == tensors.size();
}

std::string names_of(const std::vector<TensorInfo>& tensors) {
  std::string out;
  for (const TensorInfo& tensor : tensors) out += (out.empty() ? "" : ", ") + tensor.name;
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

// A JSON value: enough of JSON to read the metadata this wrapper interprets
// (policyport.noise, policyport.entries). Strings keep \" and \\ escapes only; other
// escapes (none in what policyport writes) are refused.
struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  double number = 0;
  std::string text;
  std::vector<Json> items;                            // arrays
  std::vector<std::pair<std::string, Json>> members;  // objects, in order

  const Json* member(const std::string& key) const {
    for (const auto& [name, value] : members) {
      if (name == key) return &value;
    }
    return nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : text_(text) {}

  // The whole text as one value; false when it is not JSON this parser reads.
  bool parse(Json* out) {
    if (!value(out, 0)) return false;
    skip_space();
    return at_ == text_.size();
  }

 private:
  static constexpr int kMaxDepth = 16;
  const std::string& text_;
  std::size_t at_ = 0;

  void skip_space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool take(char c) {
    skip_space();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  bool word(const char* w) {
    const std::size_t n = std::strlen(w);
    if (text_.compare(at_, n, w) != 0) return false;
    at_ += n;
    return true;
  }
  bool string(std::string* out) {
    if (!take('"')) return false;
    while (at_ < text_.size() && text_[at_] != '"') {
      char c = text_[at_++];
      if (c == '\\') {
        if (at_ >= text_.size() || (text_[at_] != '"' && text_[at_] != '\\')) return false;
        c = text_[at_++];
      }
      out->push_back(c);
    }
    return take('"');
  }
  bool value(Json* out, int depth) {
    if (depth > kMaxDepth) return false;
    skip_space();
    if (at_ >= text_.size()) return false;
    const char c = text_[at_];
    if (c == '"') {
      out->kind = Json::Kind::kString;
      return string(&out->text);
    }
    if (c == '[') {
      ++at_;
      out->kind = Json::Kind::kArray;
      if (take(']')) return true;
      do {
        out->items.emplace_back();
        if (!value(&out->items.back(), depth + 1)) return false;
      } while (take(','));
      return take(']');
    }
    if (c == '{') {
      ++at_;
      out->kind = Json::Kind::kObject;
      if (take('}')) return true;
      do {
        std::string key;
        if (!string(&key) || !take(':')) return false;
        out->members.emplace_back(std::move(key), Json());
        if (!value(&out->members.back().second, depth + 1)) return false;
      } while (take(','));
      return take('}');
    }
    if (word("null")) return true;
    if (word("true")) {
      out->kind = Json::Kind::kBool;
      out->number = 1;
      return true;
    }
    if (word("false")) {
      out->kind = Json::Kind::kBool;
      return true;
    }
    const char* start = text_.c_str() + at_;
    char* end = nullptr;
    out->number = std::strtod(start, &end);
    if (end == start) return false;
    out->kind = Json::Kind::kNumber;
    at_ += static_cast<std::size_t>(end - start);
    return true;
  }
};

// A non-negative integer held exactly by a JSON number.
bool json_count(const Json* value, std::size_t* out) {
  if (value == nullptr || value->kind != Json::Kind::kNumber || value->number < 0 ||
      value->number > 1e12 || value->number != std::floor(value->number)) {
    return false;
  }
  *out = static_cast<std::size_t>(value->number);
  return true;
}

// policyport.noise: [{"offset", "shape", "distribution"}], blocks in order, each starting where
// the one before ends. Returns "" when the list is well formed, else what is wrong.
std::string parse_noise_blocks(const std::string& text, std::vector<NoiseBlock>* blocks) {
  Json json;
  if (!JsonParser(text).parse(&json) || json.kind != Json::Kind::kArray || json.items.empty()) {
    return "is not a non-empty JSON list of blocks";
  }
  std::size_t next = 0;
  for (const Json& item : json.items) {
    NoiseBlock block;
    const Json* shape = item.member("shape");
    const Json* distribution = item.member("distribution");
    if (item.kind != Json::Kind::kObject || !json_count(item.member("offset"), &block.offset) ||
        shape == nullptr || shape->kind != Json::Kind::kArray || distribution == nullptr ||
        distribution->kind != Json::Kind::kString) {
      return "has a block without an integer \"offset\", a \"shape\" list and a "
             "\"distribution\" name";
    }
    block.size = 1;
    for (const Json& dim : shape->items) {
      std::size_t size = 0;
      if (!json_count(&dim, &size) || size == 0) return "has a block whose shape is not sizes";
      block.shape.push_back(static_cast<int64_t>(size));
      block.size *= size;
    }
    block.distribution = distribution->text;
    if (block.offset != next) {
      return "has a block at offset " + std::to_string(block.offset) + " where " +
             std::to_string(next) + " was expected (blocks are concatenated in order)";
    }
    next += block.size;
    blocks->push_back(std::move(block));
  }
  return "";
}

// policyport.entries: {"default": "policy.onnx", "sample": "policy.sample.onnx"}; false when
// it is not an object of strings.
bool parse_entries(const std::string& text, std::map<std::string, std::string>* entries) {
  Json json;
  if (!JsonParser(text).parse(&json) || json.kind != Json::Kind::kObject) return false;
  for (const auto& [name, file] : json.members) {
    if (file.kind != Json::Kind::kString) return false;
    (*entries)[name] = file.text;
  }
  return true;
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

  // Inputs and outputs, in the session's order (the exporter's: observation leaves, then the
  // mask, then the noise; action, then the heads, then sampled_action and log_prob). Only the
  // names the contract fixes are known to the wrapper; the others are read from the file.
  auto info_of = [&](const TensorSpec& spec) {
    TensorInfo tensor;
    tensor.name = spec.name;
    tensor.dtype = type_name(spec.type);
    tensor.shape = row_shape(spec, path);
    tensor.size = element_count(tensor.shape);
    return tensor;
  };
  auto refuse = [&](const std::string& what) {
    throw Error("'" + path + "': " + what + " (" + kDocs +
                "). Re-export the policy with policyport's export-policy.");
  };
  const std::size_t n_inputs = impl_->session.GetInputCount();
  const std::size_t n_outputs = impl_->session.GetOutputCount();
  if (n_inputs > kMaxTensors || n_outputs > kMaxTensors) {
    throw Error("'" + path + "' has " + std::to_string(n_inputs) + " inputs and " +
                std::to_string(n_outputs) + " outputs; policyport.cpp handles up to " +
                std::to_string(kMaxTensors) + " of each (raise kMaxTensors in policyport.cpp).");
  }
  // The noise input, when there is one, is last; the mask comes just before it.
  const bool has_noise =
      n_inputs > 0 && impl_->session.GetInputNameAllocated(n_inputs - 1, allocator).get() ==
                          std::string(kNoiseInput);
  for (std::size_t i = 0; i < n_inputs; ++i) {
    std::string name = impl_->session.GetInputNameAllocated(i, allocator).get();
    const TensorSpec spec = spec_of(name, impl_->session.GetInputTypeInfo(i));
    TensorInfo input = info_of(spec);
    if (name == kMaskInput) {
      if (spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL || input.shape.size() != 1) {
        refuse("action_mask is " + input.dtype + " " + shape_string(spec.shape) +
               ", not the contract's bool [batch, mask_size]");
      }
      if (i + 1 + (has_noise ? 1 : 0) != n_inputs) {
        refuse("action_mask is not the last input (or the last before noise)");
      }
      info_.mask_size = input.size;
    } else if (name == kNoiseInput) {
      if (spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || input.shape.size() != 1) {
        refuse("noise is " + input.dtype + " " + shape_string(spec.shape) +
               ", not the contract's float32 [batch, noise_size]");
      }
      if (i + 1 != n_inputs) refuse("noise is not the last input");
      info_.noise_size = input.size;
    } else if (!is_observation_name(name) || spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
      refuse("input '" + name + "' (" + input.dtype + ") is not one of the contract's: float32 " +
             "'observation' or 'observation.<key>', then bool 'action_mask', then float32 "
             "'noise'");
    } else {
      info_.observation_inputs.push_back(input);
      info_.observation_size += input.size;
    }
    info_.inputs.push_back(input);
  }
  if (info_.observation_inputs.empty()) refuse("the model has no observation input");
  if (info_.observation_inputs.size() == 1) {
    info_.observation_shape = info_.observation_inputs[0].shape;
  }
  bool has_sampled_action = false, has_log_prob = false;
  for (std::size_t i = 0; i < n_outputs; ++i) {
    std::string name = impl_->session.GetOutputNameAllocated(i, allocator).get();
    const TensorSpec spec = spec_of(name, impl_->session.GetOutputTypeInfo(i));
    TensorInfo output = info_of(spec);
    if (i == 0) {
      if (name != kActionOutput || (spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 &&
                                    spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)) {
        refuse("the first output is '" + name + "' (" + output.dtype +
               "), not the contract's 'action' (int64, or float32 for Box)");
      }
      info_.integer_actions = spec.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
      info_.action_shape = output.shape;
      info_.action_size = output.size;
    } else if (name == kSampledActionOutput) {
      const TensorInfo& action = info_.outputs[0];
      if (i + 2 != n_outputs || output.dtype != action.dtype || output.shape != action.shape) {
        refuse("sampled_action is " + output.dtype + " " + shape_string(spec.shape) +
               " at output " + std::to_string(i) + "; the contract's is the second-to-last "
               "output, of the dtype and shape of action");
      }
      has_sampled_action = true;
    } else if (name == kLogProbOutput) {
      if (!has_sampled_action || spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
          !output.shape.empty()) {
        refuse("log_prob is " + output.dtype + " " + shape_string(spec.shape) +
               "; the contract's is float32 [batch], the last output, after sampled_action");
      }
      has_log_prob = true;
    } else if (spec.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
      refuse("output '" + name + "' is " + output.dtype + "; the contract's heads are float32");
    } else {
      info_.heads.push_back(output);
    }
    info_.outputs.push_back(output);
  }
  if (info_.outputs.empty()) refuse("the model has no outputs");
  if (const TensorInfo* value = info_.head(kValueHead); value && !value->shape.empty()) {
    refuse("value has shape [batch, " + std::to_string(value->size) + "], not [batch]");
  }
  if (const TensorInfo* q = info_.head(kQValuesHead); q && q->shape.size() != 1) {
    refuse("q_values has shape " + shape_string(q->shape) + " per row, not [n]");
  }
  // The sampling path: all of it (contract 3: noise in, sampled_action and log_prob out, the
  // noise blocks in the metadata) or none of it (contracts 1 and 2).
  const bool sampling = info_.contract_version >= kSamplingContractVersion;
  if (sampling != has_noise || has_noise != has_sampled_action || has_noise != has_log_prob) {
    refuse("it declares contract version " + version_text + " and has " +
           (has_noise ? "a" : "no") + " 'noise' input, " + (has_sampled_action ? "a" : "no") +
           " 'sampled_action' output and " + (has_log_prob ? "a" : "no") +
           " 'log_prob' output; contract " + std::to_string(kSamplingContractVersion) +
           " (the sample entry) has all three and earlier versions none");
  }
  if (has_noise) {
    const std::string noise_text = find("policyport.noise");
    const std::string problem = parse_noise_blocks(noise_text, &info_.noise_blocks);
    if (!problem.empty()) {
      refuse("its policyport.noise metadata " + problem + " (it holds '" + noise_text + "')");
    }
    const NoiseBlock& last = info_.noise_blocks.back();
    if (last.offset + last.size != info_.noise_size) {
      refuse("its policyport.noise blocks hold " + std::to_string(last.offset + last.size) +
             " values but the noise input holds " + std::to_string(info_.noise_size) + " per row");
    }
  }
  info_.entry = find("policyport.entry");
  const std::string entries_text = find("policyport.entries");
  if (!entries_text.empty() && !parse_entries(entries_text, &info_.entries)) {
    refuse("its policyport.entries metadata is not a JSON object of file names ('" +
           entries_text + "')");
  }
  // The metadata lists the same tensors (every contract version has these keys).
  if (!lists_in_order(find("policyport.inputs"), info_.inputs) ||
      !lists_in_order(find("policyport.outputs"), info_.outputs)) {
    refuse("its inputs (" + names_of(info_.inputs) + ") and outputs (" + names_of(info_.outputs) +
           ") are not the ones its policyport.inputs / policyport.outputs metadata lists: the "
           "file was changed after export");
  }
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
                         float* sampled_continuous, float* log_probs) const {
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
    for (const TensorInfo& input : info_.observation_inputs) {
      inputs[n_in] = Ort::Value::CreateTensor<float>(
          memory, const_cast<float*>(observations[n_in]), batch * input.size, shape_of(input),
          input.shape.size() + 1);
      ++n_in;
    }
    if (info_.has_mask()) {
      const TensorInfo& mask = info_.inputs[n_in];
      inputs[n_in++] = Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(masks),
                                                batch * mask.size, shape_of(mask),
                                                mask.shape.size() + 1,
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

void Policy::run_into(const float* const* observations, const uint8_t* masks, std::size_t batch,
                      int64_t* discrete_actions, float* continuous_actions,
                      float* const* heads) const {
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
