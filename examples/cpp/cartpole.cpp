// cartpole [--sample SEED | --noise NOISE_FILE] MODEL [x x_dot theta theta_dot]
//
// Drives CartPole with a policy exported by policyport, in closed loop, and prints the episode
// as one JSON object: {"return": R, "steps": S, "terminated": true|false, "final_state": [...]}.
// By default each step takes the deterministic action (Policy::act). With a sample entry
// (`export-policy --sample` writes `<stem>.sample.onnx`) each step can take a sampled action:
//   --sample SEED       Policy::sample(observation, mask, rng), rng = std::mt19937_64(SEED);
//   --noise NOISE_FILE  Policy::sample_with_noise with row t of NOISE_FILE (little-endian
//                       float32 [rows, noise_size]) at step t, e.g. the noise of JAX keys
//                       (policyport.sampling_noise), to replay a JAX rollout exactly.
//
// The dynamics are Gymnasium's CartPole equations with explicit Euler integration, which is
// what lerax's `CartPole(solver=diffrax.Euler())` computes, in float32 as JAX does:
//   gravity 9.8, cart mass 1.0, pole mass 0.1, half pole length 0.5, force 10 (action 1 pushes
//   right, 0 left), dt 0.02. The episode terminates when |x| > 2.4 or |theta| > 12 degrees,
//   reward 1 per step including the terminal one, and is cut after 500 steps.
// The start state defaults to 0.01 -0.02 0.03 0.04, as in examples/cartpole/deploy_onnx.py.
#include <algorithm>
#include <cerrno>
#include <cmath>
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

constexpr float kGravity = 9.8f;
constexpr float kCartMass = 1.0f;
constexpr float kPoleMass = 0.1f;
constexpr float kTotalMass = kPoleMass + kCartMass;
constexpr float kHalfLength = 0.5f;
constexpr float kPoleMassLength = kPoleMass * kHalfLength;
constexpr float kForceMag = 10.0f;
constexpr float kDt = 0.02f;
constexpr float kXThreshold = 2.4f;
// 12 * 2 * pi / 360, rounded to float32 as lerax's jnp.array(...) stores it.
constexpr float kThetaThreshold = static_cast<float>(12 * 2 * 3.14159265358979323846 / 360);
constexpr int kMaxSteps = 500;

struct State {
  float x, x_dot, theta, theta_dot;
};

// One explicit Euler step: y + dt * f(y), with f the CartPole equations of motion.
State step(const State& s, int64_t action) {
  const float force = static_cast<float>(action * 2 - 1) * kForceMag;
  const float sin_t = std::sin(s.theta);
  const float cos_t = std::cos(s.theta);
  const float temp = (force + kPoleMassLength * s.theta_dot * s.theta_dot * sin_t) / kTotalMass;
  const float theta_acc = (kGravity * sin_t - cos_t * temp) /
                          (kHalfLength * (4.0f / 3.0f - kPoleMass * cos_t * cos_t / kTotalMass));
  const float x_acc = temp - kPoleMassLength * theta_acc * cos_t / kTotalMass;
  return State{s.x + kDt * s.x_dot, s.x_dot + kDt * x_acc, s.theta + kDt * s.theta_dot,
               s.theta_dot + kDt * theta_acc};
}

bool terminal(const State& s) {
  return !(s.x >= -kXThreshold && s.x <= kXThreshold && s.theta >= -kThetaThreshold &&
           s.theta <= kThetaThreshold);
}

float parse_float(const char* text, const char* name) {
  char* end = nullptr;
  errno = 0;
  float value = std::strtof(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !std::isfinite(value)) {
    throw policyport::InputError(std::string("initial ") + name + " '" + text +
                                 "' is not a finite number");
  }
  return value;
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

// NOISE_FILE's rows: float32 [rows, noise_size], at least one row.
std::vector<float> read_noise(const std::string& path, const policyport::ModelInfo& info) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw policyport::InputError("cannot open noise file '" + path + "': " + std::strerror(errno));
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  const std::size_t row_bytes = info.noise_size * sizeof(float);
  if (bytes.empty() || bytes.size() % row_bytes != 0) {
    throw policyport::InputError("noise file '" + path + "' holds " + std::to_string(bytes.size()) +
                                 " bytes, not a positive multiple of " +
                                 std::to_string(row_bytes) + " (" +
                                 std::to_string(info.noise_size) + " float32 values per step)");
  }
  std::vector<float> noise(bytes.size() / sizeof(float));
  std::memcpy(noise.data(), bytes.data(), bytes.size());
  return noise;
}

