// onnxruntime's C++ `Run` at batch 1, for bench/c_latency.py (loaded with ctypes): the
// session is opened once with one intra-op thread, its input and output tensors made once
// over the caller's buffers (inputs, then outputs, in the graph's order), and `ort_loop`
// calls `Run` n times, so Python's per-call overhead is paid once per n calls.
#include <onnxruntime_cxx_api.h>

#include <string>
#include <vector>

namespace {

struct Bench {
  Ort::Env env{ORT_LOGGING_LEVEL_WARNING, "policyport-bench"};
  Ort::Session session{nullptr};
  std::vector<std::string> names;
  std::vector<const char*> in_names, out_names;
  std::vector<Ort::Value> inputs, outputs;
};

std::size_t element_bytes(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return 1;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return 8;
    default: return 4;
  }
}

}  // namespace

extern "C" void* ort_open(const char* path, void** buffers) {
  auto* bench = new Bench();
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  options.SetInterOpNumThreads(1);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  bench->session = Ort::Session(bench->env, path, options);
  Ort::AllocatorWithDefaultOptions allocator;
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const std::size_t n_in = bench->session.GetInputCount();
  const std::size_t n_out = bench->session.GetOutputCount();
  for (std::size_t i = 0; i < n_in + n_out; ++i) {
    const bool input = i < n_in;
    auto info = input ? bench->session.GetInputTypeInfo(i)
                      : bench->session.GetOutputTypeInfo(i - n_in);
    auto tensor = info.GetTensorTypeAndShapeInfo();
    std::vector<int64_t> shape = tensor.GetShape();
    std::size_t count = 1;
    for (int64_t& d : shape) {
      if (d < 0) d = 1;  // the batch
      count *= static_cast<std::size_t>(d);
    }
    auto value = Ort::Value::CreateTensor(memory, buffers[i], count * element_bytes(
        tensor.GetElementType()), shape.data(), shape.size(), tensor.GetElementType());
    (input ? bench->inputs : bench->outputs).push_back(std::move(value));
    bench->names.push_back(input ? bench->session.GetInputNameAllocated(i, allocator).get()
                                 : bench->session.GetOutputNameAllocated(i - n_in, allocator).get());
  }
  for (std::size_t i = 0; i < n_in + n_out; ++i) {
    (i < n_in ? bench->in_names : bench->out_names).push_back(bench->names[i].c_str());
  }
  return bench;
}

extern "C" int ort_loop(void* handle, int n) {
  auto* bench = static_cast<Bench*>(handle);
  Ort::RunOptions run_options{nullptr};
  for (int i = 0; i < n; ++i) {
    bench->session.Run(run_options, bench->in_names.data(), bench->inputs.data(),
                       bench->inputs.size(), bench->out_names.data(), bench->outputs.data(),
                       bench->outputs.size());
  }
  return 0;
}
