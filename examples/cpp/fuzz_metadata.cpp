// fuzz_metadata: libFuzzer target for the metadata reader every Policy uses
// (read_onnx_metadata, then describe_artifact; policyport_metadata.cpp, no ONNX Runtime).
// Each input is taken as an ONNX file's bytes. A refusal (policyport::Error) is the expected
// outcome for most inputs; what must never happen is a crash, a sanitizer report, a hang, a
// message longer than a few hundred characters of quoted value, or an accepted file whose
// sizes break the invariants Policy relies on. Built and run by fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>

#include "policyport.hpp"

namespace {

// What Policy and draw_noise rely on for an accepted file; a violation is a bug: abort.
void check_invariants(const policyport::ModelInfo& info) {
  namespace limits = policyport::limits;
  bool ok = info.observation_size >= 1 && info.observation_size <= limits::kMaxRowElements &&
            info.inputs.size() <= limits::kMaxTensors && info.outputs.size() <= limits::kMaxTensors;
  std::size_t next = 0;
  for (const policyport::NoiseBlock& block : info.noise_blocks) {
    ok = ok && block.offset == next && block.size >= 1 && block.size <= info.noise_size - next;
    next = block.offset + block.size;
  }
  ok = ok && next == info.noise_size;
  for (const auto* tensors : {&info.inputs, &info.outputs}) {
    for (const policyport::TensorInfo& tensor : *tensors) {
      ok = ok && tensor.size >= 1 && tensor.size <= limits::kMaxRowElements &&
           tensor.shape.size() < limits::kMaxRank;
    }
  }
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::istringstream file(std::string(reinterpret_cast<const char*>(data), size));
  try {
    check_invariants(policyport::describe_artifact(
        policyport::read_onnx_metadata(file, "fuzz.onnx"), "fuzz.onnx"));
  } catch (const policyport::Error& error) {
    // The message's own words, the path, and a quoted excerpt: never the whole value.
    if (std::strlen(error.what()) > 2000) __builtin_trap();
  }
  return 0;
}
