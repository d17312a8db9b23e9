// batch_run MODEL OBS_FILE [MASK_FILE]
//
// Runs a policyport artifact (.onnx or .ort) on a batch read from raw files and prints one JSON
// object with every output the artifact has, by name, each flattened row-major: e.g.
// {"action": [...], "value": [...]} for an actor-critic, {"action": [...], "q_values": [...]}
// for a Q-policy.
//   OBS_FILE:  little-endian float32, row-major [N, observation_size]; N follows from the size.
//              Each row is one observation: the artifact's observation inputs' values
//              concatenated in input order (e.g. observation.pos then observation.kind), which
//              for an array observation space is simply the observation.
//   MASK_FILE: uint8 0/1, row-major [N, mask_size]; required exactly when the model has an
//              action_mask input.
// Exit status: 0 on success, 2 on bad input (usage, files, sizes, model refused), 1 otherwise.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "policyport.hpp"

namespace {

constexpr const char* kUsage =
    "usage: batch_run MODEL OBS_FILE [MASK_FILE]\n"
    "  MODEL      a .onnx or .ort file written by policyport's export-policy\n"
    "  OBS_FILE   raw little-endian float32 observations, row-major [N, observation_size],\n"
    "             each row the observation inputs' values concatenated in input order\n"
    "  MASK_FILE  raw uint8 0/1 action masks, row-major [N, mask_size]; required exactly when\n"
    "             the model has an action_mask input\n";

std::vector<char> read_file(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw policyport::InputError(std::string("cannot open ") + what + " '" + path +
                                 "': " + std::strerror(errno));
  }
  return std::vector<char>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// JSON numbers; float32 values are printed with 9 significant digits, enough to read back
// the identical float. JSON has no NaN or infinity: they are printed as Python's json reads
// them (NaN, Infinity), and a policy that produces them has a problem worth seeing.
void print_float(float x) {
  if (std::isnan(x)) {
    std::fputs("NaN", stdout);
  } else if (std::isinf(x)) {
    std::fputs(x > 0 ? "Infinity" : "-Infinity", stdout);
  } else {
    std::printf("%.9g", static_cast<double>(x));
  }
}

// "observation [6]" or "observation.pos [3] + observation.kind []", for messages.
std::string inputs_layout(const policyport::ModelInfo& info) {
  std::string out;
  for (const policyport::TensorInfo& input : info.observation_inputs) {
    out += out.empty() ? "" : " + ";
    out += input.name + " [";
    for (std::size_t i = 0; i < input.shape.size(); ++i) {
      out += (i ? ", " : "") + std::to_string(input.shape[i]);
    }
    out += "]";
  }
  return out;
}

int run(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string model_path = argv[1];
  policyport::Policy policy(model_path);
  const policyport::ModelInfo& info = policy.info();

  std::vector<char> obs_bytes = read_file(argv[2], "observation file");
  const std::size_t row_bytes = info.observation_size * sizeof(float);
  if (obs_bytes.empty() || obs_bytes.size() % row_bytes != 0) {
    throw policyport::InputError("observation file '" + std::string(argv[2]) + "' holds " +
                                 std::to_string(obs_bytes.size()) +
                                 " bytes, not a positive multiple of " + std::to_string(row_bytes) +
                                 " (this model's observations are " +
                                 std::to_string(info.observation_size) + " float32 values each: " +
                                 inputs_layout(info) + ")");
  }
  const std::size_t n = obs_bytes.size() / row_bytes;
  // The file is little-endian float32; so is every platform this example targets. Copying
  // into a float vector also gives the data float alignment.
  std::vector<float> observations(n * info.observation_size);
  std::memcpy(observations.data(), obs_bytes.data(), obs_bytes.size());

  std::vector<uint8_t> masks;
  if (argc == 4) {
    if (!info.has_mask()) {
      throw policyport::InputError("model '" + model_path +
                                   "' has no action_mask input (its "
                                   "action space is " +
                                   info.action_space_type + "); run it without MASK_FILE");
    }
    std::vector<char> mask_bytes = read_file(argv[3], "mask file");
    if (mask_bytes.size() != n * info.mask_size) {
      throw policyport::InputError(
          "mask file '" + std::string(argv[3]) + "' holds " + std::to_string(mask_bytes.size()) +
          " bytes; " + std::to_string(n) + " observations need " +
          std::to_string(n * info.mask_size) + " (" + std::to_string(info.mask_size) +
          " uint8 0/1 values per observation)");
    }
    masks.assign(mask_bytes.begin(), mask_bytes.end());
    for (std::size_t i = 0; i < masks.size(); ++i) {
      if (masks[i] > 1) {
        throw policyport::InputError("mask file '" + std::string(argv[3]) + "' holds byte " +
                                     std::to_string(masks[i]) + " at offset " + std::to_string(i) +
                                     "; masks are 0 (masked) or 1 (allowed)");
      }
    }
  } else if (info.has_mask()) {
    throw policyport::InputError(
        "model '" + model_path + "' has an action_mask input (" + info.action_space_type +
        " actions, " + std::to_string(info.mask_size) +
        " values per observation) and no MASK_FILE was given; write one (all 1 to allow every "
        "action)");
  }

  policyport::BatchResult result = policy.run(observations, masks);

  std::fputs("{\"action\": [", stdout);
  const std::size_t actions = result.batch * info.action_size;
  for (std::size_t i = 0; i < actions; ++i) {
    if (i) std::fputs(", ", stdout);
    if (info.integer_actions) {
      std::printf("%lld", static_cast<long long>(result.discrete_actions[i]));
    } else {
      print_float(result.continuous_actions[i]);
    }
  }
  for (const policyport::TensorInfo& head : info.heads) {
    std::printf("], \"%s\": [", head.name.c_str());
    const std::vector<float>& values = result.heads.at(head.name);
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i) std::fputs(", ", stdout);
      print_float(values[i]);
    }
  }
  std::fputs("]}\n", stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const policyport::Error& e) {
    std::cerr << "batch_run: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "batch_run: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
