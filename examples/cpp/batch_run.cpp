// batch_run [--noise NOISE_FILE | --sample SEED] MODEL OBS_FILE [MASK_FILE]
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
// Sampling (a sample entry, `<stem>.sample.onnx` from `export-policy --sample`): with either
// option the JSON adds "sampled_action" and "log_prob" (Policy::run_sample).
//   --noise NOISE_FILE: little-endian float32 [N, noise_size], the noise of each row (e.g.
//              policyport.sampling_noise(policy, key) per row, which reproduces JAX exactly).
//   --sample SEED: the noise drawn by Policy::draw_noise with std::mt19937_64(SEED).
// Without them a sample entry is run with zero noise and prints what a default entry does.
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
#include <random>
#include <string>
#include <vector>

#include "policyport.hpp"

namespace {

constexpr const char* kUsage =
    "usage: batch_run [--noise NOISE_FILE | --sample SEED] MODEL OBS_FILE [MASK_FILE]\n"
    "  MODEL      a .onnx or .ort file written by policyport's export-policy\n"
    "  OBS_FILE   raw little-endian float32 observations, row-major [N, observation_size],\n"
    "             each row the observation inputs' values concatenated in input order\n"
    "  MASK_FILE  raw uint8 0/1 action masks, row-major [N, mask_size]; required exactly when\n"
    "             the model has an action_mask input\n"
    "  --noise NOISE_FILE  (a sample entry) raw float32 noise, row-major [N, noise_size]:\n"
    "             prints sampled_action and log_prob too\n"
    "  --sample SEED       (a sample entry) the same, noise drawn with std::mt19937_64(SEED)\n";

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

void print_floats(const std::vector<float>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) std::fputs(", ", stdout);
    print_float(values[i]);
  }
}

// An action output: int64 or float32 values, as the artifact's action is.
void print_actions(const policyport::ModelInfo& info, const std::vector<int64_t>& discrete,
                   const std::vector<float>& continuous) {
  if (!info.integer_actions) return print_floats(continuous);
  for (std::size_t i = 0; i < discrete.size(); ++i) {
    std::printf("%s%lld", i ? ", " : "", static_cast<long long>(discrete[i]));
  }
}

uint64_t parse_seed(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long seed = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || text[0] == '-') {
    throw policyport::InputError(std::string("--sample takes a seed, a non-negative integer; got '") +
                                 text + "'");
  }
  return seed;
}

int run(int argc, char** argv) {
  // Leading options: --noise FILE or --sample SEED (not both).
  std::string noise_path;
  const char* seed_text = nullptr;
  while (argc > 1 && (std::strcmp(argv[1], "--noise") == 0 ||
                      std::strcmp(argv[1], "--sample") == 0)) {
    if (argc < 3 || !noise_path.empty() || seed_text != nullptr) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    if (argv[1][2] == 'n') {
      noise_path = argv[2];
    } else {
      seed_text = argv[2];
    }
    argc -= 2;
    argv += 2;
  }
  if (argc < 3 || argc > 4) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string model_path = argv[1];
  policyport::Policy policy(model_path);
  const policyport::ModelInfo& info = policy.info();
  const bool sampling = !noise_path.empty() || seed_text != nullptr;
  // A default entry is refused before any file is read, naming the sample entry to load.
  if (sampling) policy.require_sample_entry(seed_text ? "batch_run --sample" : "batch_run --noise",
                                           seed_text != nullptr);

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

  policyport::BatchSample sampled;
  if (sampling) {
    std::vector<float> noise;
    if (seed_text != nullptr) {
      std::mt19937_64 rng(parse_seed(seed_text));
      noise = policy.draw_noise(rng, n);
    } else {
      std::vector<char> noise_bytes = read_file(noise_path, "noise file");
      if (noise_bytes.size() != n * info.noise_size * sizeof(float)) {
        throw policyport::InputError(
            "noise file '" + noise_path + "' holds " + std::to_string(noise_bytes.size()) +
            " bytes; " + std::to_string(n) + " observations need " +
            std::to_string(n * info.noise_size * sizeof(float)) + " (" +
            std::to_string(info.noise_size) + " float32 values per observation)");
      }
      noise.resize(n * info.noise_size);
      std::memcpy(noise.data(), noise_bytes.data(), noise_bytes.size());
    }
    sampled = policy.run_sample(observations, masks, noise);
  }
  const policyport::BatchResult result = sampling ? sampled.mode : policy.run(observations, masks);

  std::fputs("{\"action\": [", stdout);
  print_actions(info, result.discrete_actions, result.continuous_actions);
  for (const policyport::TensorInfo& head : info.heads) {
    std::printf("], \"%s\": [", head.name.c_str());
    print_floats(result.heads.at(head.name));
  }
  if (sampling) {
    std::printf("], \"%s\": [", policyport::kSampledActionOutput);
    print_actions(info, sampled.discrete_actions, sampled.continuous_actions);
    std::printf("], \"%s\": [", policyport::kLogProbOutput);
    print_floats(sampled.log_probs);
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
