#include "kiln/catalog/catalog.h"

#include <gtest/gtest.h>

#include <string>

namespace kiln::catalog {
namespace {

using json = nlohmann::json;

// Three entries as Foundry Local on Azure Local documents its catalog.json (its ConfigMap), word
// for word: a CPU and a CUDA variant of one alias, and a vllm entry without variants.
const char* kFoundryCatalog = R"json({"models": [
{
  "id": "Phi-4-mini-instruct-generic-cpu:5",
  "alias": "phi-4-mini",
  "displayName": "Phi-4-mini-instruct-generic-cpu",
  "publisher": "Microsoft",
  "license": "MIT",
  "task": "chat-completion",
  "source": "foundry-local",
  "framework": "ONNX",
  "modelVersion": "5",
  "variants": [
    {
      "id": "Phi-4-mini-instruct-generic-cpu:5",
      "compute": "cpu",
      "executionProvider": "CPUExecutionProvider",
      "fileSizeBytes": 5153960755
    }
  ],
  "supportedCompute": ["cpu"]
},
{
  "id": "Phi-4-mini-instruct-cuda-gpu:5",
  "alias": "phi-4-mini",
  "displayName": "Phi-4-mini-instruct-cuda-gpu",
  "publisher": "Microsoft",
  "license": "MIT",
  "task": "chat-completion",
  "source": "foundry-local",
  "framework": "ONNX",
  "modelVersion": "5",
  "variants": [
    {
      "id": "Phi-4-mini-instruct-cuda-gpu:5",
      "compute": "gpu",
      "executionProvider": "CUDAExecutionProvider",
      "fileSizeBytes": 3865470566
    }
  ],
  "supportedCompute": ["gpu"]
},
{
  "id": "Phi-4-mini-instruct:1",
  "alias": "Phi-4-mini-instruct",
  "displayName": "Phi-4-mini-instruct",
  "publisher": "Microsoft",
  "license": "MIT",
  "task": "chat-completion",
  "source": "foundry",
  "framework": "vllm",
  "modelVersion": "1",
  "variants": [],
  "supportedCompute": []
}
]})json";

Catalog Foundry() {
  Result<Catalog> c = Catalog::Parse(json::parse(kFoundryCatalog), "foundry.json");
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? std::move(c).value() : Catalog();
}

// A catalog of entries named by alias, device and version, for the resolution table.
Catalog Versions() {
  json models = json::array();
  auto add = [&](const char* id, const char* alias, const char* version, json compute) {
    models.push_back({{"id", id},
                      {"alias", alias},
                      {"framework", "vllm"},
                      {"modelVersion", version},
                      {"supportedCompute", compute}});
  };
  add("tiny-cpu:2", "tiny", "2", {"cpu"});
  add("tiny-cpu:10", "tiny", "10", {"cpu"});
  add("tiny-gpu:3", "tiny", "3", {"gpu"});
  add("big-gpu:1", "big", "1", {"gpu"});
  Result<Catalog> c = Catalog::Parse({{"models", models}}, "versions.json");
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? std::move(c).value() : Catalog();
}

TEST(CatalogTest, FoundryEntriesLoadUnchanged) {
  Catalog c = Foundry();
  ASSERT_EQ(c.entries().size(), 3u);
  const Entry& cpu = c.entries()[0];
  EXPECT_EQ(cpu.id, "Phi-4-mini-instruct-generic-cpu:5");
  EXPECT_EQ(cpu.alias, "phi-4-mini");
  EXPECT_EQ(cpu.framework, "onnx");
  EXPECT_EQ(cpu.Runtime(), "onnx-genai");
  ASSERT_EQ(cpu.variants.size(), 1u);
  EXPECT_EQ(cpu.variants[0].file_size_bytes, 5153960755);
  EXPECT_EQ(cpu.variants[0].execution_provider, "CPUExecutionProvider");
  EXPECT_EQ(c.entries()[2].Runtime(), "vllm");
  EXPECT_EQ(c.entries()[2].source, "foundry");
}

TEST(CatalogTest, ErrorsNameTheEntryAndTheField) {
  struct Case {
    json models;
    std::string needle;
  };
  const Case cases[] = {
      {json::array({{{"alias", "a"}, {"framework", "vllm"}}}), "models[0]: 'id' is missing"},
      {json::array({{{"id", "x:1"}, {"alias", "a"}, {"framework", "tensorrt"}}}),
       "models[0] ('x:1'): 'framework' is 'tensorrt'"},
      {json::array(
           {{{"id", "x:1"}, {"alias", "a"}, {"framework", "vllm"}, {"supportedCompute", {"npu"}}}}),
       "'supportedCompute' holds \"cpu\" and \"gpu\" only"},
      {json::array({{{"id", "x:1"},
                     {"alias", "a"},
                     {"framework", "ONNX"},
                     {"variants", {{{"fileSizeBytes", -3}}}}}}),
       "'fileSizeBytes' must be a non-negative integer"},
      {json::array({{{"id", "x:1"}, {"alias", 7}, {"framework", "ONNX"}}}),
       "'alias' must be a string"},
  };
  for (const Case& c : cases) {
    Result<Catalog> parsed = Catalog::Parse({{"models", c.models}}, "bad.json");
    ASSERT_FALSE(parsed.ok()) << c.needle;
    EXPECT_NE(parsed.status().message().find("bad.json: "), std::string::npos);
    EXPECT_NE(parsed.status().message().find(c.needle), std::string::npos)
        << parsed.status().message();
  }
  EXPECT_FALSE(Catalog::Parse(json::object(), "empty.json").ok());
}

