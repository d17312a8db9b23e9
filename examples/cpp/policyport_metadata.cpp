// policyport_metadata.cpp: reading and checking an artifact's metadata (see policyport.hpp).
// No ONNX Runtime here: Policy calls these after loading the model, and the fuzzer
// (fuzz_metadata.cpp) calls the very same functions on mutated bytes. The rules and limits
// are docs/artifact.md's "Limits"; examples/web/lib/artifact.mjs applies the same ones.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "policyport.hpp"

namespace policyport {

std::string excerpt(const std::string& text);  // defined with quote(), at the end

namespace {

constexpr const char* kDocs = "docs/artifact.md";
constexpr const char* kReexport = "Re-export the policy with policyport's export-policy.";
const std::string kPrefix = "policyport.";

// ---- Messages ------------------------------------------------------------------------------

[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw Error("'" + path + "': " + what + " (" + kDocs + "). " + kReexport);
}

// ---- Protobuf: just enough to walk a message's fields ----------------------------------------

// The bytes of a message: a file (skipped over by seeking) or a string.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t remaining() const = 0;
  virtual unsigned char byte() = 0;  // only when remaining() > 0
  virtual void skip(uint64_t n) = 0;
  virtual std::string take(uint64_t n) = 0;
};

class StreamSource : public Source {
 public:
  explicit StreamSource(std::istream& in) : in_(in) {
    const std::streampos start = in_.tellg();
    in_.seekg(0, std::ios::end);
    const std::streampos end = in_.tellg();
    in_.seekg(start);
    if (!in_ || start < 0 || end < start) throw Error("cannot read the model file's bytes");
    left_ = static_cast<uint64_t>(end - start);
  }
  uint64_t remaining() const override { return left_; }
  unsigned char byte() override {
    --left_;
    return static_cast<unsigned char>(in_.get());
  }
  void skip(uint64_t n) override {
    in_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
    left_ -= n;
  }
  std::string take(uint64_t n) override {
    std::string out(static_cast<std::size_t>(n), '\0');
    in_.read(out.data(), static_cast<std::streamsize>(n));
    left_ -= n;
    if (!in_) throw Error("cannot read the model file's bytes");
    return out;
  }

 private:
  std::istream& in_;
  uint64_t left_ = 0;
};

class StringSource : public Source {
 public:
  explicit StringSource(const std::string& bytes) : bytes_(bytes) {}
  uint64_t remaining() const override { return bytes_.size() - at_; }
  unsigned char byte() override { return static_cast<unsigned char>(bytes_[at_++]); }
  void skip(uint64_t n) override { at_ += static_cast<std::size_t>(n); }
  std::string take(uint64_t n) override {
    std::string out = bytes_.substr(at_, static_cast<std::size_t>(n));
    at_ += static_cast<std::size_t>(n);
    return out;
  }

 private:
  const std::string& bytes_;
  std::size_t at_ = 0;
};

[[noreturn]] void malformed(const char* what) {
  throw Error(std::string("the model is not a well-formed ONNX protobuf: ") + what);
}

// A varint of at most 10 bytes whose value fits 53 bits (what JavaScript reads exactly).
uint64_t varint(Source& in) {
  uint64_t value = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (in.remaining() == 0) malformed("a varint is cut short");
    const unsigned char b = in.byte();
    if (shift == 49 && (b & 0x7f) > 0xf) malformed("a varint exceeds 2^53");
    value |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (b < 0x80) return value;
  }
  malformed("a varint is longer than 10 bytes");
}

// Calls on_bytes(field, source, length) for each length-delimited field (which must consume
// exactly `length` bytes), skips the others.
template <class OnBytes>
void walk_fields(Source& in, OnBytes on_bytes) {
  while (in.remaining() > 0) {
    const uint64_t tag = varint(in);
    if (tag >= (uint64_t{1} << 32)) malformed("a field number exceeds 2^29");
    const uint64_t field = tag >> 3;
    const uint64_t wire = tag & 7;
    uint64_t length = 0;
    if (wire == 0) {
      varint(in);
      continue;
    }
    if (wire == 1 || wire == 5) {
      length = wire == 1 ? 8 : 4;
      if (length > in.remaining()) malformed("a fixed-size field is cut short");
      in.skip(length);
      continue;
    }
    if (wire != 2) malformed("a field has a wire type other than 0, 1, 2 and 5");
    length = varint(in);
    if (length > in.remaining()) malformed("a field is longer than what holds it");
    on_bytes(field, in, length);
  }
}

// ---- Text ----------------------------------------------------------------------------------

