// PredictiveModel: a classic ONNX model (classification, detection, regression; ONNX-ML
// exports of scikit-learn included) on ONNX Runtime, for /v1/predict. It has exactly one input,
// a tensor of float16, float, double, int32, int64 or uint8, and any outputs: tensors, and the
// sequences of maps ONNX-ML's ZipMap gives, which become plain JSON.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::predict {

// One graph input or output as ONNX names its type: "tensor(float)",
// "seq(map(int64,tensor(float)))", ... and, for tensors, its shape (-1: a dimension the model
// leaves open).
struct ValueInfo {
  std::string name;
  std::string type;
  std::vector<int64_t> shape;
};

struct PredictiveOptions {
  int threads = 0;  // ONNX Runtime's intra-op threads (0: one per core)
};

// A model file or a folder holding exactly one .onnx file (not a GenAI folder): the file.
// NotFound / InvalidArgument naming what is there otherwise.
Result<std::string> FindOnnxFile(const std::string& path);

class PredictiveModel {
 public:
  // Loads `path` (FindOnnxFile). InvalidArgument naming the inputs when there is not exactly one,
  // or its type when it is not a supported tensor.
  static Result<std::unique_ptr<PredictiveModel>> Load(const std::string& path,
                                                       const PredictiveOptions& options);
  ~PredictiveModel();

  const std::string& file() const { return file_; }
  const ValueInfo& input() const { return input_; }
  const std::vector<ValueInfo>& outputs() const { return outputs_; }

  // Runs the model on `tensor`, a JSON nested array of numbers holding the input tensor, with
  // or without its batch dimension (then a batch of one). Returns {"<output name>_<index>":
  // value} for every output, tensors as nested arrays, maps as objects. InvalidArgument saying
  // what is wrong for a shape or values the input cannot take; Internal for a failed run.
  Result<nlohmann::ordered_json> Predict(const nlohmann::json& tensor);

 private:
  struct Impl;
  PredictiveModel() = default;
  std::unique_ptr<Impl> impl_;
  std::string file_;
  ValueInfo input_;
  std::vector<ValueInfo> outputs_;
};

}  // namespace kiln::predict
