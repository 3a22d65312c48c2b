#include "kiln/formats/genai_model_builder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <numbers>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "kiln/base/half.h"
#include "kiln/base/mapped_file.h"
#include "kiln/formats/genai_config_writer.h"
#include "kiln/formats/gguf.h"
#include "kiln/formats/gguf_to_hf.h"
#include "kiln/formats/hf_config.h"
#include "kiln/formats/onnx_proto.h"
#include "kiln/formats/safetensors.h"

namespace kiln::formats {
namespace {

namespace fs = std::filesystem;
using onnx_proto::AttributeProto;
using onnx_proto::DataType;
using onnx_proto::Dim;
using onnx_proto::NodeProto;
using onnx_proto::TensorProto;
using onnx_proto::ValueInfoProto;
using safetensors::TensorView;

constexpr char kModelFile[] = "model.onnx";
constexpr char kDataFile[] = "model.onnx.data";
// Offsets in model.onnx.data are aligned so ONNX Runtime can use mapped weights in place.
constexpr uint64_t kDataAlignment = 64;
// Rows converted to f32 at a time while streaming a weight.
constexpr int64_t kChunkElements = int64_t{1} << 20;

std::string Join(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Streams initializer bytes into model.onnx.data.
class ExternalDataWriter {
 public:
  ExternalDataWriter() = default;
  ExternalDataWriter(const ExternalDataWriter&) = delete;
  ExternalDataWriter& operator=(const ExternalDataWriter&) = delete;
  ~ExternalDataWriter() {
    if (file_) std::fclose(file_);
  }

  Status Open(const std::string& path) {
    path_ = path;
    file_ = std::fopen(path.c_str(), "wb");
    if (!file_) return Status::IoError(path + ": cannot create");
    return Status::Ok();
  }

  Status Align() {
    static const char kZeros[kDataAlignment] = {};
    uint64_t pad = (kDataAlignment - offset_ % kDataAlignment) % kDataAlignment;
    return Write(kZeros, pad);
  }

  Status Write(const void* data, size_t size) {
    if (size == 0) return Status::Ok();
    if (std::fwrite(data, 1, size, file_) != size) {
      return Status::IoError(path_ + ": write failed at byte " + std::to_string(offset_));
    }
    offset_ += size;
    return Status::Ok();
  }

  Status Close() {
    if (!file_) return Status::Ok();
    int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) return Status::IoError(path_ + ": close failed");
    return Status::Ok();
  }

  uint64_t offset() const { return offset_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t offset_ = 0;
};

// One weight of the source model in Hugging Face orientation ([out, in], or [n]), from a
// safetensors file or a GGUF tensor.
struct SourceTensor {
  std::string name;  // Hugging Face name
  std::string file;  // where it comes from, for errors
  std::vector<int64_t> shape;
  const TensorView* view = nullptr;  // safetensors
  const gguf::GgufFile* gguf = nullptr;
  const gguf::TensorInfo* info = nullptr;  // GGUF
  // GGUF attn_q / attn_k: llama.cpp interleaves the two rotary halves of each head's rows.
  int64_t rotary_heads = 0;

  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t cols() const { return shape.size() == 2 ? shape[1] : shape[0]; }

  // The bytes of Hugging Face row `row` in the GGUF tensor (whole blocks: GGUF rows are).
  std::span<const uint8_t> GgufRow(int64_t row) const {
    if (rotary_heads > 0) {
      // HF row (h, j * half + i) is GGUF row (h, 2 * i + j), as gguf_to_hf.h undoes it.
      int64_t head_dim = rows() / rotary_heads;
      int64_t half = head_dim / 2;
      int64_t h = row / head_dim;
      int64_t in_head = row % head_dim;
      row = h * head_dim + 2 * (in_head % half) + in_head / half;
    }
    gguf::BlockLayout layout = gguf::BlockLayoutOf(info->type);
    size_t row_bytes = static_cast<size_t>(cols() / layout.elements) * layout.bytes;
    return gguf->TensorData(*info).subspan(static_cast<size_t>(row) * row_bytes, row_bytes);
  }
};

// The source model's tensors, looked up by Hugging Face name with their shape checked.
class SourceWeights {
 public:
  static SourceWeights FromSafetensors(const safetensors::SafetensorsModel& model,
                                       const std::string& dir) {
    SourceWeights w;
    w.where_ = dir + ": tensor \"";
    w.missing_ = "\" not found in the safetensors files";
    for (const auto& f : model.files()) {
      for (const std::string& name : model.TensorNames()) {
        const TensorView* t = f.Find(name);
        if (!t) continue;
        SourceTensor& s = w.tensors_[name];
        s.name = name;
        s.file = f.name();
        s.shape = t->shape;
        s.view = t;
        w.parameters_ += t->n_elements;
      }
    }
    return w;
  }

  static Result<SourceWeights> FromGguf(const gguf::GgufFile& g, const ModelConfig& config) {
    SourceWeights w;
    w.where_ = g.name() + ": tensor for \"";
    w.missing_ = "\" not found";
    for (const gguf::TensorInfo& t : g.tensors()) {
      KILN_ASSIGN_OR_RETURN(std::string name, HfTensorNameForGguf(t.name));
      SourceTensor& s = w.tensors_[name];
      s.name = name;
      s.file = g.name() + ": tensor " + t.name;
      for (auto it = t.dims.rbegin(); it != t.dims.rend(); ++it) {
        s.shape.push_back(static_cast<int64_t>(*it));
      }
      s.gguf = &g;
      s.info = &t;
      if (t.name.ends_with(".attn_q.weight")) s.rotary_heads = config.num_attention_heads;
      if (t.name.ends_with(".attn_k.weight")) s.rotary_heads = config.num_key_value_heads;
      if (s.rotary_heads > 0 && (s.shape.size() != 2 || s.shape[0] % (2 * s.rotary_heads) != 0)) {
        return Status::InvalidArgument(s.file + " does not have n_head * head_dim rows");
      }
      w.parameters_ += t.n_elements;
    }
    return w;
  }

  Result<const SourceTensor*> Get(const std::string& name,
                                  const std::vector<int64_t>& shape) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return Status::InvalidArgument(where_ + name + missing_);
    const SourceTensor& t = it->second;
    if (t.shape != shape) {
      return Status::InvalidArgument(t.file + ": tensor \"" + name + "\" has shape " +
                                     Join(t.shape) + ", expected " + Join(shape) +
                                     " from config.json");
    }
    if (t.view && t.view->dtype != safetensors::Dtype::kF32 &&
        t.view->dtype != safetensors::Dtype::kF16 && t.view->dtype != safetensors::Dtype::kBF16) {
      return Status::Unsupported(t.file + ": tensor \"" + name + "\" has dtype " +
                                 safetensors::DtypeName(t.view->dtype) +
                                 "; expected F32, F16 or BF16");
    }
    if (t.info && gguf::BlockLayoutOf(t.info->type).elements == 0) {
      return Status::Unsupported(t.file + " has type " + gguf::TensorTypeName(t.info->type) +
                                 ", which Kiln cannot read");
    }
    return &t;
  }

  uint64_t parameters() const { return parameters_; }

 private:
  std::map<std::string, SourceTensor> tensors_;
  std::string where_;
  std::string missing_;
  uint64_t parameters_ = 0;
};

// Converts rows [row0, row0 + rows) of a 1-D or 2-D tensor to f32.
Status RowsToF32(const SourceTensor& t, int64_t row0, int64_t rows, float* out) {
  int64_t cols = t.cols();
  if (t.info) {
    for (int64_t r = 0; r < rows; ++r) {
      Status s = gguf::DequantizeToF32(t.info->type, t.GgufRow(row0 + r),
                                       static_cast<uint64_t>(cols), out + r * cols);
      if (!s.ok()) return s.WithContext(t.file);
    }
    return Status::Ok();
  }
  const TensorView& v = *t.view;
  size_t esize = safetensors::DtypeSize(v.dtype);
  TensorView sub;
  sub.name = v.name;
  sub.dtype = v.dtype;
  sub.shape = {rows, cols};
  sub.n_elements = static_cast<uint64_t>(rows * cols);
  sub.data = v.data.subspan(static_cast<size_t>(row0 * cols) * esize,
                            static_cast<size_t>(rows * cols) * esize);
  return safetensors::ToF32(sub, out);
}

int64_t Product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// cos/sin caches for GroupQueryAttention's rotary embedding: [context_length, rotary_dim / 2],
// computed as the builder does (inv_freq and angles rounded to f32, as torch computes them).
std::vector<float> InverseFrequencies(const ModelConfig& c, int64_t original_context_length) {
  int64_t dim = c.head_dim;
  std::vector<float> inv_freq;
  double linear_factor =
      c.rope_scaling && c.rope_scaling->rope_type == "linear" ? c.rope_scaling->factor : 1.0;
  for (int64_t i = 0; i < dim; i += 2) {
    float exponent = static_cast<float>(i) / static_cast<float>(dim);
    float base = static_cast<float>(std::pow(c.rope_theta, static_cast<double>(exponent)));
    inv_freq.push_back(static_cast<float>(1.0 / (linear_factor * static_cast<double>(base))));
  }
  if (c.rope_scaling && c.rope_scaling->rope_type == "llama3") {
    double factor = c.rope_scaling->factor;
    double low = c.rope_scaling->low_freq_factor.value_or(1.0);
    double high = c.rope_scaling->high_freq_factor.value_or(4.0);
    double old_len = static_cast<double>(original_context_length);
    double low_wavelen = old_len / low;
    double high_wavelen = old_len / high;
    for (float& f : inv_freq) {
      double freq = f;
      double wavelen = 2 * std::numbers::pi / freq;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(freq / factor);
      } else {
        double smooth = (old_len / wavelen - low) / (high - low);
        f = static_cast<float>((1 - smooth) * freq / factor + smooth * freq);
      }
    }
  }
  return inv_freq;
}

Status CheckSupported(const ModelConfig& c, const std::string& config_path) {
  auto unsupported = [&](const std::string& what) {
    return Status::Unsupported(config_path + ": " + what);
  };
  if (c.hidden_act != "silu") {
    return unsupported("key \"hidden_act\": \"" + c.hidden_act + "\"; only \"silu\" is supported");
  }
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.vocab_size <= 0 ||
      c.max_position_embeddings <= 0) {
    return Status::InvalidArgument(config_path +
                                   ": hidden_size, intermediate_size, num_hidden_layers, "
                                   "num_attention_heads, num_key_value_heads, vocab_size and "
                                   "max_position_embeddings must be positive");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Status::InvalidArgument(config_path + ": num_attention_heads (" +
                                   std::to_string(c.num_attention_heads) +
                                   ") is not a multiple of num_key_value_heads (" +
                                   std::to_string(c.num_key_value_heads) + ")");
  }
  if (c.head_dim % 16 != 0) {
    return unsupported("head_dim " + std::to_string(c.head_dim) +
                       ": GroupQueryAttention needs a multiple of 16");
  }
  if (c.rope_scaling) {
    const std::string& type = c.rope_scaling->rope_type;
    if (type != "default" && type != "linear" && type != "llama3") {
      return unsupported("key \"rope_scaling\": rope_type \"" + type +
                         "\"; supported: default, linear, llama3");
    }
  }
  return Status::Ok();
}

