#include "kiln/server/open_inference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "kiln/base/half.h"

namespace kiln::server::oip {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

const std::map<std::string, std::string>& Datatypes() {
  static const std::map<std::string, std::string> types = {
      {"tensor(bool)", "BOOL"},     {"tensor(uint8)", "UINT8"},   {"tensor(uint16)", "UINT16"},
      {"tensor(uint32)", "UINT32"}, {"tensor(uint64)", "UINT64"}, {"tensor(int8)", "INT8"},
      {"tensor(int16)", "INT16"},   {"tensor(int32)", "INT32"},   {"tensor(int64)", "INT64"},
      {"tensor(float16)", "FP16"},  {"tensor(float)", "FP32"},    {"tensor(double)", "FP64"},
      {"tensor(bfloat16)", "BF16"}, {"tensor(string)", "BYTES"}};
  return types;
}

std::vector<int64_t> NestedShape(const ojson& j) {
  std::vector<int64_t> shape;
  const ojson* at = &j;
  while (at->is_array()) {
    shape.push_back(static_cast<int64_t>(at->size()));
    if (at->empty()) break;
    at = &(*at)[0];
  }
  return shape;
}

void Leaves(const ojson& j, std::vector<const ojson*>& out) {
  if (!j.is_array()) {
    out.push_back(&j);
    return;
  }
  for (const ojson& e : j) Leaves(e, out);
}

// One element as the datatype's little-endian bytes.
void AppendBinary(const std::string& datatype, const ojson& v, std::string& out) {
  auto put = [&](auto x) { out.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
  if (datatype == "FP32") return put(static_cast<float>(v.is_null() ? NAN : v.get<double>()));
  if (datatype == "FP64") return put(v.is_null() ? double(NAN) : v.get<double>());
  if (datatype == "FP16")
    return put(FloatToFp16(static_cast<float>(v.is_null() ? NAN : v.get<double>())));
  if (datatype == "BF16")
    return put(FloatToBf16(static_cast<float>(v.is_null() ? NAN : v.get<double>())));
  if (datatype == "BOOL") return put(static_cast<uint8_t>(v.get<bool>() ? 1 : 0));
  if (datatype == "INT8") return put(v.get<int8_t>());
  if (datatype == "UINT8") return put(v.get<uint8_t>());
  if (datatype == "INT16") return put(v.get<int16_t>());
  if (datatype == "UINT16") return put(v.get<uint16_t>());
  if (datatype == "INT32") return put(v.get<int32_t>());
  if (datatype == "UINT32") return put(v.get<uint32_t>());
  if (datatype == "INT64") return put(v.get<int64_t>());
  if (datatype == "UINT64") return put(v.get<uint64_t>());
  // BYTES: a 4-byte length, then the bytes.
  const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  put(static_cast<uint32_t>(s.size()));
  out += s;
}

}  // namespace

std::string Datatype(const std::string& onnx_type) {
  auto it = Datatypes().find(onnx_type);
  return it == Datatypes().end() ? "BYTES" : it->second;
}

HttpResponse Error(int status, const std::string& message) {
  return {status, "application/json", json{{"error", message}}.dump(), {}};
}

Result<InferRequest> ParseInferRequest(const predict::PredictiveModel& model, std::string_view body,
                                       std::string_view header_length) {
  std::string_view head = body;
  std::string_view binary;
  if (!header_length.empty()) {
    size_t n = 0;
    for (char c : header_length) {
      if (c < '0' || c > '9' || n > body.size()) {
        return Status::InvalidArgument("Inference-Header-Content-Length '" +
                                       std::string(header_length) + "' is not a length");
      }
      n = n * 10 + static_cast<size_t>(c - '0');
    }
    if (n > body.size()) {
      return Status::InvalidArgument("Inference-Header-Content-Length " + std::to_string(n) +
                                     " is past the body's " + std::to_string(body.size()) +
                                     " bytes");
    }
    head = body.substr(0, n);
    binary = body.substr(n);
  }
  json j = json::parse(head, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument("the inference request is not a JSON object");
  }
  InferRequest request;
  if (j.contains("id")) {
    if (!j["id"].is_string()) return Status::InvalidArgument("'id' must be a string");
    request.id = j["id"].get<std::string>();
  }
  if (!j.contains("inputs") || !j["inputs"].is_array()) {
    return Status::InvalidArgument("'inputs' must be an array of tensors");
  }
  const predict::ValueInfo& want = model.input();
  if (j["inputs"].size() != 1) {
    return Status::InvalidArgument("the model takes one input, '" + want.name +
                                   "'; the request "
                                   "has " +
                                   std::to_string(j["inputs"].size()));
  }
  const json& in = j["inputs"][0];
  if (!in.is_object() || !in.contains("name") || !in["name"].is_string()) {
    return Status::InvalidArgument("inputs[0] must be an object with a 'name'");
  }
  if (in["name"] != want.name) {
    return Status::InvalidArgument("inputs[0] is '" + in["name"].get<std::string>() +
                                   "'; the model's input is '" + want.name + "'");
  }
  const std::string datatype = Datatype(want.type);
  if (!in.contains("datatype") || in["datatype"] != datatype) {
    return Status::InvalidArgument("inputs[0].datatype must be " + datatype + " (the input is " +
                                   want.type + ")");
  }
  if (!in.contains("shape") || !in["shape"].is_array()) {
    return Status::InvalidArgument("inputs[0].shape must be an array of dimensions");
  }
  std::vector<int64_t> shape;
  for (const json& d : in["shape"]) {
    if (!d.is_number_integer()) return Status::InvalidArgument("inputs[0].shape must be integers");
    shape.push_back(d.get<int64_t>());
  }
  const json* params = in.contains("parameters") ? &in["parameters"] : nullptr;
  Result<predict::PredictInput> input = Status::Internal("unset");
  if (params && params->is_object() && params->contains("binary_data_size")) {
    const json& size = (*params)["binary_data_size"];
    if (!size.is_number_unsigned() || size.get<uint64_t>() > binary.size()) {
      return Status::InvalidArgument(
          "inputs[0].parameters.binary_data_size must be the bytes "
          "that follow the JSON header (" +
          std::to_string(binary.size()) + ")");
    }
    const size_t n = size.get<size_t>();
    input = model.PrepareRaw(shape, std::vector<uint8_t>(binary.begin(), binary.begin() + n));
  } else {
    if (!in.contains("data") || !in["data"].is_array()) {
      return Status::InvalidArgument(
          "inputs[0].data must be an array (or the tensor sent as "
          "binary data)");
    }
    input = model.PrepareFlat(shape, in["data"]);
  }
  if (!input.ok()) return input.status().WithContext("inputs[0]");
  request.input = std::move(input).value();

  bool all_binary = false;
  if (j.contains("parameters") && j["parameters"].is_object()) {
    all_binary = j["parameters"].value("binary_data_output", false);
  }
  const std::vector<predict::ValueInfo>& outs = model.outputs();
  if (j.contains("outputs")) {
    if (!j["outputs"].is_array()) return Status::InvalidArgument("'outputs' must be an array");
    for (const json& o : j["outputs"]) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        return Status::InvalidArgument("each of 'outputs' must be an object with a 'name'");
      }
      size_t index = 0;
      while (index < outs.size() && outs[index].name != o["name"]) ++index;
      if (index == outs.size()) {
        return Status::InvalidArgument("the model has no output '" + o["name"].get<std::string>() +
                                       "'");
      }
      bool binary_out = all_binary;
      if (o.contains("parameters") && o["parameters"].is_object()) {
        binary_out = o["parameters"].value("binary_data", binary_out);
      }
      request.outputs.emplace_back(index, binary_out);
    }
  } else {
    for (size_t i = 0; i < outs.size(); ++i) request.outputs.emplace_back(i, all_binary);
  }
  return request;
}

