#include "kiln/predict/predictive_model.h"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "kiln/base/half.h"
#include "kiln/base/log.h"

namespace kiln::onnx {
Ort::Env& SharedOrtEnvironment();  // executors/onnx/ort_session.cc
}

namespace kiln::predict {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* ElementName(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return "float";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return "double";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return "bfloat16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return "uint32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return "uint64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return "bool";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return "string";
    default:
      return "unknown";
  }
}

// ONNX's name of a type: tensor(float), seq(map(int64,tensor(float))), ...
std::string TypeName(const Ort::ConstTypeInfo& info) {
  switch (info.GetONNXType()) {
    case ONNX_TYPE_TENSOR:
    case ONNX_TYPE_SPARSETENSOR:
      return std::string("tensor(") +
             ElementName(info.GetTensorTypeAndShapeInfo().GetElementType()) + ")";
    case ONNX_TYPE_SEQUENCE:
      return "seq(" + TypeName(info.GetSequenceTypeInfo().GetSequenceElementType().GetConst()) +
             ")";
    case ONNX_TYPE_MAP: {
      auto map = info.GetMapTypeInfo();
      return std::string("map(") + ElementName(map.GetMapKeyType()) + "," +
             TypeName(map.GetMapValueType().GetConst()) + ")";
    }
    case ONNX_TYPE_OPTIONAL:
      return "optional";
    default:
      return "unknown";
  }
}

ValueInfo Describe(std::string name, const Ort::TypeInfo& info) {
  ValueInfo v{std::move(name), TypeName(info.GetConst()), {}};
  if (info.GetONNXType() == ONNX_TYPE_TENSOR) {
    for (int64_t d : info.GetTensorTypeAndShapeInfo().GetShape()) v.shape.push_back(d < 0 ? -1 : d);
  }
  return v;
}

bool SupportedInput(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
         t == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ||
         t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
}

size_t ElementBytes(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return 8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return 1;
    default:
      return 4;
  }
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The shape of a nested array, from its first elements (Flatten checks every row).
std::vector<int64_t> NestedShape(const nlohmann::json& j) {
  std::vector<int64_t> shape;
  const nlohmann::json* at = &j;
  while (at->is_array()) {
    shape.push_back(static_cast<int64_t>(at->size()));
    if (at->empty()) break;
    at = &(*at)[0];
  }
  return shape;
}

// Writes the elements of `j` (of `shape` from `depth` on) as `type` into `out`. Returns "" or
// what is wrong, with the element's index.
std::string Flatten(const nlohmann::json& j, const std::vector<int64_t>& shape, size_t depth,
                    std::vector<int64_t>& index, ONNXTensorElementDataType type,
                    std::vector<uint8_t>& out) {
  auto where = [&] { return "element " + ShapeText(index); };
  if (depth < shape.size()) {
    if (!j.is_array() || static_cast<int64_t>(j.size()) != shape[depth]) {
      return where() + " should be an array of " + std::to_string(shape[depth]) +
             " (the rows of a tensor all have the same length)";
    }
    index.push_back(0);
    for (const nlohmann::json& e : j) {
      if (std::string err = Flatten(e, shape, depth + 1, index, type, out); !err.empty()) {
        return err;
      }
      ++index.back();
    }
    index.pop_back();
    return "";
  }
  if (!j.is_number()) {
    return where() + " is " + (j.is_array() ? "an array" : std::string(j.type_name())) +
           ", not a number";
  }
  const size_t at = out.size();
  out.resize(at + ElementBytes(type));
  auto put = [&](auto v) { std::memcpy(out.data() + at, &v, sizeof(v)); };
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      put(j.get<float>());
      return "";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      put(j.get<double>());
      return "";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      put(FloatToFp16(j.get<float>()));
      return "";
    default:
      break;
  }
  // Integer inputs take integers only: 1.5 is an error, not 1.
  if (!j.is_number_integer()) {
    const double d = j.get<double>();
    if (!(std::trunc(d) == d) || std::abs(d) > 9.007199254740992e15) {
      return where() + " is " + j.dump() + ", not an integer (the input is tensor(" +
             ElementName(type) + "))";
    }
  }
  const bool negative = j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0;
  auto range_error = [&] {
    return where() + " is " + j.dump() + ", outside tensor(" + ElementName(type) + ")'s range";
  };
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(INT64_MAX)) return range_error();
    put(j.is_number_integer() ? j.get<int64_t>() : static_cast<int64_t>(j.get<double>()));
    return "";
  }
  const double v = j.is_number_integer() ? static_cast<double>(j.get<int64_t>()) : j.get<double>();
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(INT32_MAX)) return range_error();
    if (v < INT32_MIN || v > INT32_MAX) return range_error();
    put(static_cast<int32_t>(v));
    return "";
  }
  // uint8
  if (negative || v < 0 || v > 255 || (j.is_number_unsigned() && j.get<uint64_t>() > 255)) {
    return range_error();
  }
  put(static_cast<uint8_t>(v));
  return "";
}