// Builds the graph and streams its initializers.
class GraphBuilder {
 public:
  GraphBuilder(const ModelConfig& config, const GenaiConvertOptions& options,
               const SourceWeights& weights, ExternalDataWriter& data, int64_t context_length,
               int64_t original_context_length)
      : c_(config),
        opt_(options),
        w_(weights),
        data_(data),
        context_length_(context_length),
        original_context_length_(original_context_length) {}

  Status Build();
  onnx_proto::GraphProto& graph() { return graph_; }

 private:
  bool int4() const { return opt_.precision == GenaiPrecision::kInt4; }
  bool gguf_blocks() const { return opt_.precision == GenaiPrecision::kGguf; }
  std::string LayerPrefix(int64_t i) const { return "/model/layers." + std::to_string(i); }
  std::string HfLayer(int64_t i) const { return "model.layers." + std::to_string(i); }

  // Adds a node whose outputs are "<name>/output_<k>" unless given; returns the first output.
  std::string Node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
                   std::vector<AttributeProto> attributes = {}, const std::string& domain = "",
                   std::vector<std::string> outputs = {}) {
    if (outputs.empty()) outputs.push_back(name + "/output_0");
    NodeProto n;
    n.op_type = op;
    n.name = name;
    n.domain = domain;
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    n.attributes = std::move(attributes);
    graph_.nodes.push_back(std::move(n));
    return graph_.nodes.back().outputs[0];
  }

  // An int64 constant named as the builder names them: "/model/constants/INT64/[1]" for a
  // 1-D tensor, "/model/constants/INT64/1" for a scalar.
  std::string Int64Constant(const std::vector<int64_t>& values, bool scalar) {
    std::string text;
    if (scalar) {
      text = std::to_string(values.at(0));
    } else {
      text = Join(values);
    }
    std::string name = "/model/constants/INT64/" + text;
    if (constants_.insert(name).second) {
      std::vector<int64_t> dims;
      if (!scalar) dims.push_back(static_cast<int64_t>(values.size()));
      Node("Constant", "/model/constant_nodes/INT64/" + text, {},
           {AttributeProto::Tensor("value", TensorProto::Int64s(name, dims, values))}, "", {name});
    }
    return name;
  }

  // Appends an initializer whose bytes `write` streams into model.onnx.data.
  Status Initializer(const std::string& name, DataType type, std::vector<int64_t> dims,
                     const std::function<Status()>& write) {
    KILN_RETURN_IF_ERROR(data_.Align());
    uint64_t start = data_.offset();
    KILN_RETURN_IF_ERROR(write());
    uint64_t length = data_.offset() - start;
    uint64_t expected = static_cast<uint64_t>(Product(dims)) * onnx_proto::DataTypeSize(type);
    if (length != expected) {
      return Status::Internal("initializer " + name + ": wrote " + std::to_string(length) +
                              " bytes, expected " + std::to_string(expected));
    }
    TensorProto t;
    t.name = name;
    t.data_type = type;
    t.dims = std::move(dims);
    t.external = onnx_proto::ExternalData{kDataFile, start, length};
    graph_.initializers.push_back(std::move(t));
    return Status::Ok();
  }

  Status FloatInitializer(const std::string& name, std::vector<int64_t> dims,
                          std::span<const float> values) {
    return Initializer(name, DataType::kFloat, std::move(dims),
                       [&] { return data_.Write(values.data(), values.size_bytes()); });
  }

  // 1-D source tensors written one after another as one f32 vector.
  Status ConcatF32(const std::string& name, const std::vector<const SourceTensor*>& parts) {
    int64_t total = 0;
    for (const SourceTensor* t : parts) total += t->shape[0];
    return Initializer(name, DataType::kFloat, {total}, [&]() -> Status {
      for (const SourceTensor* t : parts) {
        std::vector<float> buf(static_cast<size_t>(t->shape[0]));
        KILN_RETURN_IF_ERROR(RowsToF32(*t, 0, 1, buf.data()));
        KILN_RETURN_IF_ERROR(data_.Write(buf.data(), buf.size() * 4));
      }
      return Status::Ok();
    });
  }

  // A source tensor written unchanged (converted to f32).
  Status CopyF32(const std::string& name, const SourceTensor& t) {
    int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
    int64_t cols = t.shape.size() == 2 ? t.shape[1] : t.shape[0];
    return Initializer(name, DataType::kFloat, t.shape, [&]() -> Status {
      int64_t chunk = std::max<int64_t>(1, kChunkElements / cols);
      std::vector<float> buf(static_cast<size_t>(std::min(chunk, rows) * cols));
      for (int64_t r = 0; r < rows; r += chunk) {
        int64_t n = std::min(chunk, rows - r);
        KILN_RETURN_IF_ERROR(RowsToF32(t, r, n, buf.data()));
        KILN_RETURN_IF_ERROR(data_.Write(buf.data(), static_cast<size_t>(n * cols) * 4));
      }
      return Status::Ok();
    });
  }

  // [out_i, in] source weights stacked along out and written as MatMul's B: [in, sum out_i] f32.
  Status TransposedF32(const std::string& name, const std::vector<const SourceTensor*>& parts) {
    int64_t in = parts.front()->shape[1];
    int64_t out = 0;
    for (const SourceTensor* t : parts) out += t->shape[0];
    // One f32 copy of this weight (not of the model) is the price of the transpose.
    std::vector<float> src(static_cast<size_t>(out * in));
    int64_t row = 0;
    for (const SourceTensor* t : parts) {
      KILN_RETURN_IF_ERROR(RowsToF32(*t, 0, t->shape[0], &src[row * in]));
      row += t->shape[0];
    }
    return Initializer(name, DataType::kFloat, {in, out}, [&]() -> Status {
      int64_t chunk = std::max<int64_t>(1, kChunkElements / out);
      std::vector<float> buf(static_cast<size_t>(std::min(chunk, in) * out));
      for (int64_t r = 0; r < in; r += chunk) {
        int64_t n = std::min(chunk, in - r);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < out; ++j) buf[i * out + j] = src[j * in + r + i];
        }
        KILN_RETURN_IF_ERROR(data_.Write(buf.data(), static_cast<size_t>(n * out) * 4));
      }
      return Status::Ok();
    });
  }

  // MatMulNBits' B, scales (and zero points) from [N_i, K] source weights stacked along N,
  // named "<base>_Q4", "<base>_scales", "<base>_zero_points" as ONNX Runtime's quantizer names
  // them. Blocks run along K within a row, so the stack quantizes each weight as it would alone.
  Status QuantizedInt4(const std::string& base, const std::vector<const SourceTensor*>& parts) {
    int64_t k = parts.front()->shape[1];
    int64_t n_rows = 0;
    for (const SourceTensor* t : parts) n_rows += t->shape[0];
    int64_t block = opt_.int4_block_size;
    int64_t blocks = (k + block - 1) / block;
    int64_t blob = block / 2;
    int64_t zp_cols = (blocks + 1) / 2;
    std::vector<float> scales(static_cast<size_t>(n_rows * blocks));
    std::vector<uint8_t> zero_points(static_cast<size_t>(n_rows * zp_cols), 0);
    KILN_RETURN_IF_ERROR(
        Initializer(base + "_Q4", DataType::kUint8, {n_rows, blocks, blob}, [&]() -> Status {
          int64_t chunk = std::max<int64_t>(1, kChunkElements / k);
          std::vector<float> rows(static_cast<size_t>(std::min(chunk, n_rows) * k));
          std::vector<uint8_t> packed(static_cast<size_t>(std::min(chunk, n_rows) * blocks * blob));
          std::vector<uint8_t> zp(static_cast<size_t>(blocks));
          int64_t r = 0;  // the stacked row of the chunk's first row
          for (const SourceTensor* t : parts) {
            for (int64_t t_row = 0; t_row < t->shape[0]; t_row += chunk) {
              int64_t n = std::min(chunk, t->shape[0] - t_row);
              KILN_RETURN_IF_ERROR(RowsToF32(*t, t_row, n, rows.data()));
              for (int64_t i = 0; i < n; ++i) {
                QuantizeInt4Row(&rows[i * k], k, block, opt_.int4_symmetric,
                                &packed[i * blocks * blob], &scales[(r + i) * blocks], zp.data());
                for (int64_t b = 0; b < blocks; ++b) {
                  uint8_t& byte = zero_points[(r + i) * zp_cols + b / 2];
                  // An odd block count leaves the last high nibble at 8, as ONNX Runtime writes it.
                  if (b % 2 == 0) {
                    byte = static_cast<uint8_t>(zp[b] | (b + 1 < blocks ? 0 : 0x80));
                  } else {
                    byte = static_cast<uint8_t>(byte | (zp[b] << 4));
                  }
                }
              }
              KILN_RETURN_IF_ERROR(
                  data_.Write(packed.data(), static_cast<size_t>(n * blocks * blob)));
              r += n;
            }
          }
          return Status::Ok();
        }));
    KILN_RETURN_IF_ERROR(FloatInitializer(base + "_scales", {n_rows, blocks}, scales));
    if (!opt_.int4_symmetric) {
      KILN_RETURN_IF_ERROR(
          Initializer(base + "_zero_points", DataType::kUint8, {n_rows, zp_cols},
                      [&] { return data_.Write(zero_points.data(), zero_points.size()); }));
    }
    return Status::Ok();
  }

  // How a weight named `base` is stored for MatMulNBits: "<base>_Q4" or "<base>_Q8" ([N, K /
  // block_size, block_size * bits / 8] codes), "<base>_scales" ([N, K / block_size]), and
  // "<base>_zero_points" (4 bits: two a byte; 8 bits: one) when `zero_points` is set; without
  // them ONNX Runtime's implicit zero point is 2^(bits - 1).
  struct BlockWeight {
    std::string base;
    int64_t bits = 4;
    int64_t block_size = 32;
    bool zero_points = false;
    // GGUF Q4_1: "<base>_block_offsets" [K / block_size, N] holds what each block adds to every
    // weight beyond scale * (code - zero point); see GgufBlocks.
    bool block_offsets = false;
    std::string codes() const { return base + (bits == 4 ? "_Q4" : "_Q8"); }
  };

  BlockWeight Int4Weight(const std::string& base) const {
    return {base, 4, opt_.int4_block_size, !opt_.int4_symmetric, false};
  }

  // GGUF weights stacked along N whose blocks MatMulNBits can hold exactly, written as they are:
  // all Q8_0 (8 bits, the code plus 128, zero point 128 implicit), or all Q4_0 / Q4_1 (4 bits).
  // Q4_0 is w = d * (q - 8): symmetric MatMulNBits. Q4_1 is w = d * q + m, which MatMulNBits
  // with float zero points -m / d reproduces, but on a slow path (a 576 x 1536 weight on 2
  // threads: 900 us against 42 us for one row, 3x for 16 rows). So a Q4_1 block keeps an
  // integer zero point z = round(-m / d), and its offset m + z * d goes into
  // "<base>_block_offsets", which MatMulNBits() adds as (sum of the block's inputs) * offset.
  // With z, d * (q - z) is close to the weight itself, so int8 activations (accuracy level 4)
  // err about as they would on the exact weights: SmolLM2's perplexity was 12.708 with z and
  // 12.766 with z = 8 (f32: 12.696), at the same decode speed. nullopt for any other type, or
  // a mix of 4 and 8 bits: the caller writes those in f32, which is exact too.
  Result<std::optional<BlockWeight>> GgufBlocks(const std::string& base,
                                                const std::vector<const SourceTensor*>& parts) {
    bool all_q8 = true;
    bool all_q4 = true;
    for (const SourceTensor* t : parts) {
      if (!t->info) return std::optional<BlockWeight>();
      gguf::TensorType type = t->info->type;
      all_q8 = all_q8 && type == gguf::TensorType::kQ8_0;
      all_q4 = all_q4 && (type == gguf::TensorType::kQ4_0 || type == gguf::TensorType::kQ4_1);
    }
    if (!all_q8 && !all_q4) return std::optional<BlockWeight>();
    constexpr int64_t kBlock = 32;
    int64_t k = parts.front()->cols();
    int64_t blocks = k / kBlock;
    int64_t n_rows = 0;
    for (const SourceTensor* t : parts) n_rows += t->rows();
    BlockWeight w{base, all_q8 ? 8 : 4, kBlock, false, false};
    int64_t code_bytes = kBlock * w.bits / 8;
    std::vector<float> scales(static_cast<size_t>(n_rows * blocks));
    std::vector<uint8_t> zero_points(static_cast<size_t>(n_rows * blocks), 8);
    std::vector<float> offsets(static_cast<size_t>(n_rows * blocks), 0.0f);  // [N, blocks]
    KILN_RETURN_IF_ERROR(
        Initializer(w.codes(), DataType::kUint8, {n_rows, blocks, code_bytes}, [&]() -> Status {
          std::vector<uint8_t> row_codes(static_cast<size_t>(blocks * code_bytes));
          int64_t r = 0;
          for (const SourceTensor* t : parts) {
            gguf::TensorType type = t->info->type;
            for (int64_t t_row = 0; t_row < t->rows(); ++t_row, ++r) {
              std::span<const uint8_t> src = t->GgufRow(t_row);
              size_t block_bytes = gguf::BlockLayoutOf(type).bytes;
              for (int64_t b = 0; b < blocks; ++b) {
                const uint8_t* blk = src.data() + static_cast<size_t>(b) * block_bytes;
                uint8_t* out = &row_codes[static_cast<size_t>(b * code_bytes)];
                size_t i = static_cast<size_t>(r * blocks + b);
                uint16_t half;
                std::memcpy(&half, blk, 2);
                float d = Fp16ToFloat(half);
                scales[i] = d;
                if (type == gguf::TensorType::kQ8_0) {
                  for (int64_t j = 0; j < kBlock; ++j) out[j] = blk[2 + j] ^ 0x80;
                  continue;
                }
                // ggml keeps elements j and j + 16 in byte j; MatMulNBits elements 2j and
                // 2j + 1, low nibble first.
                const uint8_t* qs = blk + (type == gguf::TensorType::kQ4_1 ? 4 : 2);
                auto code = [&](int64_t e) {
                  return static_cast<uint8_t>(e < 16 ? qs[e] & 0x0F : qs[e - 16] >> 4);
                };
                for (int64_t j = 0; j < kBlock / 2; ++j) {
                  out[j] = static_cast<uint8_t>(code(2 * j) | (code(2 * j + 1) << 4));
                }
                if (type == gguf::TensorType::kQ4_1) {
                  std::memcpy(&half, blk + 2, 2);
                  float m = Fp16ToFloat(half);
                  float z = d != 0.0f ? std::clamp(std::round(-m / d), 0.0f, 15.0f) : 8.0f;
                  zero_points[i] = static_cast<uint8_t>(z);
                  offsets[i] = m + z * d;
                }
              }
              KILN_RETURN_IF_ERROR(data_.Write(row_codes.data(), row_codes.size()));
            }
          }
          return Status::Ok();
        }));
    KILN_RETURN_IF_ERROR(FloatInitializer(base + "_scales", {n_rows, blocks}, scales));
    w.block_offsets = std::any_of(offsets.begin(), offsets.end(), [](float o) { return o != 0; });
    w.zero_points =
        std::any_of(zero_points.begin(), zero_points.end(), [](uint8_t z) { return z != 8; });
    if (w.zero_points) {
      int64_t zp_cols = (blocks + 1) / 2;
      std::vector<uint8_t> packed(static_cast<size_t>(n_rows * zp_cols), 0);
      for (int64_t r = 0; r < n_rows; ++r) {
        for (int64_t b = 0; b < blocks; ++b) {
          uint8_t& byte = packed[r * zp_cols + b / 2];
          uint8_t z = zero_points[r * blocks + b];
          // An odd block count leaves the last high nibble at 8, as ONNX Runtime writes it.
          byte = b % 2 == 0 ? static_cast<uint8_t>(z | (b + 1 < blocks ? 0 : 0x80))
                            : static_cast<uint8_t>(byte | (z << 4));
        }
      }
      KILN_RETURN_IF_ERROR(Initializer(base + "_zero_points", DataType::kUint8, {n_rows, zp_cols},
                                       [&] { return data_.Write(packed.data(), packed.size()); }));
    }
    if (w.block_offsets) {
      std::vector<float> transposed(offsets.size());
      for (int64_t r = 0; r < n_rows; ++r) {
        for (int64_t b = 0; b < blocks; ++b) {
          transposed[b * n_rows + r] = offsets[r * blocks + b];
        }
      }
      KILN_RETURN_IF_ERROR(FloatInitializer(base + "_block_offsets", {blocks, n_rows}, transposed));
    }
    return std::optional<BlockWeight>(w);
  }

  // [k, k / block_size] with a 1 where row j lies in block column j / block_size: x times it
  // sums each block of x. One per k, shared.
  Result<std::string> BlockIndicator(int64_t k, int64_t block_size) {
    std::string name = "block_sums." + std::to_string(k) + "x" + std::to_string(block_size);
    if (!constants_.insert(name).second) return name;
    int64_t blocks = k / block_size;
    std::vector<float> values(static_cast<size_t>(k * blocks), 0.0f);
    for (int64_t j = 0; j < k; ++j) values[j * blocks + j / block_size] = 1.0f;
    KILN_RETURN_IF_ERROR(FloatInitializer(name, {k, blocks}, values));
    return name;
  }

  // y = x W^T for a weight stored in blocks; returns y (named `output`).
  Result<std::string> MatMulNBits(const std::string& name, const std::string& input,
                                  const BlockWeight& w, int64_t k, int64_t n,
                                  const std::string& output) {
    std::vector<std::string> inputs = {input, w.codes(), w.base + "_scales"};
    if (w.zero_points) inputs.push_back(w.base + "_zero_points");
    std::string suffix = w.bits == 4 ? "_Q4" : "_Q8";
    std::string nbits_output = w.block_offsets ? name + suffix + "/output_0" : output;
    std::string y =
        Node("MatMulNBits", name + suffix, std::move(inputs),
             {AttributeProto::Int("K", k), AttributeProto::Int("N", n),
              AttributeProto::Int("accuracy_level", opt_.accuracy_level),
              AttributeProto::Int("bits", w.bits), AttributeProto::Int("block_size", w.block_size)},
             "com.microsoft", {nbits_output});
    if (!w.block_offsets) return y;
    // Each block's offset times the sum of the block's inputs: [.., K / 32] x [K / 32, N] in f32,
    // a small product next to the weight's own (18 x 3072 against 576 x 3072 for gate/up). The
    // sums are one MatMul with a 0/1 matrix: fewer nodes than Reshape + ReduceSum, and faster.
    KILN_ASSIGN_OR_RETURN(std::string indicator, BlockIndicator(k, w.block_size));
    std::string sums = Node("MatMul", name + "/BlockSums/MatMul", {input, indicator});
    std::string offsets =
        Node("MatMul", name + "/BlockOffsets/MatMul", {sums, w.base + "_block_offsets"});
    return Node("Add", name + "/BlockOffsets/Add", {y, offsets}, {}, "", {output});
  }

  // y = x W^T (+ b) for the Hugging Face linear layer `hf` ([out, in] weight); returns y.
  Result<std::string> Linear(const std::string& basename, const std::string& hf,
                             const std::string& input, int64_t in, int64_t out, bool bias) {
    return StackedLinear(basename, {{hf, out}}, input, in, bias);
  }

  // One projection for Hugging Face linear layers that share their input: their weights (and
  // biases) stacked along the output axis, so y holds each layer's output in turn along its last
  // axis; returns y.
  struct LinearPart {
    std::string hf;  // "model.layers.0.self_attn.q_proj"
    int64_t out;
  };
  Result<std::string> StackedLinear(const std::string& basename,
                                    const std::vector<LinearPart>& parts, const std::string& input,
                                    int64_t in, bool bias) {
    std::vector<const SourceTensor*> weights;
    int64_t out = 0;
    for (const LinearPart& part : parts) {
      KILN_ASSIGN_OR_RETURN(const SourceTensor* w, w_.Get(part.hf + ".weight", {part.out, in}));
      weights.push_back(w);
      out += part.out;
    }
    std::string name = basename + "/MatMul";
    std::string weight = name.substr(1) + ".weight";
    std::replace(weight.begin(), weight.end(), '/', '.');
    std::string y;
    if (gguf_blocks()) {
      KILN_ASSIGN_OR_RETURN(std::optional<BlockWeight> blocks, GgufBlocks(weight, weights));
      if (blocks) {
        KILN_ASSIGN_OR_RETURN(y, MatMulNBits(name, input, *blocks, in, out, name + "/output_0"));
      } else {
        KILN_RETURN_IF_ERROR(TransposedF32(weight, weights));
        y = Node("MatMul", name, {input, weight});
      }
    } else if (int4()) {
      KILN_RETURN_IF_ERROR(QuantizedInt4(weight, weights));
      KILN_ASSIGN_OR_RETURN(
          y, MatMulNBits(name, input, Int4Weight(weight), in, out, name + "/output_0"));
    } else {
      KILN_RETURN_IF_ERROR(TransposedF32(weight, weights));
      y = Node("MatMul", name, {input, weight});
    }
    if (!bias) return y;
    std::vector<const SourceTensor*> biases;
    for (const LinearPart& part : parts) {
      KILN_ASSIGN_OR_RETURN(const SourceTensor* b, w_.Get(part.hf + ".bias", {part.out}));
      biases.push_back(b);
    }
    std::string add = basename + "/Add";
    std::string bias_name = add.substr(1) + ".bias";
    std::replace(bias_name.begin(), bias_name.end(), '/', '.');
    KILN_RETURN_IF_ERROR(ConcatF32(bias_name, biases));
    return Node("Add", add, {y, bias_name});
  }

  Status NormWeight(const std::string& name, const std::string& hf) {
    KILN_ASSIGN_OR_RETURN(const SourceTensor* t, w_.Get(hf, {c_.hidden_size}));
    return CopyF32(name, *t);
  }

  Status Embedding();
  Status GgufEmbedding(const SourceTensor& embed);
  Status AttentionMask();
  Status RotaryCaches();
  Result<std::string> Attention(int64_t layer, const std::string& input);
  Result<std::string> Mlp(int64_t layer, const std::string& input);
  Status LmHead(const std::string& input);

  const ModelConfig& c_;
  const GenaiConvertOptions& opt_;
  const SourceWeights& w_;
  ExternalDataWriter& data_;
  int64_t context_length_;
  int64_t original_context_length_;
  onnx_proto::GraphProto graph_;
  std::set<std::string> constants_;

  std::string embedding_;  // the embedding's output
  // GGUF, tied embeddings: the table GatherBlockQuantized reads, which lm_head reads too.
  std::optional<BlockWeight> tied_blocks_;
  std::string seqlens_k_;
  std::string total_seq_len_;
};

