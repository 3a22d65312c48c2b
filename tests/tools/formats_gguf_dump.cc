// formats_gguf_dump: exposes Kiln's GGUF reader to the Python tests, which compare it with the
// `gguf` package.
//
//   formats_gguf_dump meta <file.gguf>
//       Prints one JSON object: version, alignment, data_offset, metadata (key -> value) and
//       tensors (name, dims, type, offset, n_bytes). Strings are hex-encoded bytes, so invalid
//       UTF-8 in a vocabulary compares exactly.
//   formats_gguf_dump dequant <file.gguf> <out.f32> <tensor>...
//       Dequantizes each named tensor to f32 and writes them, concatenated, to out.f32.
//   formats_gguf_dump check <file>
//       Opens the file; prints "ok" or the error and exits 1.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/formats/gguf.h"

namespace {

using kiln::gguf::Value;
using kiln::gguf::ValueType;

std::string Hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

nlohmann::ordered_json ValueJson(const Value& v) {
  switch (v.type) {
    case ValueType::kUint8:
    case ValueType::kUint16:
    case ValueType::kUint32:
    case ValueType::kUint64:
      return v.u;
    case ValueType::kBool:
      return v.u != 0;
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64:
      return v.i;
    case ValueType::kFloat32:
    case ValueType::kFloat64:
      return v.f;
    case ValueType::kString:
      return Hex(v.s);
    case ValueType::kArray: {
      nlohmann::ordered_json a = nlohmann::ordered_json::array();
      for (const Value& e : v.array) a.push_back(ValueJson(e));
      return a;
    }
  }
  return nullptr;
}

int Meta(const kiln::gguf::GgufFile& g) {
  nlohmann::ordered_json out;
  out["version"] = g.version();
  out["alignment"] = g.alignment();
  out["data_offset"] = g.data_offset();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& e : g.metadata()) {
    meta[e.key] = {{"type", static_cast<int>(e.value.type)},
                   {"array_type", static_cast<int>(e.value.array_type)},
                   {"value", ValueJson(e.value)}};
  }
  out["metadata"] = std::move(meta);
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& t : g.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"dims", t.dims},
                       {"type", static_cast<int>(t.type)},
                       {"offset", t.offset},
                       {"n_elements", t.n_elements},
                       {"n_bytes", t.n_bytes}});
  }
  out["tensors"] = std::move(tensors);
  std::string text = out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

int Dequant(const kiln::gguf::GgufFile& g, const std::string& out_path,
            const std::vector<std::string>& names) {
  std::ofstream out(out_path, std::ios::binary);
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
    return 1;
  }
  std::vector<float> buf;
  for (const std::string& name : names) {
    const kiln::gguf::TensorInfo* t = g.FindTensor(name);
    if (t == nullptr) {
      std::fprintf(stderr, "no tensor %s\n", name.c_str());
      return 1;
    }
    buf.resize(t->n_elements);
    kiln::Status s =
        kiln::gguf::DequantizeToF32(t->type, g.TensorData(*t), t->n_elements, buf.data());
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), s.ToString().c_str());
      return 1;
    }
    out.write(reinterpret_cast<const char*>(buf.data()),
              static_cast<std::streamsize>(buf.size() * sizeof(float)));
  }
  return out ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s meta|dequant|check <file.gguf> ...\n", argv[0]);
    return 2;
  }
  std::string cmd = argv[1];
  auto g = kiln::gguf::GgufFile::Open(argv[2]);
  if (!g.ok()) {
    std::fprintf(stderr, "%s\n", g.status().ToString().c_str());
    return 1;
  }
  if (cmd == "check") {
    std::printf("ok\n");
    return 0;
  }
  if (cmd == "meta") return Meta(*g);
  if (cmd == "dequant" && argc >= 4) {
    return Dequant(*g, argv[3], std::vector<std::string>(argv + 4, argv + argc));
  }
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
