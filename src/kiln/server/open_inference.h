// The Open Inference Protocol (KServe's v2 REST protocol, served by Triton, KServe and Seldon)
// over a predictive model: what an infer request asks and what its reply holds, in JSON and with
// the binary tensor data extension. PredictServer routes /v2 here.
//
// A request: {"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "parameters"?,
// "data"?}], "outputs"?: [{"name", "parameters"?}]}; with an Inference-Header-Content-Length
// header, the JSON is that many bytes and each input whose parameters hold binary_data_size takes
// that many bytes of what follows, in order. A reply: {"model_name", "id"?, "outputs": [{"name",
// "datatype", "shape", "data" | "parameters": {"binary_data_size"}}]}, binary data after the JSON
// for the outputs asked for so (parameters.binary_data on the output, or binary_data_output on
// the request). ONNX-ML's sequences and maps, which are not tensors, go as BYTES: one JSON text a
// row.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/predict/predictive_model.h"
#include "kiln/server/http_server.h"

namespace kiln::server::oip {

// The protocol's name of an ONNX type: tensor(float) -> FP32, ...; BYTES for strings and for
// what is not a tensor.
std::string Datatype(const std::string& onnx_type);

struct InferRequest {
  std::string id;
  predict::PredictInput input;
  // The outputs asked for, by index into the model's outputs, each with whether it goes as binary
  // data.
  std::vector<std::pair<size_t, bool>> outputs;
};

// Parses an infer request for `model`. `header_length` is the Inference-Header-Content-Length
// header ("" when absent). InvalidArgument saying what is wrong.
Result<InferRequest> ParseInferRequest(const predict::PredictiveModel& model, std::string_view body,
                                       std::string_view header_length);

// The reply to `request` from its outputs (PredictOutput::outputs, keyed "<name>_<index>").
HttpResponse InferResponse(const predict::PredictiveModel& model, const std::string& model_name,
                           const InferRequest& request, const nlohmann::ordered_json& outputs);

// GET /v2/models/{name}: {"name", "versions", "platform", "inputs", "outputs"}.
nlohmann::ordered_json ModelMetadata(const predict::PredictiveModel& model,
                                     const std::string& model_name);

// An error reply as the protocol has it: {"error": "..."}.
// Splits /v2/models/{name}[/versions/{version}]{rest} into the name and the rest ("", "/ready",
// "/infer", ...); false for a path not under /v2/models/.
bool SplitModelPath(const std::string& path, std::string* name, std::string* rest);

HttpResponse Error(int status, const std::string& message);

}  // namespace kiln::server::oip