Status GraphBuilder::Embedding() {
  const std::string base = "/model/embed_tokens";
  KILN_ASSIGN_OR_RETURN(const SourceTensor* embed,
                        w_.Get("model.embed_tokens.weight", {c_.vocab_size, c_.hidden_size}));
  if (gguf_blocks()) return GgufEmbedding(*embed);
  if (c_.tie_word_embeddings && int4()) {
    // The quantized lm_head weight doubles as the embedding table, as the builder shares it.
    KILN_RETURN_IF_ERROR(QuantizedInt4("lm_head.MatMul.weight", {embed}));
    int64_t block = opt_.int4_block_size;
    int64_t padded = (c_.hidden_size + block - 1) / block * block;
    std::string reshaped =
        Node("Reshape", base + "/Reshape",
             {"lm_head.MatMul.weight_Q4", Int64Constant({c_.vocab_size, padded / 2}, false)});
    std::vector<std::string> inputs = {reshaped, "input_ids", "lm_head.MatMul.weight_scales"};
    if (!opt_.int4_symmetric) inputs.push_back("lm_head.MatMul.weight_zero_points");
    embedding_ =
        Node("GatherBlockQuantized", base + "/GatherBlockQuantized", inputs,
             {AttributeProto::Int("bits", 4), AttributeProto::Int("block_size", block),
              AttributeProto::Int("gather_axis", 0), AttributeProto::Int("quantize_axis", 1)},
             "com.microsoft");
    if (padded != c_.hidden_size) {
      embedding_ = Node("Slice", base + "/Slice",
                        {embedding_, Int64Constant({0}, false),
                         Int64Constant({c_.hidden_size}, false), Int64Constant({-1}, false)});
    }
  } else if (c_.tie_word_embeddings) {
    KILN_RETURN_IF_ERROR(TransposedF32("lm_head.MatMul.weight", {embed}));
    std::string table = Node("Transpose", base + "/Transpose", {"lm_head.MatMul.weight"},
                             {AttributeProto::Ints("perm", {1, 0})});
    embedding_ = Node("Gather", base + "/Gather", {table, "input_ids"});
  } else {
    KILN_RETURN_IF_ERROR(CopyF32("model.embed_tokens.weight", *embed));
    embedding_ = Node("Gather", base + "/Gather", {"model.embed_tokens.weight", "input_ids"});
  }
  return Status::Ok();
}

