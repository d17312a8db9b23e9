// sequence_run MODEL STEPS OBS_FILE RESET_FILE [MASK_FILE]
//
// Drives a recurrent policyport artifact (contract 4) over STEPS steps of B agents with
// Policy::step(): one policyport::State per agent, carried from call to call, its `reset` set
// where RESET_FILE says the agent starts over. Prints one JSON object with every output by
// name, flattened row-major [STEPS, B, ...]: action, the heads, and each next_state leaf.
//   OBS_FILE:   little-endian float32 [STEPS, B, observation_size]; B follows from the size.
//   RESET_FILE: uint8 0/1 [STEPS, B] (1: that agent starts from the initial state there).
//   MASK_FILE:  uint8 0/1 [STEPS, B, mask_size]; required exactly when the model has a mask.
// Exit status: 0 on success, 2 on bad input (usage, files, sizes, model refused), 1 otherwise.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "policyport.hpp"

namespace {

constexpr const char* kUsage =
    "usage: sequence_run MODEL STEPS OBS_FILE RESET_FILE [MASK_FILE]\n"
    "  MODEL       a recurrent .onnx or .ort written by policyport's export-policy\n"
    "  STEPS       the number of steps T in the files\n"
    "  OBS_FILE    raw float32 observations [T, B, observation_size]\n"
    "  RESET_FILE  raw uint8 0/1 [T, B]: 1 where that agent starts from the initial state\n"
    "  MASK_FILE   raw uint8 0/1 [T, B, mask_size]; required exactly when the model has one\n";

std::vector<char> read_file(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw policyport::InputError(std::string("cannot open ") + what + " '" + path +
                                 "': " + std::strerror(errno));
  }
  return std::vector<char>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void print_float(float x) {
  if (std::isnan(x)) {
    std::fputs("NaN", stdout);
  } else if (std::isinf(x)) {
    std::fputs(x > 0 ? "Infinity" : "-Infinity", stdout);
  } else {
    std::printf("%.9g", static_cast<double>(x));
  }
}

void print_floats(const std::vector<float>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) std::fputs(", ", stdout);
    print_float(values[i]);
  }
}

int run(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  policyport::Policy policy(argv[1]);
  const policyport::ModelInfo& info = policy.info();
  char* end = nullptr;
  const long steps = std::strtol(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || steps < 1) {
    throw policyport::InputError(std::string("STEPS must be a positive integer, got '") + argv[2] +
                                 "'");
  }
  const std::vector<char> obs_bytes = read_file(argv[3], "observation file");
  const std::size_t row_bytes = info.observation_size * sizeof(float);
  const std::size_t t = static_cast<std::size_t>(steps);
  if (obs_bytes.empty() || obs_bytes.size() % (t * row_bytes) != 0) {
    throw policyport::InputError("observation file '" + std::string(argv[3]) + "' holds " +
                                 std::to_string(obs_bytes.size()) + " bytes, not " +
                                 std::to_string(t) + " steps of whole rows of " +
                                 std::to_string(row_bytes) + " bytes");
  }
  const std::size_t agents = obs_bytes.size() / (t * row_bytes);
  std::vector<float> observations(obs_bytes.size() / sizeof(float));
  std::memcpy(observations.data(), obs_bytes.data(), obs_bytes.size());
  const std::vector<char> resets = read_file(argv[4], "reset file");
  if (resets.size() != t * agents) {
    throw policyport::InputError("reset file '" + std::string(argv[4]) + "' holds " +
                                 std::to_string(resets.size()) + " bytes; " + std::to_string(t) +
                                 " steps of " + std::to_string(agents) + " agents need " +
                                 std::to_string(t * agents));
  }
  std::vector<uint8_t> masks;
  if (argc == 6) {
    const std::vector<char> bytes = read_file(argv[5], "mask file");
    if (bytes.size() != t * agents * info.mask_size) {
      throw policyport::InputError("mask file '" + std::string(argv[5]) + "' holds " +
                                   std::to_string(bytes.size()) + " bytes, not " +
                                   std::to_string(t * agents * info.mask_size));
    }
    masks.assign(bytes.begin(), bytes.end());
  }

  std::vector<policyport::State> states(agents, policy.initial_state());
  std::vector<int64_t> discrete;
  std::vector<float> continuous;
  std::vector<std::vector<float>> heads(info.heads.size());
  std::vector<std::vector<float>> next(info.state_outputs.size());
  const std::size_t obs_step = agents * info.observation_size;
  const std::size_t mask_step = agents * info.mask_size;
  for (std::size_t k = 0; k < t; ++k) {
    for (std::size_t a = 0; a < agents; ++a) {
      if (resets[k * agents + a]) states[a].reset = true;
    }
    const std::vector<float> obs(observations.begin() + k * obs_step,
                                 observations.begin() + (k + 1) * obs_step);
    const std::vector<uint8_t> mask =
        masks.empty() ? std::vector<uint8_t>()
                      : std::vector<uint8_t>(masks.begin() + k * mask_step,
                                             masks.begin() + (k + 1) * mask_step);
    const policyport::BatchResult result = policy.step(obs, mask, states);
    discrete.insert(discrete.end(), result.discrete_actions.begin(),
                    result.discrete_actions.end());
    continuous.insert(continuous.end(), result.continuous_actions.begin(),
                      result.continuous_actions.end());
    for (std::size_t h = 0; h < info.heads.size(); ++h) {
      const std::vector<float>& values = result.heads.at(info.heads[h].name);
      heads[h].insert(heads[h].end(), values.begin(), values.end());
    }
    for (std::size_t s = 0; s < next.size(); ++s) {
      for (const policyport::State& state : states) {
        next[s].insert(next[s].end(), state.leaves[s].begin(), state.leaves[s].end());
      }
    }
  }

  std::fputs("{\"action\": [", stdout);
  if (info.integer_actions) {
    for (std::size_t i = 0; i < discrete.size(); ++i) {
      std::printf("%s%lld", i ? ", " : "", static_cast<long long>(discrete[i]));
    }
  } else {
    print_floats(continuous);
  }
  for (std::size_t h = 0; h < info.heads.size(); ++h) {
    std::printf("], \"%s\": [", info.heads[h].name.c_str());
    print_floats(heads[h]);
  }
  for (std::size_t s = 0; s < next.size(); ++s) {
    std::printf("], \"%s\": [", info.state_outputs[s].name.c_str());
    print_floats(next[s]);
  }
  std::fputs("]}\n", stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const policyport::Error& e) {
    std::cerr << "sequence_run: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sequence_run: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