int run(int argc, char** argv) {
  // A leading --sample SEED or --noise NOISE_FILE.
  const char* option = nullptr;
  const char* option_value = nullptr;
  if (argc > 2 && (std::strcmp(argv[1], "--sample") == 0 || std::strcmp(argv[1], "--noise") == 0)) {
    option = argv[1];
    option_value = argv[2];
    argc -= 2;
    argv += 2;
  }
  if (argc != 2 && argc != 6) {
    std::cerr << "usage: cartpole [--sample SEED | --noise NOISE_FILE] MODEL [x x_dot theta "
                 "theta_dot]\n"
                 "  MODEL  the CartPole policy exported by policyport (.onnx or .ort); with\n"
                 "         --sample or --noise its sample entry (export-policy --sample)\n"
                 "  --sample SEED       sampled actions, noise from std::mt19937_64(SEED)\n"
                 "  --noise NOISE_FILE  sampled actions, row t of float32 [rows, noise_size]\n"
                 "                      at step t\n"
                 "  start state defaults to 0.01 -0.02 0.03 0.04\n";
    return 2;
  }
  policyport::Policy policy(argv[1]);
  const policyport::ModelInfo& info = policy.info();
  if (info.observation_size != 4 || !info.integer_actions || info.action_size != 1) {
    throw policyport::InputError(
        "'" + std::string(argv[1]) + "' is not a CartPole policy: it takes " +
        std::to_string(info.observation_size) + " observation values and a " +
        info.action_space_type + " action; CartPole needs 4 values and Discrete(2)");
  }
  State state{0.01f, -0.02f, 0.03f, 0.04f};
  if (argc == 6) {
    state = State{parse_float(argv[2], "x"), parse_float(argv[3], "x_dot"),
                  parse_float(argv[4], "theta"), parse_float(argv[5], "theta_dot")};
  }
  // CartPole never masks an action: allow both.
  const std::vector<uint8_t> mask(info.mask_size, 1);
  const bool seeded = option != nullptr && std::strcmp(option, "--sample") == 0;
  std::mt19937_64 rng(seeded ? parse_seed(option_value) : 0);
  // A default entry is refused before anything runs, naming the sample entry to load.
  if (option != nullptr) policy.require_sample_entry(option, seeded);
  const std::vector<float> noise =
      option != nullptr && !seeded ? read_noise(option_value, info) : std::vector<float>();
  const std::size_t noise_rows = noise.size() / std::max<std::size_t>(info.noise_size, 1);
  // The step's action: deterministic, sampled with `rng`, or sampled with row `t` of `noise`.
  auto choose = [&](const float* observation, int t) -> int64_t {
    const uint8_t* allowed = info.has_mask() ? mask.data() : nullptr;
    if (seeded) return policy.sample(observation, 4, allowed, mask.size(), rng).discrete[0];
    if (option == nullptr) return policy.act(observation, 4, allowed, mask.size()).discrete[0];
    if (static_cast<std::size_t>(t) >= noise_rows) {
      throw policyport::InputError("noise file '" + std::string(option_value) + "' holds " +
                                   std::to_string(noise_rows) + " rows; the episode reached step " +
                                   std::to_string(t + 1) + " (give up to 500, one per step)");
    }
    return policy
        .sample_with_noise(observation, 4, allowed, mask.size(), &noise[t * info.noise_size],
                           info.noise_size)
        .discrete[0];
  };

  float episode_return = 0.0f;
  int steps = 0;
  bool done = false;
  while (!done && steps < kMaxSteps) {
    const float observation[4] = {state.x, state.x_dot, state.theta, state.theta_dot};
    state = step(state, choose(observation, steps));
    episode_return += 1.0f;
    ++steps;
    done = terminal(state);
  }
  std::printf(
      "{\"return\": %.1f, \"steps\": %d, \"terminated\": %s, \"final_state\": [%.9g, %.9g, %.9g, "
      "%.9g]}\n",
      static_cast<double>(episode_return), steps, done ? "true" : "false",
      static_cast<double>(state.x), static_cast<double>(state.x_dot),
      static_cast<double>(state.theta), static_cast<double>(state.theta_dot));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const policyport::Error& e) {
    std::cerr << "cartpole: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cartpole: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
