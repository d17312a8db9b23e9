// cartpole MODEL [x x_dot theta theta_dot]
//
// Drives CartPole with a policy exported by policyport, in closed loop, and prints the episode
// as one JSON object: {"return": R, "steps": S, "terminated": true|false, "final_state": [...]}.
//
// The dynamics are Gymnasium's CartPole equations with explicit Euler integration, which is
// what lerax's `CartPole(solver=diffrax.Euler())` computes, in float32 as JAX does:
//   gravity 9.8, cart mass 1.0, pole mass 0.1, half pole length 0.5, force 10 (action 1 pushes
//   right, 0 left), dt 0.02. The episode terminates when |x| > 2.4 or |theta| > 12 degrees,
//   reward 1 per step including the terminal one, and is cut after 500 steps.
// The start state defaults to 0.01 -0.02 0.03 0.04, as in examples/cartpole/deploy_onnx.py.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
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

int run(int argc, char** argv) {
  if (argc != 2 && argc != 6) {
    std::cerr << "usage: cartpole MODEL [x x_dot theta theta_dot]\n"
                 "  MODEL  the CartPole policy exported by policyport (.onnx or .ort)\n"
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

  float episode_return = 0.0f;
  int steps = 0;
  bool done = false;
  while (!done && steps < kMaxSteps) {
    const float observation[4] = {state.x, state.x_dot, state.theta, state.theta_dot};
    policyport::Action action =
        policy.act(observation, 4, info.has_mask() ? mask.data() : nullptr, mask.size());
    state = step(state, action.discrete[0]);
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