Status GraphBuilder::GgufEmbedding(const SourceTensor& embed) {
  const std::string base = "/model/embed_tokens";
  bool gatherable = embed.info && (embed.info->type == gguf::TensorType::kQ8_0 ||
                                   embed.info->type == gguf::TensorType::kQ4_0);
  if (!gatherable) {
    // Q4_1 would need its offsets added per element; f32 is exact.
    KILN_RETURN_IF_ERROR(CopyF32("model.embed_tokens.weight", embed));
    embedding_ = Node("Gather", base + "/Gather", {"model.embed_tokens.weight", "input_ids"});
    return Status::Ok();
  }
  // A tied table serves both: GatherBlockQuantized reads MatMulNBits' codes as [vocab, hidden].
  std::string table =
      c_.tie_word_embeddings ? "lm_head.MatMul.weight" : "model.embed_tokens.weight";
  KILN_ASSIGN_OR_RETURN(std::optional<BlockWeight> w, GgufBlocks(table, {&embed}));
  if (!w || w->zero_points || w->block_offsets) {
    return Status::Internal(embed.file + ": expected symmetric blocks");
  }
  std::string reshaped =
      Node("Reshape", base + "/Reshape",
           {w->codes(), Int64Constant({c_.vocab_size, c_.hidden_size * w->bits / 8}, false)});
  embedding_ =
      Node("GatherBlockQuantized", base + "/GatherBlockQuantized",
           {reshaped, "input_ids", table + "_scales"},
           {AttributeProto::Int("bits", w->bits), AttributeProto::Int("block_size", w->block_size),
            AttributeProto::Int("gather_axis", 0), AttributeProto::Int("quantize_axis", 1)},
           "com.microsoft");
  if (c_.tie_word_embeddings) tied_blocks_ = w;
  return Status::Ok();
}

