// Kiln's built-in catalog: the default model in both frameworks, served from the files setup puts
// in the model store, and popular models at their public sources (fetching those is not built
// yet). File sizes are stated only where Foundry Local's own catalog publishes them.
#include "kiln/catalog/catalog.h"

namespace kiln::catalog {
namespace {

constexpr const char* kBuiltin = R"json({"models": [
{
  "id": "smollm2-135m-instruct-generic-cpu:1", "alias": "smollm2-135m",
  "displayName": "SmolLM2-135M-Instruct (ONNX Runtime GenAI, CPU)",
  "publisher": "HuggingFaceTB", "license": "Apache-2.0", "task": "chat-completion",
  "source": "kiln", "framework": "ONNX", "modelVersion": "1",
  "variants": [{"id": "smollm2-135m-instruct-generic-cpu:1", "compute": "cpu",
                "executionProvider": "CPUExecutionProvider"}],
  "supportedCompute": ["cpu"],
  "uri": "models/smollm2-135m-instruct", "contextLength": 8192, "supportsToolCalling": true
},
{
  "id": "smollm2-135m-instruct-vllm-cpu:1", "alias": "smollm2-135m-vllm",
  "displayName": "SmolLM2-135M-Instruct (vllm runtime, Q4_1 GGUF)",
  "publisher": "HuggingFaceTB", "license": "Apache-2.0", "task": "chat-completion",
  "source": "kiln", "framework": "vllm", "modelVersion": "1",
  "variants": [{"id": "smollm2-135m-instruct-vllm-cpu:1", "compute": "cpu",
                "executionProvider": "kiln-native-cpu"}],
  "supportedCompute": ["cpu"],
  "uri": "models/smollm2-135m-instruct.gguf", "contextLength": 8192, "supportsToolCalling": true
},
{
  "id": "Phi-4-mini-instruct-generic-cpu:5", "alias": "phi-4-mini",
  "displayName": "Phi-4-mini-instruct-generic-cpu", "publisher": "Microsoft", "license": "MIT",
  "task": "chat-completion", "source": "foundry-local", "framework": "ONNX", "modelVersion": "5",
  "variants": [{"id": "Phi-4-mini-instruct-generic-cpu:5", "compute": "cpu",
                "executionProvider": "CPUExecutionProvider", "fileSizeBytes": 5153960755}],
  "supportedCompute": ["cpu"],
  "uri": "hf://microsoft/Phi-4-mini-instruct-onnx", "contextLength": 131072,
  "supportsToolCalling": true
},
{
  "id": "Phi-4-mini-instruct-cuda-gpu:5", "alias": "phi-4-mini",
  "displayName": "Phi-4-mini-instruct-cuda-gpu", "publisher": "Microsoft", "license": "MIT",
  "task": "chat-completion", "source": "foundry-local", "framework": "ONNX", "modelVersion": "5",
  "variants": [{"id": "Phi-4-mini-instruct-cuda-gpu:5", "compute": "gpu",
                "executionProvider": "CUDAExecutionProvider", "fileSizeBytes": 3865470566}],
  "supportedCompute": ["gpu"],
  "uri": "hf://microsoft/Phi-4-mini-instruct-onnx", "contextLength": 131072,
  "supportsToolCalling": true
},
{
  "id": "Qwen2.5-0.5B-Instruct-vllm:1", "alias": "qwen2.5-0.5b", "displayName": "Qwen2.5-0.5B-Instruct",
  "publisher": "Qwen", "license": "Apache-2.0", "task": "chat-completion", "source": "kiln",
  "framework": "vllm", "modelVersion": "1", "variants": [], "supportedCompute": ["cpu", "gpu"],
  "uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "contextLength": 32768, "supportsToolCalling": true
},
{
  "id": "Qwen2.5-1.5B-Instruct-vllm:1", "alias": "qwen2.5-1.5b", "displayName": "Qwen2.5-1.5B-Instruct",
  "publisher": "Qwen", "license": "Apache-2.0", "task": "chat-completion", "source": "kiln",
  "framework": "vllm", "modelVersion": "1", "variants": [], "supportedCompute": ["cpu", "gpu"],
  "uri": "hf://Qwen/Qwen2.5-1.5B-Instruct", "contextLength": 32768, "supportsToolCalling": true
},
{
  "id": "Qwen2.5-7B-Instruct-vllm:1", "alias": "qwen2.5-7b", "displayName": "Qwen2.5-7B-Instruct",
  "publisher": "Qwen", "license": "Apache-2.0", "task": "chat-completion", "source": "kiln",
  "framework": "vllm", "modelVersion": "1", "variants": [], "supportedCompute": ["cpu", "gpu"],
  "uri": "hf://Qwen/Qwen2.5-7B-Instruct", "contextLength": 32768, "supportsToolCalling": true
},
{
  "id": "Llama-3.2-1B-Instruct-vllm:1", "alias": "llama-3.2-1b", "displayName": "Llama-3.2-1B-Instruct",
  "publisher": "Meta", "license": "Llama 3.2 Community License", "task": "chat-completion",
  "source": "kiln", "framework": "vllm", "modelVersion": "1", "variants": [],
  "supportedCompute": ["cpu", "gpu"], "uri": "hf://meta-llama/Llama-3.2-1B-Instruct",
  "contextLength": 131072, "supportsToolCalling": true
},
{
  "id": "Llama-3.2-3B-Instruct-vllm:1", "alias": "llama-3.2-3b", "displayName": "Llama-3.2-3B-Instruct",
  "publisher": "Meta", "license": "Llama 3.2 Community License", "task": "chat-completion",
  "source": "kiln", "framework": "vllm", "modelVersion": "1", "variants": [],
  "supportedCompute": ["cpu", "gpu"], "uri": "hf://meta-llama/Llama-3.2-3B-Instruct",
  "contextLength": 131072, "supportsToolCalling": true
},
{
  "id": "Mistral-7B-Instruct-v0.3-vllm:1", "alias": "mistral-7b",
  "displayName": "Mistral-7B-Instruct-v0.3", "publisher": "Mistral AI", "license": "Apache-2.0",
  "task": "chat-completion", "source": "kiln", "framework": "vllm", "modelVersion": "1",
  "variants": [], "supportedCompute": ["cpu", "gpu"],
  "uri": "hf://mistralai/Mistral-7B-Instruct-v0.3", "contextLength": 32768,
  "supportsToolCalling": true
}
]})json";

}  // namespace

const Catalog& Catalog::Builtin() {
  static const Catalog builtin = [] {
    Result<Catalog> c = Parse(nlohmann::json::parse(kBuiltin), "the built-in catalog");
    return c.ok() ? std::move(c).value() : Catalog();
  }();
  return builtin;
}

}  // namespace kiln::catalog
