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
#include "kiln/predict/image_input.h"

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
  int threads = 0;             // ONNX Runtime's intra-op threads (0: one per core)
  std::string device = "cpu";  // cpu, or cuda: ONNX Runtime's CUDA provider where it has one
};

// A model file or a folder holding exactly one .onnx file (not a GenAI folder): the file.
// NotFound / InvalidArgument naming what is there otherwise.
Result<std::string> FindOnnxFile(const std::string& path);

// One request's input tensor, checked against the model's input and laid out as it takes it:
// `shape` starts with the batch dimension (added when the data left it out), `rows` long.
struct PredictInput {
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
};

// A request's outputs, {"<output name>_<index>": value}, and the batch dimension of the run it
// rode in.
struct PredictOutput {
  nlohmann::ordered_json outputs;
  int64_t batch_rows = 0;
};

class PredictiveModel {
 public:
  // Loads `path` (FindOnnxFile). InvalidArgument naming the inputs when there is not exactly one,
  // or its type when it is not a supported tensor.
  static Result<std::unique_ptr<PredictiveModel>> Load(const std::string& path,
                                                       const PredictiveOptions& options);
  ~PredictiveModel();

  const std::string& file() const { return file_; }
  // The ONNX Runtime execution provider the model runs on: CPUExecutionProvider, or
  // CUDAExecutionProvider when cuda was asked for and this ONNX Runtime has it.
  const std::string& execution_provider() const { return execution_provider_; }
  const ValueInfo& input() const { return input_; }
  const std::vector<ValueInfo>& outputs() const { return outputs_; }

  // Whether requests can share one run: the input's first dimension is open and every output
  // is a tensor whose first dimension is open, or a sequence (ONNX-ML's ZipMap: one map per row).
  bool batchable() const { return batchable_; }

  // Checks `tensor`, a JSON nested array of numbers holding the input tensor, with or without
  // its batch dimension (then a batch of one). InvalidArgument saying what is wrong: the shape,
  // an element that is not a number, or a value the input type cannot hold.
  Result<PredictInput> Prepare(const nlohmann::json& tensor) const;

  // A tensor of `shape` (exactly the input's rank) whose elements, in row-major order, are the
  // leaves of `data` (a flat or nested JSON array), as the Open Inference Protocol sends them.
  // InvalidArgument for a shape the input does not take, a count that is not the shape's, or
  // values the input type cannot hold.
  Result<PredictInput> PrepareFlat(const std::vector<int64_t>& shape,
                                   const nlohmann::json& data) const;
  // A tensor of `shape` given as raw little-endian elements of the input's type (the protocol's
  // binary data). InvalidArgument for a shape the input does not take or a byte count that is
  // not the shape's.
  Result<PredictInput> PrepareRaw(const std::vector<int64_t>& shape,
                                  std::vector<uint8_t> bytes) const;

  // Whether the input takes an image: 4-D with 3 channels, NCHW (dimension 1) or NHWC (3).
  bool takes_images() const { return image_channel_dim_ != 0; }

  // The input tensor of one image: resized to the input's height and width (where it fixes
  // them; else `preprocess`'s, else the image's own) with `preprocess`'s filter, each value
  // (pixel * scale - mean[c]) / std[c] in the input's channel order and layout; an integer input
  // takes the resized pixels as they are. InvalidArgument when the input does not take images.
  Result<PredictInput> PrepareImage(const RgbImage& image, const ImagePreprocess& preprocess) const;

  // Whether two prepared inputs can go in one run: the same shape past the batch dimension.
  static bool SameRowShape(const PredictInput& a, const PredictInput& b);

  // Runs `inputs` (all SameRowShape) in one run, their rows concatenated, when the model is
  // batchable, and gives each request its own rows of every output: tensors as nested arrays,
  // maps as objects, sequences as arrays. Where one run cannot serve them all (ONNX Runtime
  // refuses the batch, or an output does not come back one row per input row) each input runs
  // alone, so a request's answer never depends on the others. An error is InvalidArgument (the
  // model refused that input).
  std::vector<Result<PredictOutput>> Run(std::span<const PredictInput* const> inputs);

  // Prepare, then Run alone.
  Result<PredictOutput> Predict(const nlohmann::json& tensor);

 private:
  struct Impl;
  PredictiveModel() = default;
  // InvalidArgument unless `shape` has the input's rank and its fixed dimensions.
  Status CheckShape(const std::vector<int64_t>& shape) const;
  std::unique_ptr<Impl> impl_;
  std::string file_;
  std::string execution_provider_ = "CPUExecutionProvider";
  ValueInfo input_;
  std::vector<ValueInfo> outputs_;
  bool batchable_ = false;
  int image_channel_dim_ = 0;  // 1 (NCHW), 3 (NHWC) or 0 (not an image input)
};

}  // namespace kiln::predict