Status GraphBuilder::AttentionMask() {
  // seqlens_k = sum(attention_mask, axis 1) - 1 and total_sequence_length = its width, both
  // int32, as GroupQueryAttention takes them.
  const std::string base = "/model/attn_mask_reformat/attn_mask_subgraph";
  std::string sum =
      Node("ReduceSum", base + "/ReduceSum", {"attention_mask", Int64Constant({1}, false)},
           {AttributeProto::Int("keepdims", 0)});
  std::string sub = Node("Sub", base + "/Sub", {sum, Int64Constant({1}, false)});
  seqlens_k_ = Node("Cast", base + "/Sub/Cast", {sub},
                    {AttributeProto::Int("to", static_cast<int64_t>(DataType::kInt32))});
  std::string shape = Node("Shape", base + "/Shape", {"attention_mask"});
  std::string width = Node("Gather", base + "/Gather", {shape, Int64Constant({1}, true)},
                           {AttributeProto::Int("axis", 0)});
  total_seq_len_ = Node("Cast", base + "/Gather/Cast", {width},
                        {AttributeProto::Int("to", static_cast<int64_t>(DataType::kInt32))});
  return Status::Ok();
}

Status GraphBuilder::RotaryCaches() {
  std::vector<float> inv_freq = InverseFrequencies(c_, original_context_length_);
  int64_t half = static_cast<int64_t>(inv_freq.size());
  std::vector<float> angles(static_cast<size_t>(context_length_ * half));
  for (int64_t p = 0; p < context_length_; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      angles[p * half + i] = static_cast<float>(p) * inv_freq[i];
    }
  }
  std::vector<float> values(angles.size());
  for (size_t i = 0; i < angles.size(); ++i) values[i] = std::cos(angles[i]);
  KILN_RETURN_IF_ERROR(FloatInitializer("cos_cache", {context_length_, half}, values));
  for (size_t i = 0; i < angles.size(); ++i) values[i] = std::sin(angles[i]);
  return FloatInitializer("sin_cache", {context_length_, half}, values);
}