// Well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF), as
// JavaScript's TextDecoder("utf-8", {fatal: true}) accepts it.
bool is_utf8(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::size_t extra = 0;
    uint32_t point = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1, point = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2, point = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3, point = c & 0x07;
    } else {
      return false;
    }
    if (extra > text.size() - i - 1) return false;  // cut short
    for (std::size_t k = 1; k <= extra; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      point = point << 6 | (next & 0x3f);
    }
    const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (point < least[extra] || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// ---- JSON ----------------------------------------------------------------------------------

// A JSON value (RFC 8259), read strictly, as JavaScript's JSON.parse reads it; objects keep
// their members in order and a member named twice is refused (JSON.parse would keep the last,
// a hand-written reader may keep the first: the contract relies on neither).
struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* member(const std::string& key) const {
    for (const auto& [name, value] : members) {
      if (name == key) return &value;
    }
    return nullptr;
  }
  bool is(Kind k) const { return kind == k; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : text_(text) {}

  // The whole text as one value; "" when it is JSON, else what is wrong.
  std::string parse(Json* out) {
    if (!value(out, 1)) return problem_.empty() ? "is not JSON" : problem_;
    skip_space();
    if (at_ != text_.size()) return "is not JSON (text after the value)";
    return "";
  }

 private:
  const std::string& text_;
  std::size_t at_ = 0;
  std::string problem_;

  bool fail(const std::string& why) {
    if (problem_.empty()) problem_ = why;
    return false;
  }
  bool more() const { return at_ < text_.size(); }
  char peek() const { return text_[at_]; }
  void skip_space() {
    while (more() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++at_;
  }
  bool take(char c) {
    skip_space();
    if (more() && peek() == c) {
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
  static void append_utf8(uint32_t point, std::string* out) {
    // A lone surrogate (JSON allows "\ud800") is kept as its 3-byte form: it names nothing
    // a model has, so any comparison with it fails, as in JavaScript.
    if (point < 0x80) {
      out->push_back(static_cast<char>(point));
    } else if (point < 0x800) {
      out->push_back(static_cast<char>(0xc0 | point >> 6));
      out->push_back(static_cast<char>(0x80 | (point & 0x3f)));
    } else if (point < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | point >> 12));
      out->push_back(static_cast<char>(0x80 | (point >> 6 & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (point & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | point >> 18));
      out->push_back(static_cast<char>(0x80 | (point >> 12 & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (point >> 6 & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (point & 0x3f)));
    }
  }
  bool hex4(uint32_t* out) {
    if (text_.size() - at_ < 4) return false;
    *out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[at_++];
      const int digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
      if (digit < 0) return false;
      *out = *out << 4 | static_cast<uint32_t>(digit);
    }
    return true;
  }
  bool escape(std::string* out) {
    if (!more()) return false;
    const char c = text_[at_++];
    const char* from = "\"\\/bfnrt";
    const char* to = "\"\\/\b\f\n\r\t";
    if (const char* at = c ? std::strchr(from, c) : nullptr) {
      out->push_back(to[at - from]);
      return true;
    }
    uint32_t point = 0;
    if (c != 'u' || !hex4(&point)) return false;
    if (point >= 0xd800 && point <= 0xdbff && text_.compare(at_, 2, "\\u") == 0) {
      const std::size_t before = at_;
      at_ += 2;
      uint32_t low = 0;
      if (hex4(&low) && low >= 0xdc00 && low <= 0xdfff) {
        point = 0x10000 + ((point - 0xd800) << 10) + (low - 0xdc00);
      } else {
        at_ = before;  // not a pair: the high surrogate stands alone
      }
    }
    append_utf8(point, out);
    return true;
  }
  bool string(std::string* out) {
    if (!take('"')) return false;
    while (more() && peek() != '"') {
      const char c = text_[at_++];
      if (static_cast<unsigned char>(c) < 0x20) return fail("is not JSON (a control character in a string)");
      if (c != '\\') {
        out->push_back(c);
      } else if (!escape(out)) {
        return fail("is not JSON (a bad escape in a string)");
      }
    }
    if (!more()) return fail("is not JSON (a string is not closed)");
    ++at_;
    return true;
  }
  // The JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number(double* out) {
    const std::size_t start = at_;
    auto digits = [&] {
      const std::size_t from = at_;
      while (more() && peek() >= '0' && peek() <= '9') ++at_;
      return at_ > from;
    };
    if (more() && peek() == '-') ++at_;
    if (more() && peek() == '0') {
      ++at_;
    } else if (!digits()) {
      return false;
    }
    if (more() && peek() == '.' && (++at_, !digits())) return false;
    if (more() && (peek() == 'e' || peek() == 'E')) {
      ++at_;
      if (more() && (peek() == '+' || peek() == '-')) ++at_;
      if (!digits()) return false;
    }
    // strtod reads exactly this grammar's text here, rounding as JavaScript does.
    *out = std::strtod(text_.substr(start, at_ - start).c_str(), nullptr);
    return true;
  }
  bool value(Json* out, std::size_t depth) {
    skip_space();
    if (!more()) return false;
    const char c = peek();
    if (c == '[' || c == '{') {
      if (depth > limits::kMaxJsonDepth) {
        return fail("nests lists and objects more than " +
                    std::to_string(limits::kMaxJsonDepth) + " deep");
      }
      ++at_;
      return c == '[' ? array(out, depth) : object(out, depth);
    }
    if (c == '"') {
      out->kind = Json::Kind::kString;
      return string(&out->text);
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
    out->kind = Json::Kind::kNumber;
    return number(&out->number);
  }
  bool array(Json* out, std::size_t depth) {
    out->kind = Json::Kind::kArray;
    if (take(']')) return true;
    do {
      out->items.emplace_back();
      if (!value(&out->items.back(), depth + 1)) return false;
    } while (take(','));
    return take(']');
  }
  bool object(Json* out, std::size_t depth) {
    out->kind = Json::Kind::kObject;
    if (take('}')) return true;
    std::set<std::string> seen;
    do {
      std::string key;
      skip_space();
      if (!string(&key) || !take(':')) return false;
      if (!seen.insert(key).second) return fail("names the member " + quote(key) + " twice");
      out->members.emplace_back(std::move(key), Json());
      if (!value(&out->members.back().second, depth + 1)) return false;
    } while (take(','));
    return take('}');
  }
};

// ---- The contract --------------------------------------------------------------------------

// The values of the keys this wrapper reads, each checked once: length, UTF-8, no NUL.
class Values {
 public:
  Values(const Metadata& metadata, const std::string& path) : metadata_(metadata), path_(path) {}

  // The value of policyport.<key>, or nullptr when the file has none.
  const std::string* find(const std::string& key) const {
    const auto it = metadata_.find(kPrefix + key);
    if (it == metadata_.end()) return nullptr;
    const std::string& value = it->second;
    if (value.size() > limits::kMaxValueBytes) {
      refuse(path_, "its " + kPrefix + key + " metadata holds " + std::to_string(value.size()) +
                        " bytes, more than the " + std::to_string(limits::kMaxValueBytes) +
                        " a value may hold");
    }
    if (!is_utf8(value) || value.find('\0') != std::string::npos) {
      refuse(path_, "its " + kPrefix + key + " metadata " + quote(value) +
                        " is not UTF-8 text without NUL characters");
    }
    return &value;
  }
  std::string text(const std::string& key) const {
    const std::string* value = find(key);
    return value ? *value : std::string();
  }
  // policyport.<key> as JSON; refused when it is missing and `required`, or not JSON.
  bool json(const std::string& key, Json* out, bool required = true) const {
    const std::string* value = find(key);
    if (value == nullptr) {
      if (required) refuse(path_, "it has no " + kPrefix + key + " metadata");
      return false;
    }
    const std::string problem = JsonParser(*value).parse(out);
    if (!problem.empty()) refuse(path_, "its " + kPrefix + key + " metadata " + problem + ": " + quote(*value));
    return true;
  }

 private:
  const Metadata& metadata_;
  const std::string& path_;
};

// A non-negative integer held exactly by a JSON number, at most `most`.
bool json_integer(const Json* value, std::size_t most, std::size_t* out) {
  if (value == nullptr || !value->is(Json::Kind::kNumber) || !(value->number >= 0) ||
      value->number > static_cast<double>(most) || value->number != std::floor(value->number)) {
    return false;
  }
  *out = static_cast<std::size_t>(value->number);
  return true;
}

// A row shape: `dims` (JSON numbers), each in [1, kMaxRowElements], at most `max_rank` of
// them, their product at most kMaxRowElements. Returns "" or what is wrong.
std::string row_shape(const std::vector<Json>& dims, std::size_t max_rank,
                      std::vector<int64_t>* shape, std::size_t* size) {
  if (dims.size() > max_rank) {
    return "has " + std::to_string(dims.size()) + " dimensions, more than the " +
           std::to_string(max_rank) + " allowed";
  }
  *size = 1;
  for (const Json& dim : dims) {
    std::size_t d = 0;
    if (!json_integer(&dim, limits::kMaxRowElements, &d) || d == 0) {
      return "has a dimension that is not an integer from 1 to " +
             std::to_string(limits::kMaxRowElements);
    }
    // Both factors are at most 2^24: the product cannot overflow before it is compared.
    *size *= d;
    if (*size > limits::kMaxRowElements) {
      return "has more than " + std::to_string(limits::kMaxRowElements) + " elements per row";
    }
    shape->push_back(static_cast<int64_t>(d));
  }
  return "";
}

bool is_observation_dtype(const std::string& text) {
  return text == "float32" || text == "uint8" || text == "int8" || text == "uint16" ||
         text == "int16" || text == "int32";
}

bool is_dtype(const std::string& text) {
  return text == "int64" || text == "bool" || is_observation_dtype(text);
}

// policyport.inputs / policyport.outputs: [{"name", "dtype", "shape": ["batch", ...]}].
std::vector<TensorInfo> tensor_table(const Values& values, const std::string& key,
                                     const std::string& path) {
  Json json;
  values.json(key, &json);
  const std::string where = "its " + kPrefix + key + " metadata";
  if (!json.is(Json::Kind::kArray) || json.items.empty() ||
      json.items.size() > limits::kMaxTensors) {
    refuse(path, where + " is not a list of 1 to " + std::to_string(limits::kMaxTensors) +
                     " tensors");
  }
  std::vector<TensorInfo> tensors;
  for (const Json& item : json.items) {
    const Json* name = item.member("name");
    const Json* dtype = item.member("dtype");
    const Json* shape = item.member("shape");
    if (!item.is(Json::Kind::kObject) || !name || !name->is(Json::Kind::kString) ||
        name->text.empty() || name->text.size() > limits::kMaxNameBytes || !dtype ||
        !dtype->is(Json::Kind::kString) || !is_dtype(dtype->text) || !shape ||
        !shape->is(Json::Kind::kArray) || shape->items.empty() ||
        !shape->items[0].is(Json::Kind::kString) || shape->items[0].text != "batch") {
      refuse(path, where + " lists a tensor that is not {\"name\" (1 to " +
                       std::to_string(limits::kMaxNameBytes) +
                       " bytes), \"dtype\": float32|int64|bool|uint8|int8|uint16|int16|int32, "
                       "\"shape\": [\"batch\", ...]}");
    }
    TensorInfo tensor;
    tensor.name = name->text;
    tensor.dtype = dtype->text;
    const std::vector<Json> dims(shape->items.begin() + 1, shape->items.end());
    const std::string problem = row_shape(dims, limits::kMaxRank - 1, &tensor.shape, &tensor.size);
    if (!problem.empty()) refuse(path, where + ": " + quote(tensor.name) + " " + problem);
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[batch";
  for (int64_t d : shape) out += ", " + std::to_string(d);
  return out + "]";
}

bool is_observation_name(const std::string& name) {
  return name == "observation" || name.rfind("observation.", 0) == 0;
}

// `name` is `base` or `base.<path>` (a leaf of a pytree input or output).
bool is_leaf_of(const std::string& name, const std::string& base) {
  return name == base || name.rfind(base + ".", 0) == 0;
}

// The inputs' roles: observation leaves (float32), then bool action_mask [batch, n], then
// float32 noise [batch, n] (a sample entry). Fills the ModelInfo fields they determine.
void assign_inputs(ModelInfo* info) {
  const std::vector<TensorInfo>& inputs = info->inputs;
  const bool has_noise = inputs.back().name == kNoiseInput;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& input = inputs[i];
    const std::string what = quote(input.name) + " (" + input.dtype + " " + shape_text(input.shape) + ")";
    if (input.name == kMaskInput) {
      bool then_state = true;  // only the state leaves, reset and noise may follow the mask
      for (std::size_t j = i + 1; j < inputs.size(); ++j) {
        const std::string& name = inputs[j].name;
        then_state = then_state && (is_leaf_of(name, kStateInput) || name == kResetInput ||
                                    name == kNoiseInput);
      }
      if (input.dtype != "bool" || input.shape.size() != 1 || !then_state) {
        refuse(info->path, "input " + what + " is not the contract's bool [batch, mask_size], "
                           "the last input (or the last before the state, reset and noise)");
      }
      info->mask_size = input.size;
    } else if (is_leaf_of(input.name, kStateInput)) {
      const std::string next = i + 1 < inputs.size() ? inputs[i + 1].name : "";
      if (input.dtype != "float32" || !(is_leaf_of(next, kStateInput) || next == kResetInput)) {
        refuse(info->path, "input " + what + " is not a contract state leaf: float32, after the "
                           "observation and the mask, before 'reset'");
      }
      info->state_inputs.push_back(input);
    } else if (input.name == kResetInput) {
      if (input.dtype != "bool" || !input.shape.empty() || info->state_inputs.empty() ||
          i + 1 + (has_noise ? 1 : 0) != inputs.size()) {
        refuse(info->path, "input " + what + " is not the contract's bool [batch] 'reset', after "
                           "the state leaves (the last input, or the last before noise)");
      }
    } else if (input.name == kNoiseInput) {
      if (input.dtype != "float32" || input.shape.size() != 1 || i + 1 != inputs.size()) {
        refuse(info->path, "input " + what + " is not the contract's float32 [batch, noise_size], "
                           "the last input");
      }
      info->noise_size = input.size;
    } else if (!is_observation_name(input.name) || !is_observation_dtype(input.dtype)) {
      refuse(info->path, "input " + what + " is not one of the contract's: float32 (or integer) "
                         "'observation' or 'observation.<key>', then bool 'action_mask', then "
                         "float32 'noise'");
    } else {
      info->observation_inputs.push_back(input);
      info->observation_size += input.size;
      if (info->observation_size > limits::kMaxRowElements) {
        refuse(info->path, "its observation inputs hold more than " +
                               std::to_string(limits::kMaxRowElements) + " values per row");
      }
    }
  }
  if (info->observation_inputs.empty()) refuse(info->path, "the model has no observation input");
  if (info->observation_inputs.size() == 1) {
    info->observation_shape = info->observation_inputs[0].shape;
  }
}

// The outputs' roles: action (int64, or float32 for Box), float32 heads, then (a sample
// entry) sampled_action as action and float32 log_prob [batch]. Returns whether the sampled
// outputs are there.
bool assign_outputs(ModelInfo* info) {
  const std::vector<TensorInfo>& outputs = info->outputs;
  const TensorInfo& action = outputs[0];
  if (action.name != kActionOutput || (action.dtype != "int64" && action.dtype != "float32")) {
    refuse(info->path, "the first output is " + quote(action.name) + " (" + action.dtype +
                           "), not the contract's 'action' (int64, or float32 for Box)");
  }
  info->integer_actions = action.dtype == "int64";
  info->action_shape = action.shape;
  info->action_size = action.size;
  bool sampled = false, log_prob = false;
  for (std::size_t i = 1; i < outputs.size(); ++i) {
    const TensorInfo& output = outputs[i];
    if (is_leaf_of(output.name, kNextStateOutput)) {
      if (output.dtype != "float32" || sampled) {
        refuse(info->path, "output " + quote(output.name) + " (" + output.dtype +
                               ") is not a contract next_state leaf: float32, after the heads");
      }
      info->state_outputs.push_back(output);
    } else if (output.name == kSampledActionOutput) {
      if (i + 2 != outputs.size() || output.dtype != action.dtype || output.shape != action.shape) {
        refuse(info->path, "sampled_action is " + output.dtype + " " + shape_text(output.shape) +
                               " at output " + std::to_string(i) +
                               "; the contract's is the second-to-last output, of the dtype "
                               "and shape of action");
      }
      sampled = true;
    } else if (output.name == kLogProbOutput) {
      if (!sampled || output.dtype != "float32" || !output.shape.empty()) {
        refuse(info->path, "log_prob is " + output.dtype + " " + shape_text(output.shape) +
                               "; the contract's is float32 [batch], the last output, after "
                               "sampled_action");
      }
      log_prob = true;
    } else if (output.dtype != "float32" || sampled || !info->state_outputs.empty()) {
      refuse(info->path, "output " + quote(output.name) + " (" + output.dtype +
                             ") is not a head; the contract's heads are float32, after action");
    } else if ((output.name == kValueHead && !output.shape.empty()) ||
               (output.name == kQValuesHead && output.shape.size() != 1)) {
      refuse(info->path, output.name + " has shape " + shape_text(output.shape) +
                             ", not the contract's (value [batch], q_values [batch, n])");
    } else {
      info->heads.push_back(output);
    }
  }
  if (sampled != log_prob) refuse(info->path, "it has sampled_action without log_prob");
  return sampled;
}

// policyport.state: {"leaves": [{"input", "output", "shape", ...}], "reset": "reset", ...}, one
// leaf per state input in order, naming it and its next_state output, of its shape (the
// JavaScript reader's stateLayout applies the same rule).
void assign_state(const Values& values, ModelInfo* info) {
  Json json;
  values.json("state", &json);
  const Json* leaves = json.member("leaves");
  const Json* reset = json.member("reset");
  if (!json.is(Json::Kind::kObject) || !leaves || !leaves->is(Json::Kind::kArray) ||
      leaves->items.size() != info->state_inputs.size() || !reset ||
      !reset->is(Json::Kind::kString) || reset->text != kResetInput) {
    refuse(info->path, "its policyport.state metadata does not list the " +
                           std::to_string(info->state_inputs.size()) +
                           " state leaves and 'reset' its inputs have");
  }
  for (std::size_t i = 0; i < leaves->items.size(); ++i) {
    const Json& leaf = leaves->items[i];
    const TensorInfo& input = info->state_inputs[i];
    const TensorInfo& output = info->state_outputs[i];
    const Json* in = leaf.member("input");
    const Json* out = leaf.member("output");
    const Json* shape = leaf.member("shape");
    std::vector<int64_t> dims;
    std::size_t size = 0;
    const bool same = leaf.is(Json::Kind::kObject) && in && in->is(Json::Kind::kString) &&
                      in->text == input.name && out && out->is(Json::Kind::kString) &&
                      out->text == output.name && shape && shape->is(Json::Kind::kArray) &&
                      row_shape(shape->items, limits::kMaxRank - 1, &dims, &size).empty() &&
                      dims == input.shape;
    if (!same) {
      refuse(info->path, "state leaf " + std::to_string(i) + ": input " + quote(input.name) +
                             ", output " + quote(output.name) +
                             " and policyport.state do not agree");
    }
  }
}

// policyport.noise: [{"offset", "shape", "distribution"}], blocks in order, each starting where
// the one before ends, together exactly the noise input.
void assign_noise(const Values& values, ModelInfo* info) {
  Json json;
  values.json("noise", &json);
  const std::string where = "its policyport.noise metadata";
  if (!json.is(Json::Kind::kArray) || json.items.empty() ||
      json.items.size() > limits::kMaxNoiseBlocks) {
    refuse(info->path, where + " is not a list of 1 to " +
                           std::to_string(limits::kMaxNoiseBlocks) + " blocks");
  }
  std::size_t next = 0;  // at most kMaxRowElements: the sum below cannot overflow
  for (const Json& item : json.items) {
    NoiseBlock block;
    const Json* shape = item.member("shape");
    const Json* distribution = item.member("distribution");
    if (!item.is(Json::Kind::kObject) ||
        !json_integer(item.member("offset"), limits::kMaxRowElements, &block.offset) || !shape ||
        !shape->is(Json::Kind::kArray) || !distribution ||
        !distribution->is(Json::Kind::kString) ||
        distribution->text.size() > limits::kMaxNameBytes) {
      refuse(info->path, where + " has a block without an integer \"offset\", a \"shape\" list "
                                 "and a \"distribution\" name");
    }
    if (block.offset != next) {
      refuse(info->path, where + " has a block at offset " + std::to_string(block.offset) +
                             " where " + std::to_string(next) +
                             " was expected (blocks are concatenated in order)");
    }
    const std::string problem = row_shape(shape->items, limits::kMaxRank - 1, &block.shape, &block.size);
    if (!problem.empty()) refuse(info->path, where + ": the block at offset " + std::to_string(next) + " " + problem);
    next += block.size;
    if (next > info->noise_size) {
      refuse(info->path, "its policyport.noise blocks hold more than the " +
                             std::to_string(info->noise_size) +
                             " values per row the noise input holds");
    }
    block.distribution = distribution->text;
    info->noise_blocks.push_back(std::move(block));
  }
  if (next != info->noise_size) {
    refuse(info->path, "its policyport.noise blocks hold " + std::to_string(next) +
                           " values but the noise input holds " +
                           std::to_string(info->noise_size) + " per row");
  }
}

// A file in the artifact's own folder: a plain name, never a path, URL or query.
bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name.size() > limits::kMaxFileNameBytes || name == "." || name == "..") {
    return false;
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || std::strchr("/\\:?#%", c)) {
      return false;
    }
  }
  return true;
}

// policyport.entries: {"default": "policy.onnx", "sample": "policy.sample.onnx"}.
void assign_entries(const Values& values, ModelInfo* info) {
  info->entry = values.text("entry");
  if (values.find("entry") && info->entry != "default" && info->entry != "sample") {
    refuse(info->path, "its policyport.entry metadata " + quote(info->entry) +
                           " is neither \"default\" nor \"sample\"");
  }
  Json json;
  if (!values.json("entries", &json, false)) return;
  if (!json.is(Json::Kind::kObject)) {
    refuse(info->path, "its policyport.entries metadata is not a JSON object of file names");
  }
  for (const auto& [entry, file] : json.members) {
    if (!file.is(Json::Kind::kString) || !is_plain_file_name(file.text)) {
      refuse(info->path, "its policyport.entries metadata names " +
                             (file.is(Json::Kind::kString) ? quote(file.text) : "a non-string") +
                             " for " + quote(entry) + ", not a file name in the artifact's "
                             "folder (1 to " + std::to_string(limits::kMaxFileNameBytes) +
                             " bytes, none of / \\ : ? # %, not . or ..)");
    }
    info->entries[entry] = file.text;
  }
}

// A version for a message: as written when it looks like one ("99", "1.0"), else quoted.
std::string version_text(const std::string& text) {
  const bool plain = !text.empty() && text.size() <= 20 &&
                     text.find_first_not_of("0123456789.") == std::string::npos;
  return plain ? text : quote(text);
}

// The contract version exactly: one digit, 1 to 5 ("03", "3.0", " 3" are not versions).
void assign_version(const Values& values, ModelInfo* info) {
  const std::string* text = values.find("contract_version");
  info->producer_version = values.text("policyport_version");
  if (text == nullptr) {
    throw ContractVersionError(
        "'" + info->path + "' has no 'policyport.contract_version' metadata: it is not a "
        "policyport artifact. Export the policy with policyport's export-policy (--format onnx "
        "or ort).");
  }
  const bool digits = text->size() == 1 && (*text)[0] >= '0' && (*text)[0] <= '9';
  info->contract_version = digits ? (*text)[0] - '0' : 0;
  if (!digits || !is_supported_contract_version(info->contract_version)) {
    throw ContractVersionError(
        "'" + info->path + "' uses policyport artifact contract version " +
        version_text(*text) + " (written by policyport " +
        (info->producer_version.empty() ? std::string("of unknown version")
                                        : excerpt(info->producer_version)) +
        "), but this policyport.hpp/.cpp understands versions " +
        std::to_string(kMinContractVersion) + " to " + std::to_string(kMaxContractVersion) +
        ". Copy policyport.hpp/.cpp from the policyport release that wrote the file, or "
        "re-export the policy with a policyport whose artifacts declare versions " +
        std::to_string(kMinContractVersion) + " to " + std::to_string(kMaxContractVersion) +
        " (see " + kDocs + ", \"Versions\").");
  }
}

// The spaces are JSON objects; the action space's "type" is kept for messages.
void assign_spaces(const Values& values, ModelInfo* info) {
  for (const char* key : {"observation_space", "action_space"}) {
    Json json;
    values.json(key, &json);
    if (!json.is(Json::Kind::kObject)) {
      refuse(info->path, std::string("its policyport.") + key + " metadata is not a JSON object");
    }
    const Json* type = json.member("type");
    if (std::strcmp(key, "action_space") == 0 && type && type->is(Json::Kind::kString)) {
      info->action_space_type = type->text.substr(0, limits::kMaxNameBytes);
    }
  }
}

}  // namespace

// `text` cut to limits::kMaxQuotedBytes, control bytes escaped: safe to print.
std::string excerpt(const std::string& text) {
  std::string out;
  const std::size_t shown = std::min(text.size(), limits::kMaxQuotedBytes);
  for (std::size_t i = 0; i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      const char* hex = "0123456789abcdef";
      out += c == '\\' ? std::string("\\\\") : std::string("\\x") + hex[c >> 4] + hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < text.size()) out += "...";
  return out;
}

std::string quote(const std::string& text) {
  std::string out = "'" + excerpt(text) + "'";
  if (text.size() > limits::kMaxQuotedBytes) {
    out += " (" + std::to_string(text.size()) + " bytes in all)";
  }
  return out;
}

void check_keys(const std::vector<std::string>& keys, const std::string& path) {
  if (keys.size() > limits::kMaxMetadataKeys) {
    throw Error("'" + path + "' has " + std::to_string(keys.size()) + " metadata keys, more than "
                "the " + std::to_string(limits::kMaxMetadataKeys) + " a policyport artifact may "
                "have (" + kDocs + ", \"Limits\"). " + kReexport);
  }
  std::set<std::string> seen;
  for (const std::string& key : keys) {
    if (key.size() > limits::kMaxKeyBytes || !is_utf8(key) || key.find('\0') != std::string::npos) {
      throw Error("'" + path + "' has the metadata key " + quote(key) + ", not UTF-8 text of at "
                  "most " + std::to_string(limits::kMaxKeyBytes) + " bytes without NUL (" + kDocs +
                  ", \"Limits\"). " + kReexport);
    }
    if (!seen.insert(key).second) {
      throw Error("'" + path + "' has the metadata key " + quote(key) + " twice (" + kDocs +
                  ", \"Limits\"). " + kReexport);
    }
  }
}

Metadata read_onnx_metadata(std::istream& file, const std::string& path) {
  // ModelProto field 14: repeated StringStringEntryProto metadata_props (key 1, value 2).
  constexpr uint64_t kMetadataProps = 14;
  StreamSource source(file);
  std::vector<std::pair<std::string, std::string>> entries;
  walk_fields(source, [&](uint64_t field, Source& in, uint64_t length) {
    if (field != kMetadataProps) return in.skip(length);
    if (entries.size() == limits::kMaxMetadataKeys) {
      throw Error("'" + path + "' has more than " + std::to_string(limits::kMaxMetadataKeys) +
                  " metadata keys, the most a policyport artifact may have (" + kDocs +
                  ", \"Limits\"). " + kReexport);
    }
    const std::string bytes = in.take(length);
    StringSource entry(bytes);
    std::pair<std::string, std::string> kv;
    walk_fields(entry, [&](uint64_t f, Source& e, uint64_t n) {
      if (f == 1) kv.first = e.take(n);
      else if (f == 2) kv.second = e.take(n);
      else e.skip(n);
    });
    entries.push_back(std::move(kv));
  });
  std::vector<std::string> keys;
  for (const auto& kv : entries) keys.push_back(kv.first);
  check_keys(keys, path);
  return Metadata(entries.begin(), entries.end());
}

const std::vector<std::string>& read_keys() {
  static const std::vector<std::string> keys = {
      "policyport.contract_version", "policyport.policyport_version", "policyport.format",
      "policyport.policy_class",     "policyport.observation_space",  "policyport.action_space",
      "policyport.inputs",           "policyport.outputs",            "policyport.noise",
      "policyport.entry",            "policyport.entries",            "policyport.weights_sha256",
      "policyport.state"};
  return keys;
}

ModelInfo describe_artifact(const Metadata& metadata, const std::string& path) {
  ModelInfo info;
  info.path = path;
  info.metadata = metadata;
  const Values values(metadata, path);
  // Every value read is checked (length, UTF-8, NUL) before any is interpreted, as the
  // JavaScript reader does when it decodes them.
  for (const std::string& key : read_keys()) values.find(key.substr(kPrefix.size()));
  // The contract version first: if it is unknown, nothing else about the file can be trusted.
  assign_version(values, &info);
  info.format = values.text("format");
  assign_spaces(values, &info);
  info.inputs = tensor_table(values, "inputs", path);
  info.outputs = tensor_table(values, "outputs", path);
  assign_inputs(&info);
  const bool has_sampled = assign_outputs(&info);
  // The sampling path: all of it (contract 3: noise in, sampled_action and log_prob out, the
  // noise blocks in the metadata) or none of it (contracts 1 and 2).
  const bool has_noise = info.noise_size > 0;
  // Integer observation inputs: exactly the artifacts that declare contract 5.
  bool typed = false;
  for (const TensorInfo& input : info.observation_inputs) typed |= input.dtype != "float32";
  if (typed != (info.contract_version == kTypedObservationContractVersion)) {
    refuse(path, "it declares contract version " + std::to_string(info.contract_version) +
                     " and has " + (typed ? "an" : "no") + " integer observation input; contract " +
                     std::to_string(kTypedObservationContractVersion) +
                     " has one and earlier versions none");
  }
  // A recurrent policy (contract 4, or 5 with frames): one next_state output per state
  // input, in order, of its shape; a recurrent sample entry declares 4 (or 5) too.
  const bool recurrent = info.contract_version == kRecurrentContractVersion ||
                         (typed && info.is_recurrent());
  if (recurrent != info.is_recurrent() ||
      info.state_inputs.size() != info.state_outputs.size()) {
    refuse(path, "it declares contract version " + std::to_string(info.contract_version) +
                     " with " + std::to_string(info.state_inputs.size()) + " state inputs and " +
                     std::to_string(info.state_outputs.size()) + " next_state outputs; contract " +
                     std::to_string(kRecurrentContractVersion) +
                     " (recurrent) has one of each per state leaf, earlier versions none");
  }
  for (std::size_t i = 0; i < info.state_inputs.size(); ++i) {
    const TensorInfo& in = info.state_inputs[i];
    const TensorInfo& out = info.state_outputs[i];
    if (out.name != kNextStateOutput + in.name.substr(std::string(kStateInput).size()) ||
        out.shape != in.shape) {
      refuse(path, "state leaf " + std::to_string(i) + ": input " + quote(in.name) +
                       " and output " + quote(out.name) + " are not a pair of one shape");
    }
  }
  if (recurrent) assign_state(values, &info);
  const bool sampling = info.contract_version == kSamplingContractVersion ||
                        ((recurrent || typed) && has_noise);
  if (sampling != has_noise || has_noise != has_sampled) {
    refuse(path, "it declares contract version " + std::to_string(info.contract_version) +
                     " and has " + (has_noise ? "a" : "no") + " 'noise' input, " +
                     (has_sampled ? "a" : "no") + " 'sampled_action' output and " +
                     (has_sampled ? "a" : "no") + " 'log_prob' output; contract " +
                     std::to_string(kSamplingContractVersion) +
                     " (the sample entry) has all three and earlier versions none");
  }
  if (has_noise) assign_noise(values, &info);
  assign_entries(values, &info);
  return info;
}

}  // namespace policyport