HttpResponse InferResponse(const predict::PredictiveModel& model, const std::string& model_name,
                           const InferRequest& request, const ojson& outputs) {
  ojson reply = {{"model_name", model_name}, {"model_version", "1"}};
  if (!request.id.empty()) reply["id"] = request.id;
  reply["outputs"] = ojson::array();
  std::string binary;
  for (const auto& [index, as_binary] : request.outputs) {
    const predict::ValueInfo& info = model.outputs()[index];
    const ojson& value = outputs.at(info.name + "_" + std::to_string(index));
    const bool tensor = info.type.rfind("tensor(", 0) == 0;
    const std::string datatype = tensor ? Datatype(info.type) : "BYTES";
    // Sequences and maps: one JSON text a row.
    std::vector<int64_t> shape =
        tensor ? NestedShape(value)
               : std::vector<int64_t>{static_cast<int64_t>(value.is_array() ? value.size() : 1)};
    std::vector<const ojson*> leaves;
    if (tensor) {
      Leaves(value, leaves);
    } else if (value.is_array()) {
      for (const ojson& e : value) leaves.push_back(&e);
    } else {
      leaves.push_back(&value);
    }
    ojson out = {{"name", info.name}, {"datatype", datatype}, {"shape", shape}};
    if (as_binary) {
      const size_t before = binary.size();
      for (const ojson* v : leaves) AppendBinary(datatype, *v, binary);
      out["parameters"] = {{"binary_data_size", binary.size() - before}};
    } else {
      ojson data = ojson::array();
      for (const ojson* v : leaves) {
        data.push_back(tensor || v->is_string() ? *v : ojson(v->dump()));
      }
      out["data"] = std::move(data);
    }
    reply["outputs"].push_back(std::move(out));
  }
  std::string head = reply.dump(-1, ' ', false, ojson::error_handler_t::replace);
  if (binary.empty() && std::none_of(request.outputs.begin(), request.outputs.end(),
                                     [](const auto& o) { return o.second; })) {
    return {200, "application/json", std::move(head), {}};
  }
  HttpResponse r{200, "application/octet-stream", head + binary, {}};
  r.headers.emplace_back("Inference-Header-Content-Length", std::to_string(head.size()));
  return r;
}

ojson ModelMetadata(const predict::PredictiveModel& model, const std::string& model_name) {
  auto tensor = [](const predict::ValueInfo& v) {
    return ojson{{"name", v.name},
                 {"datatype", v.type.rfind("tensor(", 0) == 0 ? Datatype(v.type) : "BYTES"},
                 {"shape", v.type.rfind("tensor(", 0) == 0 ? v.shape : std::vector<int64_t>{-1}}};
  };
  ojson outputs = ojson::array();
  for (const predict::ValueInfo& o : model.outputs()) outputs.push_back(tensor(o));
  return {{"name", model_name},
          {"versions", {"1"}},
          {"platform", "onnxruntime_onnx"},
          {"inputs", ojson::array({tensor(model.input())})},
          {"outputs", outputs}};
}

bool SplitModelPath(const std::string& path, std::string* name, std::string* rest) {
  const std::string prefix = "/v2/models/";
  if (path.rfind(prefix, 0) != 0) return false;
  *rest = path.substr(prefix.size());
  *name = rest->substr(0, rest->find('/'));
  *rest = rest->substr(name->size());
  if (rest->rfind("/versions/", 0) == 0) {
    const size_t end = rest->find('/', 10);
    *rest = end == std::string::npos ? "" : rest->substr(end);
  }
  return true;
}

}  // namespace kiln::server::oip
