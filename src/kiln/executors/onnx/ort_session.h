// A thin, Status-returning layer over ONNX Runtime's C++ API: one process-wide environment and
// sessions that run on named host tensors.
//
// ONNX Runtime reports errors by throwing Ort::Exception; nothing here lets one escape.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::onnx {

enum class ElementType { kFloat32, kFloat16, kBFloat16, kInt32, kInt64, kUint8, kInt8, kBool };

const char* ElementTypeName(ElementType type);
size_t ElementSize(ElementType type);

// A dense, row-major host tensor that owns its bytes.
struct HostTensor {
  ElementType type = ElementType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  int64_t element_count() const;
};

// The version string of the ONNX Runtime library loaded at run time (e.g. "1.32.0").
std::string RuntimeVersion();

struct SessionOptions {
  int intra_op_threads = 0;  // 0: ONNX Runtime's default (one per core)
};

class OrtSession {
 public:
  // Loads an .onnx file (external data files are resolved next to it).
  static Result<std::unique_ptr<OrtSession>> Load(const std::string& path,
                                                  const SessionOptions& options);
  ~OrtSession();

  const std::vector<std::string>& input_names() const { return input_names_; }
  const std::vector<std::string>& output_names() const { return output_names_; }

  // Runs the graph on `inputs` (every graph input must be present) and returns every output.
  Result<std::map<std::string, HostTensor>> Run(const std::map<std::string, HostTensor>& inputs);

 private:
  struct Impl;
  explicit OrtSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<std::string> input_names_;
  std::vector<std::string> output_names_;
};

}  // namespace kiln::onnx
