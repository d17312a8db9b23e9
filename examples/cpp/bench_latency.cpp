// bench_latency MODEL [CALLS]
//
// Per-call latency at batch 1 on the calling thread (ONNX Runtime with one intra-op thread),
// timed call by call; prints one JSON line per way of calling:
//   policy.act      the wrapper's one-observation call (what an application calls)
//   run_into        the wrapper's allocation-free call with caller-owned buffers
//   session.Run     ONNX Runtime directly, input and output tensors created once up front
//   iobinding       ONNX Runtime directly through Ort::IoBinding, bound once up front
// The last two work on any model with float/bool/int64 tensor inputs (e.g. an Identity graph,
// to measure ONNX Runtime's own per-call floor); the first two need a policyport artifact and
// are skipped for anything else. Observations cycle through 1024 random rows in [-1, 1); masks
// allow every action. Pin the process to one core (taskset -c 0) for stable figures.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "policyport.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kRows = 1024;

void report(const char* mode, std::vector<double>& ns) {
  std::sort(ns.begin(), ns.end());
  double sum = 0;
  for (double x : ns) sum += x;
  auto at = [&](double q) { return ns[static_cast<std::size_t>(q * (ns.size() - 1))] / 1000.0; };
  std::printf(
      "{\"mode\": \"%s\", \"calls\": %zu, \"median_us\": %.3f, \"p99_us\": %.3f, "
      "\"mean_us\": %.3f, \"min_us\": %.3f}\n",
      mode, ns.size(), at(0.5), at(0.99), sum / ns.size() / 1000.0, ns.front() / 1000.0);
  std::fflush(stdout);
}

// Times `call(i)` `calls` times after `calls / 10` untimed warm-up calls.
void bench(const char* mode, std::size_t calls, const std::function<void(std::size_t)>& call) {
  for (std::size_t i = 0; i < calls / 10; ++i) call(i);
  std::vector<double> ns(calls);
  for (std::size_t i = 0; i < calls; ++i) {
    auto start = Clock::now();
    call(i);
    ns[i] = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  }
  report(mode, ns);
}

std::vector<float> random_rows(std::size_t size) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> rows(kRows * size);
  for (float& x : rows) x = uniform(rng);
  return rows;
}

// ONNX Runtime on its own: tensors for every input (batch 1) and output made once.
void bench_raw(const std::string& path, std::size_t calls) {
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "bench_latency");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  options.SetInterOpNumThreads(1);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  Ort::Session session(env, path.c_str(), options);
  Ort::AllocatorWithDefaultOptions allocator;
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  std::vector<std::string> names;
  std::vector<Ort::Value> inputs, outputs;
  std::vector<std::vector<char>> buffers;  // backing storage for every tensor
  float* observation = nullptr;
  std::size_t observation_size = 0;
  auto make = [&](const Ort::TypeInfo& type_info, bool fill_ones) {
    auto tensor = type_info.GetTensorTypeAndShapeInfo();
    std::vector<int64_t> shape = tensor.GetShape();
    std::size_t count = 1;
    for (int64_t& d : shape) {
      if (d < 0) d = 1;
      count *= static_cast<std::size_t>(d);
    }
    const auto type = tensor.GetElementType();
    std::size_t bytes = count * (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL    ? 1
                                 : type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 ? 8
                                                                               : 4);
    buffers.emplace_back(bytes, fill_ones && type == ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL ? 1 : 0);
    if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && observation == nullptr && fill_ones) {
      observation = reinterpret_cast<float*>(buffers.back().data());
      observation_size = count;
    }
    return Ort::Value::CreateTensor(memory, buffers.back().data(), bytes, shape.data(),
                                    shape.size(), type);
  };
  buffers.reserve(16);
  const std::size_t n_in = session.GetInputCount(), n_out = session.GetOutputCount();
  for (std::size_t i = 0; i < n_in; ++i) {
    names.push_back(session.GetInputNameAllocated(i, allocator).get());
    inputs.push_back(make(session.GetInputTypeInfo(i), true));
  }
  for (std::size_t i = 0; i < n_out; ++i) {
    names.push_back(session.GetOutputNameAllocated(i, allocator).get());
    outputs.push_back(make(session.GetOutputTypeInfo(i), false));
  }
  std::vector<const char*> in_names, out_names;
  for (std::size_t i = 0; i < n_in; ++i) in_names.push_back(names[i].c_str());
  for (std::size_t i = 0; i < n_out; ++i) out_names.push_back(names[n_in + i].c_str());

  const std::vector<float> rows = random_rows(observation_size);
  auto next_observation = [&](std::size_t i) {
    if (observation) {
      std::copy_n(rows.data() + (i % kRows) * observation_size, observation_size, observation);
    }
  };
  Ort::RunOptions run_options{nullptr};
  bench("session.Run", calls, [&](std::size_t i) {
    next_observation(i);
    session.Run(run_options, in_names.data(), inputs.data(), n_in, out_names.data(), outputs.data(),
                n_out);
  });
  Ort::IoBinding binding(session);
  for (std::size_t i = 0; i < n_in; ++i) binding.BindInput(in_names[i], inputs[i]);
  for (std::size_t i = 0; i < n_out; ++i) binding.BindOutput(out_names[i], outputs[i]);
  bench("iobinding", calls, [&](std::size_t i) {
    next_observation(i);
    session.Run(run_options, binding);
  });
}