// One element of a tensor as JSON.
ojson Element(const uint8_t* data, int64_t i, ONNXTensorElementDataType type) {
  auto get = [&](auto zero) {
    decltype(zero) v;
    std::memcpy(&v, data + i * sizeof(v), sizeof(v));
    return v;
  };
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return static_cast<double>(get(0.0f));
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return get(0.0);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return static_cast<double>(Fp16ToFloat(get(uint16_t{0})));
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return static_cast<double>(Bf16ToFloat(get(uint16_t{0})));
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return get(int8_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return get(uint8_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return get(int16_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return get(uint16_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return get(int32_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return get(uint32_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return get(int64_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return get(uint64_t{0});
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return get(uint8_t{0}) != 0;
    default:
      return nullptr;
  }
}

// A tensor value's elements as a flat JSON array.
std::vector<ojson> TensorElements(const Ort::ConstValue& value) {
  auto info = value.GetTensorTypeAndShapeInfo();
  const int64_t count = static_cast<int64_t>(info.GetElementCount());
  const ONNXTensorElementDataType type = info.GetElementType();
  std::vector<ojson> out;
  out.reserve(count);
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    for (int64_t i = 0; i < count; ++i) {
      std::string s(value.GetStringTensorElementLength(i), '\0');
      value.GetStringTensorElement(s.size(), i, s.data());
      out.emplace_back(std::move(s));
    }
    return out;
  }
  const auto* data = static_cast<const uint8_t*>(value.GetTensorRawData());
  for (int64_t i = 0; i < count; ++i) out.push_back(Element(data, i, type));
  return out;
}

ojson Nest(const std::vector<ojson>& flat, const std::vector<int64_t>& shape, size_t depth,
           size_t& next) {
  if (depth == shape.size()) return flat[next++];
  ojson a = ojson::array();
  for (int64_t i = 0; i < shape[depth]; ++i) a.push_back(Nest(flat, shape, depth + 1, next));
  return a;
}

// Any output value as JSON: tensors as nested arrays, sequences as arrays, maps as objects
// (keys as strings, as JSON has it).
ojson ToJson(const Ort::ConstValue& value, OrtAllocator* allocator) {
  switch (value.GetTypeInfo().GetONNXType()) {
    case ONNX_TYPE_TENSOR: {
      std::vector<ojson> flat = TensorElements(value);
      size_t next = 0;
      return Nest(flat, value.GetTensorTypeAndShapeInfo().GetShape(), 0, next);
    }
    case ONNX_TYPE_SEQUENCE: {
      ojson a = ojson::array();
      const size_t n = value.GetCount();
      for (size_t i = 0; i < n; ++i) {
        Ort::Value element = value.GetValue(static_cast<int>(i), allocator);
        a.push_back(ToJson(element.GetConst(), allocator));
      }
      return a;
    }
    case ONNX_TYPE_MAP: {
      Ort::Value keys = value.GetValue(0, allocator);
      Ort::Value values = value.GetValue(1, allocator);
      std::vector<ojson> k = TensorElements(keys.GetConst());
      std::vector<ojson> v = TensorElements(values.GetConst());
      ojson o = ojson::object();
      for (size_t i = 0; i < k.size() && i < v.size(); ++i) {
        o[k[i].is_string() ? k[i].get<std::string>() : k[i].dump()] = v[i];
      }
      return o;
    }
    default:
      return nullptr;
  }
}

// The length of a value's first dimension: a tensor's first dimension, a sequence's count; -1
// for anything else.
int64_t LeadingRows(const Ort::ConstValue& value) {
  switch (value.GetTypeInfo().GetONNXType()) {
    case ONNX_TYPE_TENSOR: {
      std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
      return shape.empty() ? -1 : shape[0];
    }
    case ONNX_TYPE_SEQUENCE:
      return static_cast<int64_t>(value.GetCount());
    default:
      return -1;
  }
}

// Rows [begin, begin + count) of a tensor or sequence (LeadingRows), as ToJson gives the whole.
ojson RowsToJson(const Ort::ConstValue& value, int64_t begin, int64_t count,
                 OrtAllocator* allocator) {
  if (value.GetTypeInfo().GetONNXType() == ONNX_TYPE_SEQUENCE) {
    ojson a = ojson::array();
    for (int64_t i = begin; i < begin + count; ++i) {
      Ort::Value element = value.GetValue(static_cast<int>(i), allocator);
      a.push_back(ToJson(element.GetConst(), allocator));
    }
    return a;
  }
  std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
  std::vector<ojson> flat = TensorElements(value);
  const int64_t row = shape[0] == 0 ? 0 : static_cast<int64_t>(flat.size()) / shape[0];
  std::vector<ojson> part(flat.begin() + begin * row, flat.begin() + (begin + count) * row);
  shape[0] = count;
  size_t next = 0;
  return Nest(part, shape, 0, next);
}

}  // namespace

Result<std::string> FindOnnxFile(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Status::NotFound(path + ": no such file or folder");
  if (!fs::is_directory(path, ec)) return path;
  if (fs::exists(fs::path(path) / "genai_config.json", ec)) {
    return Status::InvalidArgument(path +
                                   " is an ONNX Runtime GenAI folder (genai_config.json), "
                                   "not a predictive model");
  }
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".onnx") {
      found.push_back(entry.path().string());
    }
  }
  if (found.size() == 1) return found[0];
  if (found.empty()) return Status::NotFound(path + ": the folder holds no .onnx file");
  std::string names;
  for (const std::string& f : found)
    names += (names.empty() ? "" : ", ") + fs::path(f).filename().string();
  return Status::InvalidArgument(path + ": the folder holds several .onnx files (" + names +
                                 "); name one");
}

struct PredictiveModel::Impl {
  Ort::Session session{nullptr};
  ONNXTensorElementDataType input_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<std::string> output_names;
};

PredictiveModel::~PredictiveModel() = default;

Result<std::unique_ptr<PredictiveModel>> PredictiveModel::Load(const std::string& path,
                                                               const PredictiveOptions& options) {
  Result<std::string> file = FindOnnxFile(path);
  if (!file.ok()) return file.status();
  std::unique_ptr<PredictiveModel> model(new PredictiveModel());
  model->file_ = file.value();
  model->impl_ = std::make_unique<Impl>();
  try {
    Ort::Env& env = onnx::SharedOrtEnvironment();  // first: providers log through its logger
    Ort::SessionOptions so;
    if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (options.device == "cuda") {
      try {
        OrtCUDAProviderOptions cuda{};
        so.AppendExecutionProvider_CUDA(cuda);
        model->execution_provider_ = "CUDAExecutionProvider";
      } catch (const Ort::Exception& e) {
        LogWarning(std::string("CUDA execution provider unavailable (") + e.what() +
                   "); running on CPU");
      }
    } else if (options.device != "cpu") {
      return Status::InvalidArgument("unknown device '" + options.device + "' (cpu or cuda)");
    }
    model->impl_->session = Ort::Session(env, model->file_.c_str(), so);
  } catch (const Ort::Exception& e) {
    return Status::InvalidArgument(model->file_ +
                                   ": ONNX Runtime cannot load the model: " + e.what());
  }
  Ort::Session& s = model->impl_->session;
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<ValueInfo> inputs;
  for (size_t i = 0; i < s.GetInputCount(); ++i) {
    inputs.push_back(Describe(s.GetInputNameAllocated(i, allocator).get(), s.GetInputTypeInfo(i)));
  }
  if (inputs.size() != 1) {
    std::string names;
    for (const ValueInfo& v : inputs) {
      names += (names.empty() ? "" : ", ") + v.name + " " + v.type + " " + ShapeText(v.shape);
    }
    return Status::InvalidArgument(model->file_ +
                                   ": a predictive model takes exactly one input; "
                                   "this one takes " +
                                   std::to_string(inputs.size()) +
                                   (names.empty() ? "" : ": " + names));
  }
  Ort::TypeInfo input_info = s.GetInputTypeInfo(0);
  if (input_info.GetONNXType() != ONNX_TYPE_TENSOR ||
      !SupportedInput(input_info.GetTensorTypeAndShapeInfo().GetElementType())) {
    return Status::InvalidArgument(model->file_ + ": the input '" + inputs[0].name + "' is " +
                                   inputs[0].type +
                                   "; a predictive model's input is a tensor of "
                                   "float16, float, double, int32, int64 or uint8");
  }
  model->impl_->input_type = input_info.GetTensorTypeAndShapeInfo().GetElementType();
  model->input_ = inputs[0];
  model->batchable_ = !inputs[0].shape.empty() && inputs[0].shape[0] == -1;
  if (const std::vector<int64_t>& d = inputs[0].shape; d.size() == 4) {
    model->image_channel_dim_ = d[1] == 3 ? 1 : d[3] == 3 ? 3 : 0;
  }
  for (size_t i = 0; i < s.GetOutputCount(); ++i) {
    std::string name = s.GetOutputNameAllocated(i, allocator).get();
    model->impl_->output_names.push_back(name);
    Ort::TypeInfo info = s.GetOutputTypeInfo(i);
    ValueInfo v = Describe(std::move(name), info);
    const bool per_row =
        info.GetONNXType() == ONNX_TYPE_SEQUENCE ||
        (info.GetONNXType() == ONNX_TYPE_TENSOR && !v.shape.empty() && v.shape[0] == -1);
    model->batchable_ = model->batchable_ && per_row;
    model->outputs_.push_back(std::move(v));
  }
  return model;
}

Result<PredictInput> PredictiveModel::Prepare(const nlohmann::json& tensor) const {
  const std::vector<int64_t>& want = input_.shape;
  std::vector<int64_t> shape = NestedShape(tensor);
  const std::string expected = "the input '" + input_.name + "' is " + input_.type + " of shape " +
                               ShapeText(want) + " (-1: any size)";
  if (!tensor.is_array() && !want.empty()) {
    return Status::InvalidArgument("the data should be a JSON array holding the input tensor; " +
                                   expected);
  }
  // Without the batch dimension: a batch of one.
  const bool add_batch = shape.size() + 1 == want.size() && (want[0] == -1 || want[0] == 1);
  PredictInput input;
  input.shape = shape;
  if (add_batch) input.shape.insert(input.shape.begin(), 1);
  bool fits = input.shape.size() == want.size();
  for (size_t i = 0; fits && i < input.shape.size(); ++i) {
    fits = input.shape[i] > 0 && (want[i] < 0 || want[i] == input.shape[i]);
  }
  if (!fits) {
    return Status::InvalidArgument("the data has shape " + ShapeText(shape) + "; " + expected);
  }
  std::vector<int64_t> index;
  if (std::string err = Flatten(tensor, shape, 0, index, impl_->input_type, input.bytes);
      !err.empty()) {
    return Status::InvalidArgument("the input tensor's " + err + "; " + expected);
  }
  return input;
}

namespace {

// The leaves of a nested JSON array, in row-major order.
void Leaves(const nlohmann::json& j, nlohmann::json& out) {
  if (!j.is_array()) {
    out.push_back(j);
    return;
  }
  for (const nlohmann::json& e : j) Leaves(e, out);
}

}  // namespace

Status PredictiveModel::CheckShape(const std::vector<int64_t>& shape) const {
  const std::vector<int64_t>& want = input_.shape;
  bool fits = shape.size() == want.size();
  for (size_t i = 0; fits && i < shape.size(); ++i) {
    fits = shape[i] > 0 && (want[i] < 0 || want[i] == shape[i]);
  }
  if (fits) return Status::Ok();
  return Status::InvalidArgument("the tensor has shape " + ShapeText(shape) + "; the input '" +
                                 input_.name + "' is " + input_.type + " of shape " +
                                 ShapeText(want) + " (-1: any size)");
}

Result<PredictInput> PredictiveModel::PrepareFlat(const std::vector<int64_t>& shape,
                                                  const nlohmann::json& data) const {
  if (Status s = CheckShape(shape); !s.ok()) return s;
  nlohmann::json flat = nlohmann::json::array();
  Leaves(data, flat);
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  if (static_cast<int64_t>(flat.size()) != count) {
    return Status::InvalidArgument("the data holds " + std::to_string(flat.size()) +
                                   " elements; shape " + ShapeText(shape) + " has " +
                                   std::to_string(count));
  }
  PredictInput input;
  input.shape = shape;
  std::vector<int64_t> index;
  if (std::string err = Flatten(flat, {count}, 0, index, impl_->input_type, input.bytes);
      !err.empty()) {
    return Status::InvalidArgument("the data's " + err);
  }
  return input;
}

Result<PredictInput> PredictiveModel::PrepareRaw(const std::vector<int64_t>& shape,
                                                 std::vector<uint8_t> bytes) const {
  if (Status s = CheckShape(shape); !s.ok()) return s;
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  const size_t want = static_cast<size_t>(count) * ElementBytes(impl_->input_type);
  if (bytes.size() != want) {
    return Status::InvalidArgument("the binary data holds " + std::to_string(bytes.size()) +
                                   " bytes; shape " + ShapeText(shape) + " of " + input_.type +
                                   " takes " + std::to_string(want));
  }
  return PredictInput{shape, std::move(bytes)};
}

Result<PredictInput> PredictiveModel::PrepareImage(const RgbImage& image,
                                                   const ImagePreprocess& p) const {
  const std::vector<int64_t>& want = input_.shape;
  if (!takes_images()) {
    return Status::InvalidArgument("the input '" + input_.name + "' (" + input_.type + " " +
                                   ShapeText(want) +
                                   ") does not take an image: image inputs need a 4-D input "
                                   "with 3 channels, NCHW or NHWC; send application/json");
  }
  const bool nchw = image_channel_dim_ == 1;
  const int64_t want_h = nchw ? want[2] : want[1];
  const int64_t want_w = nchw ? want[3] : want[2];
  const int height = want_h > 0 ? static_cast<int>(want_h) : p.height > 0 ? p.height : image.height;
  const int width = want_w > 0 ? static_cast<int>(want_w) : p.width > 0 ? p.width : image.width;
  const RgbImage resized = Resize(image, width, height, p.resize);
  PredictInput in;
  in.shape =
      nchw ? std::vector<int64_t>{1, 3, height, width} : std::vector<int64_t>{1, height, width, 3};
  const size_t pixels = static_cast<size_t>(width) * height;
  const ONNXTensorElementDataType type = impl_->input_type;
  in.bytes.resize(pixels * 3 * ElementBytes(type));
  for (size_t i = 0; i < pixels; ++i) {
    for (int c = 0; c < 3; ++c) {
      const int source = p.bgr ? 2 - c : c;  // the model's channel c holds the image's `source`
      const uint8_t pixel = resized.pixels[i * 3 + source];
      const size_t at = nchw ? c * pixels + i : i * 3 + c;
      const float value = (static_cast<float>(pixel) * p.scale - p.mean[source]) / p.std[source];
      uint8_t* out = in.bytes.data() + at * ElementBytes(type);
      auto put = [&](auto v) { std::memcpy(out, &v, sizeof(v)); };
      switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
          put(value);
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
          put(FloatToFp16(value));
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
          put(static_cast<double>(value));
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
          put(static_cast<int32_t>(pixel));
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
          put(static_cast<int64_t>(pixel));
          break;
        default:  // uint8
          put(pixel);
          break;
      }
    }
  }
  return in;
}

bool PredictiveModel::SameRowShape(const PredictInput& a, const PredictInput& b) {
  return a.shape.size() == b.shape.size() && !a.shape.empty() &&
         std::equal(a.shape.begin() + 1, a.shape.end(), b.shape.begin() + 1);
}

Result<PredictOutput> PredictiveModel::Predict(const nlohmann::json& tensor) {
  Result<PredictInput> input = Prepare(tensor);
  if (!input.ok()) return input.status();
  const PredictInput* one = &input.value();
  return std::move(Run({&one, 1})[0]);
}

std::vector<Result<PredictOutput>> PredictiveModel::Run(
    std::span<const PredictInput* const> inputs) {
  std::vector<Result<PredictOutput>> results;
  auto run_each = [&] {
    std::vector<Result<PredictOutput>> each;
    for (const PredictInput* in : inputs) each.push_back(std::move(Run({&in, 1})[0]));
    return each;
  };
  if (inputs.size() > 1 && !batchable_) return run_each();
  // One input tensor of every input's rows, in order.
  std::vector<int64_t> shape = inputs[0]->shape;
  int64_t rows = 0;
  size_t bytes = 0;
  for (const PredictInput* in : inputs) {
    rows += in->rows();
    bytes += in->bytes.size();
  }
  std::vector<uint8_t> joined;
  const std::vector<uint8_t>* data = &inputs[0]->bytes;
  if (inputs.size() > 1) {
    shape[0] = rows;
    joined.reserve(bytes);
    for (const PredictInput* in : inputs) {
      joined.insert(joined.end(), in->bytes.begin(), in->bytes.end());
    }
    data = &joined;
  }
  try {
    Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value value =
        Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(data->data()), data->size(),
                                 shape.data(), shape.size(), impl_->input_type);
    const char* input_name = input_.name.c_str();
    std::vector<const char*> names;
    for (const std::string& n : impl_->output_names) names.push_back(n.c_str());
    std::vector<Ort::Value> outputs = impl_->session.Run(Ort::RunOptions{nullptr}, &input_name,
                                                         &value, 1, names.data(), names.size());
    Ort::AllocatorWithDefaultOptions allocator;
    if (inputs.size() == 1) {
      PredictOutput out{nlohmann::ordered_json::object(), rows};
      for (size_t i = 0; i < outputs.size(); ++i) {
        out.outputs[impl_->output_names[i] + "_" + std::to_string(i)] =
            ToJson(outputs[i].GetConst(), allocator);
      }
      results.push_back(std::move(out));
      return results;
    }
    // Each output must come back one row per input row to be split.
    for (const Ort::Value& o : outputs) {
      if (LeadingRows(o.GetConst()) != rows) return run_each();
    }
    for (size_t r = 0; r < inputs.size(); ++r) {
      results.push_back(PredictOutput{nlohmann::ordered_json::object(), rows});
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string key = impl_->output_names[i] + "_" + std::to_string(i);
      int64_t begin = 0;
      for (size_t r = 0; r < inputs.size(); ++r) {
        results[r]->outputs[key] =
            RowsToJson(outputs[i].GetConst(), begin, inputs[r]->rows(), allocator);
        begin += inputs[r]->rows();
      }
    }
    return results;
  } catch (const Ort::Exception& e) {
    // One request's data may be what the batch failed on: each runs alone, and only that one
    // fails.
    if (inputs.size() > 1) return run_each();
    // ONNX Runtime checks what the graph's own shape inference could not; the request's data
    // is what it refused.
    results.push_back(
        Status::InvalidArgument(std::string("the model refused the input: ") + e.what()));
    return results;
  }
}

}  // namespace kiln::predict