Result<std::string> GraphBuilder::Attention(int64_t layer, const std::string& input) {
  std::string base = LayerPrefix(layer) + "/attn";
  std::string hf = HfLayer(layer) + ".self_attn";
  int64_t q_size = c_.num_attention_heads * c_.head_dim;
  int64_t kv_size = c_.num_key_value_heads * c_.head_dim;
  bool qkv_bias = c_.attention_bias || c_.model_type == "qwen2";
  // One projection for q, k and v (one MatMulNBits instead of three per layer and step), passed
  // to GroupQueryAttention as packed QKV: the query input holds [q | k | v] along its last axis
  // and the key and value inputs are left empty.
  KILN_ASSIGN_OR_RETURN(std::string qkv, StackedLinear(base + "/qkv_proj",
                                                       {{hf + ".q_proj", q_size},
                                                        {hf + ".k_proj", kv_size},
                                                        {hf + ".v_proj", kv_size}},
                                                       input, c_.hidden_size, qkv_bias));
  std::string i = std::to_string(layer);
  std::string gqa = Node(
      "GroupQueryAttention", base + "/GroupQueryAttention",
      {qkv, "", "", "past_key_values." + i + ".key", "past_key_values." + i + ".value", seqlens_k_,
       total_seq_len_, "cos_cache", "sin_cache"},
      {AttributeProto::Int("num_heads", c_.num_attention_heads),
       AttributeProto::Int("kv_num_heads", c_.num_key_value_heads),
       AttributeProto::Float("scale",
                             static_cast<float>(1.0 / std::sqrt(static_cast<double>(c_.head_dim)))),
       AttributeProto::Int("local_window_size", c_.sliding_window.value_or(-1)),
       AttributeProto::Float("softcap", 0.0f), AttributeProto::Int("do_rotary", 1),
       AttributeProto::Int("rotary_interleaved", 0)},
      "com.microsoft",
      {base + "/GroupQueryAttention/output_0", "present." + i + ".key", "present." + i + ".value"});
  // Qwen2 has q/k/v biases only (its config reads as attention_bias without an o_proj bias).
  bool o_bias = c_.attention_bias && c_.model_type != "qwen2";
  return Linear(base + "/o_proj", hf + ".o_proj", gqa, q_size, c_.hidden_size, o_bias);
}

Result<std::string> GraphBuilder::Mlp(int64_t layer, const std::string& input) {
  std::string base = LayerPrefix(layer) + "/mlp";
  std::string hf = HfLayer(layer) + ".mlp";
  int64_t inter = c_.intermediate_size;
  // One projection for gate and up, split in two: on CPU, SmolLM2-135M int4 decodes 3-7% faster
  // at batch 1 than with two MatMulNBits, and no slower at batch 16.
  KILN_ASSIGN_OR_RETURN(
      std::string gate_up,
      StackedLinear(base + "/gate_up_proj", {{hf + ".gate_proj", inter}, {hf + ".up_proj", inter}},
                    input, c_.hidden_size, c_.mlp_bias));
  std::string split = base + "/gate_up_proj/Split";
  std::string gate = split + "/output_0";
  std::string up = split + "/output_1";
  Node("Split", split, {gate_up},
       {AttributeProto::Int("axis", -1), AttributeProto::Int("num_outputs", 2)}, "", {gate, up});
  // SiLU as x * Sigmoid(x), the builder's CPU form.
  std::string sigmoid = Node("Sigmoid", base + "/act_fn/Sigmoid", {gate});
  std::string act = Node("Mul", base + "/act_fn/Mul", {gate, sigmoid});
  std::string prod = Node("Mul", base + "/Mul", {act, up});
  return Linear(base + "/down_proj", hf + ".down_proj", prod, inter, c_.hidden_size, c_.mlp_bias);
}