int run(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: bench_latency MODEL [CALLS]   (default 20000 calls per mode)\n";
    return 2;
  }
  const std::string path = argv[1];
  const std::size_t calls = argc == 3 ? std::strtoul(argv[2], nullptr, 10) : 20000;
  if (calls < 10) {
    std::cerr << "bench_latency: CALLS must be at least 10\n";
    return 2;
  }
  try {
    policyport::Policy policy(path);
    const auto& info = policy.info();
    const std::vector<float> rows = random_rows(info.observation_size);
    const std::vector<uint8_t> mask(info.mask_size, 1);
    const uint8_t* mask_data = info.has_mask() ? mask.data() : nullptr;
    bench("policy.act", calls, [&](std::size_t i) {
      policy.act(rows.data() + (i % kRows) * info.observation_size, info.observation_size,
                 mask_data, mask.size());
    });
    std::vector<int64_t> discrete(info.action_size);
    std::vector<float> continuous(info.action_size);
    // Caller-owned buffers: one per observation input (batch 1: its slice of a row of `rows`
    // is copied in), one per head.
    std::vector<std::vector<float>> input_buffers, head_buffers;
    std::vector<const float*> inputs;
    std::vector<float*> heads;
    for (const auto& input : info.observation_inputs) input_buffers.emplace_back(input.size);
    for (const auto& head : info.heads) head_buffers.emplace_back(head.size);
    for (auto& buffer : input_buffers) inputs.push_back(buffer.data());
    for (auto& buffer : head_buffers) heads.push_back(buffer.data());
    bench("run_into", calls, [&](std::size_t i) {
      const float* row = rows.data() + (i % kRows) * info.observation_size;
      if (inputs.size() == 1) {
        inputs[0] = row;  // one input: the row itself, no copy
      } else {
        for (auto& buffer : input_buffers) {
          std::copy_n(row, buffer.size(), buffer.data());
          row += buffer.size();
        }
      }
      policy.run_into(inputs.data(), mask_data, 1, discrete.data(), continuous.data(),
                      heads.data());
    });
  } catch (const policyport::ContractVersionError& e) {
    std::cerr << "bench_latency: not a policyport artifact, timing ONNX Runtime only (" << e.what()
              << ")\n";
  }
  bench_raw(path, calls);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_latency: error: " << e.what() << '\n';
    return 2;
  }
}