TEST(CatalogTest, ResolutionFollowsHardwareCacheAndVersion) {
  const Catalog foundry = Foundry();
  const Catalog versions = Versions();
  struct Case {
    const Catalog* catalog;
    const char* name;
    bool cuda;
    const char* cached;  // "" for none
    const char* device;
    const char* want;  // an id, or the start of an error
  };
  const Case table[] = {
      // Hardware: a CUDA GPU before the CPU; --device overrides.
      {&foundry, "phi-4-mini", false, "", "", "Phi-4-mini-instruct-generic-cpu:5"},
      {&foundry, "phi-4-mini", true, "", "", "Phi-4-mini-instruct-cuda-gpu:5"},
      {&foundry, "phi-4-mini", true, "", "cpu", "Phi-4-mini-instruct-generic-cpu:5"},
      {&foundry, "phi-4-mini", false, "", "gpu", "error: 'phi-4-mini' was asked for on the GPU"},
      // Names: alias, id and display name, in any case.
      {&foundry, "PHI-4-MINI", false, "", "", "Phi-4-mini-instruct-generic-cpu:5"},
      {&foundry, "Phi-4-mini-instruct-cuda-gpu:5", true, "", "", "Phi-4-mini-instruct-cuda-gpu:5"},
      {&foundry, "phi-4-mini-instruct", false, "", "", "Phi-4-mini-instruct:1"},
      // An entry that states no compute runs anywhere (Kiln's vllm runs on the CPU too).
      {&foundry, "Phi-4-mini-instruct:1", true, "", "", "Phi-4-mini-instruct:1"},
      // Versions: the newest (as numbers: 10 after 2), unless an older one is cached.
      {&versions, "tiny", false, "", "", "tiny-cpu:10"},
      {&versions, "tiny", false, "tiny-cpu:2", "", "tiny-cpu:2"},
      {&versions, "tiny", true, "tiny-cpu:10", "", "tiny-gpu:3"},
      // Contradictions and unknown names.
      {&versions, "big", false, "", "", "error: 'big' has no variant for the CPU"},
      {&versions, "big", true, "", "cpu", "error: 'big' has no variant for the cpu"},
      {&versions, "huge", false, "", "",
       "error: no model 'huge' in the catalog (aliases: big, tiny)"},
  };
  for (const Case& c : table) {
    ResolveContext ctx;
    ctx.has_cuda_gpu = c.cuda;
    ctx.device = c.device;
    if (*c.cached) ctx.cached_ids.insert(c.cached);
    Result<Entry> got = Resolve(*c.catalog, c.name, ctx);
    const std::string want = c.want;
    const std::string label = std::string(c.name) + (c.cuda ? " cuda" : " no-cuda") +
                              " cached=" + c.cached + " device=" + c.device;
    if (want.rfind("error: ", 0) == 0) {
      ASSERT_FALSE(got.ok()) << label << " resolved to " << got->id;
      EXPECT_NE(got.status().message().find(want.substr(7)), std::string::npos)
          << label << ": " << got.status().message();
    } else {
      ASSERT_TRUE(got.ok()) << label << ": " << got.status().message();
      EXPECT_EQ(got->id, want) << label;
    }
  }
}

TEST(CatalogTest, LaterCatalogsOverrideEntriesById) {
  Catalog c = Foundry();
  Result<Catalog> mine =
      Catalog::Parse(json::array({{{"id", "Phi-4-mini-instruct:1"},
                                   {"alias", "phi-4-mini-vllm"},
                                   {"framework", "vllm"},
                                   {"uri", "models/phi"}},
                                  {{"id", "new:1"}, {"alias", "new"}, {"framework", "ONNX"}}}),
                     "mine.json");
  ASSERT_TRUE(mine.ok()) << mine.status().message();
  c.Merge(*mine);
  ASSERT_EQ(c.entries().size(), 4u);
  EXPECT_EQ(c.entries()[2].alias, "phi-4-mini-vllm");
  EXPECT_EQ(c.entries()[2].uri, "models/phi");
  EXPECT_EQ(c.entries()[3].id, "new:1");
}

TEST(CatalogTest, TheBuiltinCatalogHasTheDefaultModelInBothRuntimes) {
  const Catalog& c = Catalog::Builtin();
  ASSERT_GE(c.entries().size(), 2u);
  Result<Entry> onnx = Resolve(c, "smollm2-135m", {});
  Result<Entry> vllm = Resolve(c, "smollm2-135m-vllm", {});
  ASSERT_TRUE(onnx.ok() && vllm.ok());
  EXPECT_EQ(onnx->Runtime(), "onnx-genai");
  EXPECT_EQ(onnx->uri, "models/smollm2-135m-instruct");
  EXPECT_EQ(vllm->Runtime(), "vllm");
  EXPECT_EQ(vllm->uri, "models/smollm2-135m-instruct.gguf");
  // Every entry round-trips through its JSON.
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (const Entry& e : c.entries()) all.push_back(e.ToJson());
  Result<Catalog> again = Catalog::Parse(json::parse(all.dump()), "round trip");
  ASSERT_TRUE(again.ok()) << again.status().message();
  ASSERT_EQ(again->entries().size(), c.entries().size());
  for (size_t i = 0; i < c.entries().size(); ++i) {
    EXPECT_EQ(again->entries()[i].ToJson(), c.entries()[i].ToJson());
  }
}

}  // namespace
}  // namespace kiln::catalog