Status GraphBuilder::LmHead(const std::string& input) {
  const std::string name = "/lm_head/MatMul";
  if (gguf_blocks()) {
    if (tied_blocks_) {
      KILN_RETURN_IF_ERROR(
          MatMulNBits(name, input, *tied_blocks_, c_.hidden_size, c_.vocab_size, "logits")
              .status());
      return Status::Ok();
    }
    std::string source = c_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    KILN_ASSIGN_OR_RETURN(const SourceTensor* w, w_.Get(source, {c_.vocab_size, c_.hidden_size}));
    KILN_ASSIGN_OR_RETURN(std::optional<BlockWeight> blocks,
                          GgufBlocks("lm_head.MatMul.weight", {w}));
    if (blocks) {
      KILN_RETURN_IF_ERROR(
          MatMulNBits(name, input, *blocks, c_.hidden_size, c_.vocab_size, "logits").status());
    } else {
      KILN_RETURN_IF_ERROR(TransposedF32("lm_head.MatMul.weight", {w}));
      Node("MatMul", name, {input, "lm_head.MatMul.weight"}, {}, "", {"logits"});
    }
    return Status::Ok();
  }
  if (c_.tie_word_embeddings) {
    // The weight was written with the embedding.
    if (int4()) {
      KILN_RETURN_IF_ERROR(MatMulNBits(name, input, Int4Weight("lm_head.MatMul.weight"),
                                       c_.hidden_size, c_.vocab_size, "logits")
                               .status());
    } else {
      Node("MatMul", name, {input, "lm_head.MatMul.weight"}, {}, "", {"logits"});
    }
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(const SourceTensor* w,
                        w_.Get("lm_head.weight", {c_.vocab_size, c_.hidden_size}));
  if (int4()) {
    KILN_RETURN_IF_ERROR(QuantizedInt4("lm_head.MatMul.weight", {w}));
    KILN_RETURN_IF_ERROR(MatMulNBits(name, input, Int4Weight("lm_head.MatMul.weight"),
                                     c_.hidden_size, c_.vocab_size, "logits")
                             .status());
  } else {
    KILN_RETURN_IF_ERROR(TransposedF32("lm_head.MatMul.weight", {w}));
    Node("MatMul", name, {input, "lm_head.MatMul.weight"}, {}, "", {"logits"});
  }
  return Status::Ok();
}

Status GraphBuilder::Build() {
  graph_.name = "main_graph";
  const float eps = static_cast<float>(c_.rms_norm_eps);

  // Inputs and outputs with the builder's names and symbolic dimensions.
  auto sym = Dim::Symbolic;
  graph_.inputs.push_back(
      {"input_ids", DataType::kInt64, std::vector<Dim>{sym("batch_size"), sym("sequence_length")}});
  graph_.inputs.push_back({"attention_mask", DataType::kInt64,
                           std::vector<Dim>{sym("batch_size"), sym("total_sequence_length")}});
  graph_.outputs.push_back(
      {"logits", DataType::kFloat,
       std::vector<Dim>{sym("batch_size"), sym("sequence_length"), Dim::Fixed(c_.vocab_size)}});
  for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
    std::string n = std::to_string(i);
    auto kv = [&](const char* length) {
      return std::vector<Dim>{sym("batch_size"), Dim::Fixed(c_.num_key_value_heads), sym(length),
                              Dim::Fixed(c_.head_dim)};
    };
    graph_.inputs.push_back(
        {"past_key_values." + n + ".key", DataType::kFloat, kv("past_sequence_length")});
    graph_.inputs.push_back(
        {"past_key_values." + n + ".value", DataType::kFloat, kv("past_sequence_length")});
    graph_.outputs.push_back(
        {"present." + n + ".key", DataType::kFloat, kv("total_sequence_length")});
    graph_.outputs.push_back(
        {"present." + n + ".value", DataType::kFloat, kv("total_sequence_length")});
  }

  KILN_RETURN_IF_ERROR(Embedding());
  KILN_RETURN_IF_ERROR(AttentionMask());
  KILN_RETURN_IF_ERROR(RotaryCaches());

  // The residual stream: `root` is the running sum, `skip` the branch output to add to it;
  // SkipSimplifiedLayerNormalization adds them (output 3) and normalizes (output 0).
  std::string root = embedding_;
  std::string skip;
  for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
    std::string prefix = LayerPrefix(i);
    std::string hf = HfLayer(i);
    std::string in_w = hf + ".input_layernorm.weight";
    KILN_RETURN_IF_ERROR(NormWeight(in_w, in_w));
    std::string normed;
    if (i == 0) {
      normed =
          Node("SimplifiedLayerNormalization", prefix + "/input_layernorm/LayerNorm", {root, in_w},
               {AttributeProto::Int("axis", -1), AttributeProto::Float("epsilon", eps),
                AttributeProto::Int("stash_type", 1)},
               "", {prefix + "/input_layernorm/output_0"});
    } else {
      normed = Node(
          "SkipSimplifiedLayerNormalization", prefix + "/input_layernorm/SkipLayerNorm",
          {root, skip, in_w}, {AttributeProto::Float("epsilon", eps)}, "com.microsoft",
          {prefix + "/input_layernorm/output_0", "", "", prefix + "/input_layernorm/output_3"});
      root = prefix + "/input_layernorm/output_3";
    }
    KILN_ASSIGN_OR_RETURN(skip, Attention(i, normed));

    std::string post_w = hf + ".post_attention_layernorm.weight";
    KILN_RETURN_IF_ERROR(NormWeight(post_w, post_w));
    normed =
        Node("SkipSimplifiedLayerNormalization", prefix + "/post_attention_layernorm/SkipLayerNorm",
             {root, skip, post_w}, {AttributeProto::Float("epsilon", eps)}, "com.microsoft",
             {prefix + "/post_attention_layernorm/output_0", "", "",
              prefix + "/post_attention_layernorm/output_3"});
    root = prefix + "/post_attention_layernorm/output_3";
    KILN_ASSIGN_OR_RETURN(skip, Mlp(i, normed));
  }

  std::string final_prefix = LayerPrefix(c_.num_hidden_layers) + "/final_norm_layernorm";
  std::string final_w =
      "model.layers." + std::to_string(c_.num_hidden_layers) + ".final_norm_layernorm.weight";
  KILN_RETURN_IF_ERROR(NormWeight(final_w, "model.norm.weight"));
  std::string normed = Node("SkipSimplifiedLayerNormalization", final_prefix + "/SkipLayerNorm",
                            {root, skip, final_w}, {AttributeProto::Float("epsilon", eps)},
                            "com.microsoft", {final_prefix + "/output_0"});
  return LmHead(normed);
}

// tokenizer.json and tokenizer_config.json are what onnxruntime-genai's tokenizer reads.
Status CheckTokenizerFiles(const fs::path& in) {
  for (const char* required : {"tokenizer.json", "tokenizer_config.json"}) {
    std::error_code ec;
    if (!fs::exists(in / required, ec)) {
      return Status::NotFound((in / required).string() +
                              ": missing; a model folder needs its tokenizer");
    }
  }
  return Status::Ok();
}

