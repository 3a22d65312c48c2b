#include "kiln/executors/onnx/ort_session.h"

#include <onnxruntime_cxx_api.h>

#include <cstring>
#include <mutex>

namespace kiln::onnx {

// One ONNX Runtime environment per process, shared by every session.
Ort::Env& SharedOrtEnvironment() {
  static std::once_flag once;
  static std::unique_ptr<Ort::Env> env;
  std::call_once(once, [] { env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "kiln"); });
  return *env;
}

namespace {

ONNXTensorElementDataType ToOrt(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case ElementType::kFloat16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case ElementType::kBFloat16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
    case ElementType::kInt32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case ElementType::kInt64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case ElementType::kUint8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case ElementType::kInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case ElementType::kBool:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

Result<ElementType> FromOrt(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return ElementType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return ElementType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return ElementType::kBFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return ElementType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return ElementType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return ElementType::kUint8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return ElementType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return ElementType::kBool;
    default:
      return Status::Unsupported("ONNX tensor element type " + std::to_string(type));
  }
}

}  // namespace

const char* ElementTypeName(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
      return "float32";
    case ElementType::kFloat16:
      return "float16";
    case ElementType::kBFloat16:
      return "bfloat16";
    case ElementType::kInt32:
      return "int32";
    case ElementType::kInt64:
      return "int64";
    case ElementType::kUint8:
      return "uint8";
    case ElementType::kInt8:
      return "int8";
    case ElementType::kBool:
      return "bool";
  }
  return "unknown";
}

size_t ElementSize(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
    case ElementType::kInt32:
      return 4;
    case ElementType::kFloat16:
    case ElementType::kBFloat16:
      return 2;
    case ElementType::kInt64:
      return 8;
    case ElementType::kUint8:
    case ElementType::kInt8:
    case ElementType::kBool:
      return 1;
  }
  return 0;
}

int64_t HostTensor::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string RuntimeVersion() { return Ort::GetVersionString(); }

struct OrtSession::Impl {
  Ort::Session session{nullptr};
};

OrtSession::OrtSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OrtSession::~OrtSession() = default;

Result<std::unique_ptr<OrtSession>> OrtSession::Load(const std::string& path,
                                                     const SessionOptions& options) {
  try {
    Ort::SessionOptions so;
    if (options.intra_op_threads > 0) so.SetIntraOpNumThreads(options.intra_op_threads);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    auto impl = std::make_unique<Impl>();
    impl->session = Ort::Session(SharedOrtEnvironment(), path.c_str(), so);
    std::unique_ptr<OrtSession> session(new OrtSession(std::move(impl)));
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::Session& s = session->impl_->session;
    for (size_t i = 0; i < s.GetInputCount(); ++i) {
      session->input_names_.push_back(s.GetInputNameAllocated(i, allocator).get());
    }
    for (size_t i = 0; i < s.GetOutputCount(); ++i) {
      session->output_names_.push_back(s.GetOutputNameAllocated(i, allocator).get());
    }
    return session;
  } catch (const Ort::Exception& e) {
    return Status::InvalidArgument(path + ": ONNX Runtime cannot load the model: " + e.what());
  }
}

Result<std::map<std::string, HostTensor>> OrtSession::Run(
    const std::map<std::string, HostTensor>& inputs) {
  try {
    Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<Ort::Value> values;
    std::vector<const char*> names;
    for (const std::string& name : input_names_) {
      auto it = inputs.find(name);
      if (it == inputs.end()) return Status::InvalidArgument("missing model input '" + name + "'");
      const HostTensor& t = it->second;
      size_t want = static_cast<size_t>(t.element_count()) * ElementSize(t.type);
      if (t.data.size() != want) {
        return Status::InvalidArgument("input '" + name + "' holds " +
                                       std::to_string(t.data.size()) + " bytes, its shape needs " +
                                       std::to_string(want));
      }
      values.push_back(Ort::Value::CreateTensor(memory, const_cast<uint8_t*>(t.data.data()),
                                                t.data.size(), t.shape.data(), t.shape.size(),
                                                ToOrt(t.type)));
      names.push_back(name.c_str());
    }
    std::vector<const char*> out_names;
    for (const std::string& name : output_names_) out_names.push_back(name.c_str());
    std::vector<Ort::Value> outputs =
        impl_->session.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(),
                           out_names.data(), out_names.size());
    std::map<std::string, HostTensor> result;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (!outputs[i].IsTensor()) continue;  // optional outputs that were not produced
      auto info = outputs[i].GetTensorTypeAndShapeInfo();
      HostTensor t;
      KILN_ASSIGN_OR_RETURN(t.type, FromOrt(info.GetElementType()));
      t.shape = info.GetShape();
      size_t bytes = info.GetElementCount() * ElementSize(t.type);
      t.data.resize(bytes);
      if (bytes > 0) std::memcpy(t.data.data(), outputs[i].GetTensorRawData(), bytes);
      result.emplace(output_names_[i], std::move(t));
    }
    return result;
  } catch (const Ort::Exception& e) {
    return Status::InvalidArgument(std::string("ONNX Runtime run failed: ") + e.what());
  }
}

}  // namespace kiln::onnx
