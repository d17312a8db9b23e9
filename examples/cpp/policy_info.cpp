// policy_info MODEL [OBSERVATION...]
//
// Prints what a policyport artifact (.onnx or .ort) takes and returns, read from the file
// itself, as one JSON object: the contract version, every input and output (name, dtype,
// per-row shape), the observation size (the observation inputs' values concatenated in input
// order), the mask size (0 without a mask), the heads, and the entry point: "entry" ("default",
// "sample", or "" when exported without --sample), "entries" (entry -> file name), and the
// noise a sample entry takes, "noise_size" and "noise" ([{"offset", "shape", "distribution"}];
// 0 and [] otherwise). Given one observation's values
// (observation_size numbers), it also acts on it with every action allowed and adds
//   "act": {"action": [...], <every head>: [...]}  and the heads' own calls
//   "value": v (Policy::value, when the artifact has a value head),
//   "q_values": [...] (Policy::q_values, when it has a q_values head).
// Exit status: 0 on success, 2 on bad input (usage, model refused, wrong count), 1 otherwise.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "policyport.hpp"

namespace {

// Names in policyport artifacts are identifiers joined by dots; quotes and backslashes are
// escaped all the same, so the output is JSON whatever the file holds.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void print_tensors(const char* key, const std::vector<policyport::TensorInfo>& tensors) {
  std::printf("%s: [", quoted(key).c_str());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const policyport::TensorInfo& tensor = tensors[i];
    std::printf("%s{\"name\": %s, \"dtype\": %s, \"shape\": [\"batch\"", i ? ", " : "",
                quoted(tensor.name).c_str(), quoted(tensor.dtype).c_str());
    for (int64_t dim : tensor.shape) std::printf(", %lld", static_cast<long long>(dim));
    std::fputs("]}", stdout);
  }
  std::fputs("]", stdout);
}

void print_floats(const std::vector<float>& values) {
  std::fputs("[", stdout);
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::printf("%s%.9g", i ? ", " : "", static_cast<double>(values[i]));
  }
  std::fputs("]", stdout);
}

float parse_float(const char* text) {
  char* end = nullptr;
  errno = 0;
  float value = std::strtof(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !std::isfinite(value)) {
    throw policyport::InputError(std::string("observation value '") + text +
                                 "' is not a finite number");
  }
  return value;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: policy_info MODEL [OBSERVATION...]\n"
                 "  MODEL        a .onnx or .ort file written by policyport's export-policy\n"
                 "  OBSERVATION  one observation's values (observation_size numbers, the\n"
                 "               observation inputs concatenated in input order) to act on\n";
    return 2;
  }
  policyport::Policy policy(argv[1]);
  const policyport::ModelInfo& info = policy.info();
  std::vector<float> observation;
  for (int i = 2; i < argc; ++i) observation.push_back(parse_float(argv[i]));
  // Act before printing anything, so that a refused observation leaves stdout empty.
  policyport::Action action;
  float value = 0.0f;
  std::vector<float> q_values;
  if (!observation.empty()) {
    const std::vector<uint8_t> all_allowed(info.mask_size, 1);
    action = policy.act(observation, all_allowed);
    if (info.has_head(policyport::kValueHead)) value = policy.value(observation);
    if (info.has_head(policyport::kQValuesHead)) q_values = policy.q_values(observation);
  }

  std::printf("{\"contract_version\": %d, ", info.contract_version);
  print_tensors("inputs", info.inputs);
  std::fputs(", ", stdout);
  print_tensors("outputs", info.outputs);
  std::printf(", \"observation_size\": %zu, \"mask_size\": %zu, \"heads\": [",
              info.observation_size, info.mask_size);
  for (std::size_t i = 0; i < info.heads.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", quoted(info.heads[i].name).c_str());
  }
  std::printf("], \"entry\": %s, \"entries\": {", quoted(info.entry).c_str());
  const char* separator = "";
  for (const auto& [entry, file] : info.entries) {
    std::printf("%s%s: %s", separator, quoted(entry).c_str(), quoted(file).c_str());
    separator = ", ";
  }
  std::printf("}, \"noise_size\": %zu, \"noise\": [", info.noise_size);
  for (std::size_t i = 0; i < info.noise_blocks.size(); ++i) {
    const policyport::NoiseBlock& block = info.noise_blocks[i];
    std::printf("%s{\"offset\": %zu, \"shape\": [", i ? ", " : "", block.offset);
    for (std::size_t d = 0; d < block.shape.size(); ++d) {
      std::printf("%s%lld", d ? ", " : "", static_cast<long long>(block.shape[d]));
    }
    std::printf("], \"distribution\": %s}", quoted(block.distribution).c_str());
  }
  std::fputs("]", stdout);
  if (!observation.empty()) {
    std::fputs(", \"act\": {\"action\": [", stdout);
    if (info.integer_actions) {
      for (std::size_t i = 0; i < action.discrete.size(); ++i) {
        std::printf("%s%lld", i ? ", " : "", static_cast<long long>(action.discrete[i]));
      }
    } else {
      for (std::size_t i = 0; i < action.continuous.size(); ++i) {
        std::printf("%s%.9g", i ? ", " : "", static_cast<double>(action.continuous[i]));
      }
    }
    std::fputs("]", stdout);
    for (const auto& [name, values] : action.heads) {
      std::printf(", %s: ", quoted(name).c_str());
      print_floats(values);
    }
    std::fputs("}", stdout);
    if (info.has_head(policyport::kValueHead)) {
      std::printf(", \"value\": %.9g", static_cast<double>(value));
    }
    if (info.has_head(policyport::kQValuesHead)) {
      std::fputs(", \"q_values\": ", stdout);
      print_floats(q_values);
    }
  }
  std::fputs("}\n", stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const policyport::Error& e) {
    std::cerr << "policy_info: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "policy_info: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