Status CopyTokenizerFiles(const fs::path& in, const fs::path& out) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "chat_template.jinja"}) {
    std::error_code ec;
    if (!fs::exists(in / name, ec)) continue;
    if (fs::exists(out / name, ec) && fs::equivalent(in / name, out / name, ec)) continue;
    fs::copy_file(in / name, out / name, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return Status::IoError((out / name).string() + ": cannot copy from " + (in / name).string() +
                             ": " + ec.message());
    }
  }
  return Status::Ok();
}

}  // namespace

void QuantizeInt4Row(const float* row, int64_t k, int64_t block_size, bool symmetric,
                     uint8_t* packed, float* scales, uint8_t* zero_points) {
  int64_t blocks = (k + block_size - 1) / block_size;
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t begin = b * block_size;
    int64_t end = std::min(k, begin + block_size);
    float lo = std::numeric_limits<float>::max();
    float hi = -lo;
    for (int64_t j = begin; j < end; ++j) {
      lo = std::min(lo, row[j]);
      hi = std::max(hi, row[j]);
    }
    float scale;
    uint8_t zp = 8;
    if (symmetric) {
      float m = std::fabs(hi) > std::fabs(lo) ? hi : lo;
      scale = -m / 8.0f;
    } else {
      lo = std::min(lo, 0.0f);
      hi = std::max(hi, 0.0f);
      scale = (hi - lo) / 15.0f;
      float zp_fp = lo;
      if (scale != 0.0f) zp_fp = 0.0f - lo / scale;
      if (zp_fp < 0.0f) {
        zp = 0;
      } else if (zp_fp > 15.0f) {
        zp = 15;
      } else {
        zp = static_cast<uint8_t>(std::roundf(zp_fp));
      }
    }
    scales[b] = scale;
    zero_points[b] = zp;
    float reciprocal = scale != 0.0f ? 1.0f / scale : 0.0f;
    uint8_t* out = packed + b * (block_size / 2);
    for (int64_t j = 0; j < block_size; ++j) {
      // Past K, codes stay 0 as ONNX Runtime leaves them; the kernels never read them.
      uint8_t code = 0;
      if (begin + j < k) {
        float x = row[begin + j];
        code = static_cast<uint8_t>(
            std::clamp(std::roundf(x * reciprocal + static_cast<float>(zp)), 0.0f, 15.0f));
      }
      if (j % 2 == 0) {
        out[j / 2] = code;
      } else {
        out[j / 2] = static_cast<uint8_t>(out[j / 2] | (code << 4));
      }
    }
  }
}

namespace {

Status CheckOptions(const GenaiConvertOptions& options) {
  if (options.int4_block_size < 16 || options.int4_block_size % 16 != 0 ||
      (options.int4_block_size & (options.int4_block_size - 1)) != 0) {
    return Status::InvalidArgument("int4 block size must be a power of two >= 16, not " +
                                   std::to_string(options.int4_block_size));
  }
  if (options.accuracy_level < 0 || options.accuracy_level > 4) {
    return Status::InvalidArgument("accuracy level must be 0 to 4, not " +
                                   std::to_string(options.accuracy_level));
  }
  return Status::Ok();
}

// Opens the source's weights once config.json has been read and checked.
using OpenWeights = std::function<Result<SourceWeights>(const ModelConfig&)>;

// Writes the folder; config.json and the tokenizer files are read from `meta_dir`.
Result<GenaiConvertStats> WriteGenaiFolder(const fs::path& meta_dir, const OpenWeights& open,
                                           const fs::path& out,
                                           const GenaiConvertOptions& options) {
  std::string config_path = (meta_dir / "config.json").string();
  KILN_ASSIGN_OR_RETURN(ModelConfig config, LoadHfConfig(config_path));
  KILN_RETURN_IF_ERROR(CheckSupported(config, config_path));
  KILN_RETURN_IF_ERROR(CheckTokenizerFiles(meta_dir));
  KILN_ASSIGN_OR_RETURN(SourceWeights weights, open(config));
  KILN_ASSIGN_OR_RETURN(GenaiConfigFile genai_config,
                        MakeGenaiConfig(config, meta_dir.string(), kModelFile));
  int64_t context_length = genai_config.context_length;
  int64_t original_context_length = context_length;
  if (config.rope_scaling && config.rope_scaling->original_max_position_embeddings) {
    original_context_length = *config.rope_scaling->original_max_position_embeddings;
  }

  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Status::IoError(out.string() + ": cannot create: " + ec.message());

  ExternalDataWriter data;
  KILN_RETURN_IF_ERROR(data.Open((out / kDataFile).string()));
  GraphBuilder builder(config, options, weights, data, context_length, original_context_length);
  KILN_RETURN_IF_ERROR(builder.Build());
  KILN_RETURN_IF_ERROR(data.Close());

  onnx_proto::ModelProto proto;
  proto.ir_version = 10;
  proto.producer_name = "kiln";
  proto.opset_imports = {{"", 22}, {"com.microsoft", 1}};
  proto.graph = std::move(builder.graph());
  GenaiConvertStats stats;
  stats.nodes = static_cast<int64_t>(proto.graph.nodes.size());
  stats.initializers = static_cast<int64_t>(proto.graph.initializers.size());
  std::string bytes = onnx_proto::EncodeModel(proto);
  KILN_RETURN_IF_ERROR(WriteStringToFile((out / kModelFile).string(), bytes));
  stats.model_bytes = bytes.size();
  stats.data_bytes = data.offset();
  stats.parameters = weights.parameters();

  KILN_RETURN_IF_ERROR(WriteStringToFile((out / "genai_config.json").string(), genai_config.json));
  KILN_RETURN_IF_ERROR(CopyTokenizerFiles(meta_dir, out));
  return stats;
}

}  // namespace

Result<GenaiConvertStats> ConvertHfToGenai(const std::string& hf_dir, const std::string& out_dir,
                                           const GenaiConvertOptions& options) {
  KILN_RETURN_IF_ERROR(CheckOptions(options));
  if (options.precision == GenaiPrecision::kGguf) {
    return Status::InvalidArgument(hf_dir +
                                   ": precision gguf keeps a GGUF file's blocks; give the .gguf "
                                   "file as input");
  }
  std::optional<safetensors::SafetensorsModel> model;  // what the weights point into
  auto open = [&](const ModelConfig&) -> Result<SourceWeights> {
    KILN_ASSIGN_OR_RETURN(model, safetensors::SafetensorsModel::OpenFolder(hf_dir));
    return SourceWeights::FromSafetensors(*model, hf_dir);
  };
  return WriteGenaiFolder(hf_dir, open, out_dir, options);
}

Result<GenaiConvertStats> ConvertGgufToGenai(const gguf::GgufFile& gguf, const std::string& out_dir,
                                             const GenaiConvertOptions& options) {
  KILN_RETURN_IF_ERROR(CheckOptions(options));
  fs::path out(out_dir);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Status::IoError(out_dir + ": cannot create: " + ec.message());
  KILN_ASSIGN_OR_RETURN(ModelConfig config, LlamaConfigFromGguf(gguf, safetensors::Dtype::kF32));
  KILN_RETURN_IF_ERROR(WriteStringToFile((out / "config.json").string(), HfConfigToJson(config)));
  KILN_RETURN_IF_ERROR(WriteStringToFile((out / "generation_config.json").string(),
                                         HfGenerationConfigToJson(config)));
  auto open = [&](const ModelConfig& checked) { return SourceWeights::FromGguf(gguf, checked); };
  return WriteGenaiFolder(out, open, out, options);
}

}  // namespace kiln::formats
