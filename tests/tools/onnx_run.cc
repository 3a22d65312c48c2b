// onnx_run MODEL.onnx IN_DIR OUT_DIR
//
// Runs MODEL through Kiln's ONNX Runtime session with inputs read from IN_DIR/<input>.npy and
// writes every output to OUT_DIR/<output>.npy. Tests use it to check ONNX Runtime's operators
// against numpy references. Prints the runtime version on stdout.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "kiln/executors/onnx/ort_session.h"

namespace {

using kiln::Result;
using kiln::Status;
using kiln::onnx::ElementType;
using kiln::onnx::HostTensor;

Result<ElementType> TypeFromDescr(const std::string& descr) {
  if (descr == "<f4") return ElementType::kFloat32;
  if (descr == "<f2") return ElementType::kFloat16;
  if (descr == "<i4") return ElementType::kInt32;
  if (descr == "<i8") return ElementType::kInt64;
  if (descr == "|u1") return ElementType::kUint8;
  if (descr == "|i1") return ElementType::kInt8;
  if (descr == "|b1") return ElementType::kBool;
  return Status::Unsupported("npy dtype " + descr);
}

const char* DescrFromType(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
      return "<f4";
    case ElementType::kFloat16:
      return "<f2";
    case ElementType::kInt32:
      return "<i4";
    case ElementType::kInt64:
      return "<i8";
    case ElementType::kUint8:
      return "|u1";
    case ElementType::kInt8:
      return "|i1";
    case ElementType::kBool:
      return "|b1";
    case ElementType::kBFloat16:
      return "<V2";
  }
  return "?";
}

// Reads a version 1.0 .npy file (C order, little endian) as numpy.save writes it.
Result<HostTensor> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0) {
    return Status::InvalidArgument(path + ": not an npy file");
  }
  size_t header_len = static_cast<uint8_t>(all[8]) | (static_cast<uint8_t>(all[9]) << 8);
  std::string header = all.substr(10, header_len);
  auto field = [&](const std::string& key) {
    size_t p = header.find("'" + key + "':");
    return p == std::string::npos ? std::string() : header.substr(p + key.size() + 3);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").rfind(" False", 0) != 0) {
    return Status::Unsupported(path + ": Fortran order");
  }
  HostTensor t;
  KILN_ASSIGN_OR_RETURN(t.type, TypeFromDescr(descr));
  std::string shape = field("shape");
  shape = shape.substr(shape.find('(') + 1, shape.find(')') - shape.find('(') - 1);
  std::stringstream ss(shape);
  std::string dim;
  while (std::getline(ss, dim, ',')) {
    if (dim.find_first_not_of(' ') != std::string::npos) t.shape.push_back(std::stoll(dim));
  }
  size_t bytes = static_cast<size_t>(t.element_count()) * kiln::onnx::ElementSize(t.type);
  if (all.size() < 10 + header_len + bytes) return Status::InvalidArgument(path + ": truncated");
  t.data.assign(all.begin() + 10 + header_len, all.begin() + 10 + header_len + bytes);
  return t;
}

Status WriteNpy(const std::string& path, const HostTensor& t) {
  std::string shape;  // numpy's tuple syntax: "()", "(4,)", "(2, 3)"
  for (size_t i = 0; i < t.shape.size(); ++i) {
    shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  }
  if (t.shape.size() == 1) shape += ",";
  std::string header = std::string("{'descr': '") + DescrFromType(t.type) +
                       "', 'fortran_order': False, 'shape': (" + shape + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::IoError(path + ": cannot create");
  out.write("\x93NUMPY\x01\x00", 8);
  char len[2] = {static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(t.data.data()),
            static_cast<std::streamsize>(t.data.size()));
  return out ? Status::Ok() : Status::IoError(path + ": write failed");
}

int Fail(const Status& s) {
  std::fprintf(stderr, "onnx_run: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: onnx_run MODEL.onnx IN_DIR OUT_DIR\n");
    return 2;
  }
  std::printf("onnxruntime %s\n", kiln::onnx::RuntimeVersion().c_str());
  auto session = kiln::onnx::OrtSession::Load(argv[1], {.intra_op_threads = 1});
  if (!session.ok()) return Fail(session.status());
  std::map<std::string, HostTensor> inputs;
  for (const std::string& name : (*session)->input_names()) {
    auto t = ReadNpy(std::string(argv[2]) + "/" + name + ".npy");
    if (!t.ok()) return Fail(t.status());
    inputs.emplace(name, std::move(t).value());
  }
  auto outputs = (*session)->Run(inputs);
  if (!outputs.ok()) return Fail(outputs.status());
  for (const auto& [name, tensor] : *outputs) {
    Status s = WriteNpy(std::string(argv[3]) + "/" + name + ".npy", tensor);
    if (!s.ok()) return Fail(s);
  }
  return 0;
}
