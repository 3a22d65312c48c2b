#include "kiln/executors/native/cuda/cuda_llama.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kiln/executors/native/cpu/kernels.h"
#include "kiln/executors/native/llama_model.h"

namespace kiln::native {
namespace {

static_assert(static_cast<int>(cuda::WType::kF32) == static_cast<int>(cpu::WeightType::kF32) &&
              static_cast<int>(cuda::WType::kQ8_0) == static_cast<int>(cpu::WeightType::kQ8_0) &&
              static_cast<int>(cuda::WType::kQ4_0) == static_cast<int>(cpu::WeightType::kQ4_0) &&
              static_cast<int>(cuda::WType::kQ4_1) == static_cast<int>(cpu::WeightType::kQ4_1) &&
              static_cast<int>(cuda::WType::kBF16) == static_cast<int>(cpu::WeightType::kBF16) &&
              static_cast<int>(cuda::WType::kF16) == static_cast<int>(cpu::WeightType::kF16));

Status CudaError(const std::string& what) {
  std::string e = cuda::LastError();
  return Status::Internal("CUDA: " + what + (e.empty() ? "" : ": " + e));
}

// Aligns device buffer offsets to 256 bytes.
int64_t Align(int64_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

bool CudaLlama::Matrix::quantized() const {
  return type == cuda::WType::kQ8_0 || type == cuda::WType::kQ4_0 || type == cuda::WType::kQ4_1;
}

bool CudaLlama::Available() { return cuda::DeviceCount() > 0; }

CudaLlama::~CudaLlama() {
  for (auto& [n, graph] : decode_graphs_) cuda::DestroyGraph(graph);
  if (stream_) (void)cuda::Sync(stream_);
  for (void* p : allocations_) cuda::Free(p);
  cuda::Free(step_memory_);
  cuda::DestroyStream(stream_);
  (void)cuda::LastError();
}

Result<void*> CudaLlama::Alloc(size_t bytes) {
  void* p = cuda::Malloc(bytes);
  if (!p) return CudaError("allocating " + std::to_string(bytes) + " bytes");
  allocations_.push_back(p);
  return p;
}

Result<CudaLlama::Matrix> CudaLlama::NewMatrix(cuda::WType type, int64_t rows, int64_t cols) {
  Matrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  const size_t bytes = cpu::RowBytes(static_cast<cpu::WeightType>(type), cols) * rows;
  KILN_ASSIGN_OR_RETURN(m.data, Alloc(bytes));
  weight_bytes_ += static_cast<int64_t>(bytes);
  return m;
}

Result<std::unique_ptr<CudaLlama>> CudaLlama::Upload(const LlamaModel& model) {
  if (!Available()) return Status::Unavailable("no CUDA device");
  if (model.gemma_) {
    return Status::Unsupported("the CUDA kernels cover the Llama family; Gemma 3 runs on the CPU");
  }
  std::unique_ptr<CudaLlama> m(new CudaLlama());
  m->config_ = model.config_;
  m->inv_freq_ = model.inv_freq_;
  m->rope_interleaved_ = model.rope_interleaved_;
  m->attn_scale_ = model.attn_scale_;
  m->stream_ = cuda::CreateStream();
  if (!m->stream_) return CudaError("creating a stream");

  std::vector<uint8_t> host;
  auto matrix = [&](const cpu::WeightMatrix& w) -> Result<Matrix> {
    KILN_ASSIGN_OR_RETURN(Matrix d, m->NewMatrix(static_cast<cuda::WType>(w.type), w.rows, w.cols));
    const size_t row_bytes = cpu::RowBytes(w.type, w.cols);
    host.resize(row_bytes * w.rows);
    for (int64_t n = 0; n < w.rows; ++n) cpu::UnpackRow(w, n, host.data() + n * row_bytes);
    cuda::CopyToDevice(d.data, host.data(), host.size(), m->stream_);
    if (!cuda::Sync(m->stream_)) return CudaError("copying weights");
    return d;
  };
  auto vector = [&](const std::vector<float>& v) -> Result<float*> {
    if (v.empty()) return static_cast<float*>(nullptr);
    KILN_ASSIGN_OR_RETURN(void* p, m->Alloc(v.size() * sizeof(float)));
    cuda::CopyToDevice(p, v.data(), v.size() * sizeof(float), m->stream_);
    if (!cuda::Sync(m->stream_)) return CudaError("copying weights");
    return static_cast<float*>(p);
  };
  auto linear = [&](const LlamaModel::Linear& l) -> Result<Matrix> {
    KILN_ASSIGN_OR_RETURN(Matrix d, matrix(l.w));
    KILN_ASSIGN_OR_RETURN(d.bias, vector(l.bias));
    return d;
  };
  for (const LlamaModel::Layer& l : model.layers_) {
    Layer d;
    KILN_ASSIGN_OR_RETURN(d.attn_norm, vector(l.attn_norm));
    KILN_ASSIGN_OR_RETURN(d.ffn_norm, vector(l.ffn_norm));
    KILN_ASSIGN_OR_RETURN(d.q, linear(l.q));
    KILN_ASSIGN_OR_RETURN(d.k, linear(l.k));
    KILN_ASSIGN_OR_RETURN(d.v, linear(l.v));
    KILN_ASSIGN_OR_RETURN(d.o, linear(l.o));
    KILN_ASSIGN_OR_RETURN(d.gate, linear(l.gate));
    KILN_ASSIGN_OR_RETURN(d.up, linear(l.up));
    KILN_ASSIGN_OR_RETURN(d.down, linear(l.down));
    m->layers_.push_back(d);
  }
  KILN_ASSIGN_OR_RETURN(m->final_norm_, vector(model.final_norm_));
  const int64_t before = m->weight_bytes_;
  KILN_ASSIGN_OR_RETURN(m->embed_, matrix(model.embed_));
  m->embed_bytes_ = m->weight_bytes_ - before;
  if (model.lm_head_.data == model.embed_.data) {
    m->lm_head_ = m->embed_;  // tied
    m->output_bytes_ = m->embed_bytes_;
  } else {
    const int64_t at = m->weight_bytes_;
    KILN_ASSIGN_OR_RETURN(m->lm_head_, matrix(model.lm_head_));
    m->output_bytes_ = m->weight_bytes_ - at;
  }
  KILN_RETURN_IF_ERROR(m->SetUp());
  return m;
}

Result<std::unique_ptr<CudaLlama>> CudaLlama::Synthesize(const formats::ModelConfig& config,
                                                         cuda::WType layers, cuda::WType embedding,
                                                         uint64_t seed) {
  if (!Available()) return Status::Unavailable("no CUDA device");
  std::unique_ptr<CudaLlama> m(new CudaLlama());
  m->config_ = config;
  KILN_ASSIGN_OR_RETURN(m->inv_freq_, RotaryInverseFrequencies(config));
  m->attn_scale_ = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  m->stream_ = cuda::CreateStream();
  if (!m->stream_) return CudaError("creating a stream");
  const formats::ModelConfig& c = config;
  const int64_t h = c.hidden_size, hd = c.head_dim, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  auto matrix = [&](cuda::WType type, int64_t rows, int64_t cols) -> Result<Matrix> {
    KILN_ASSIGN_OR_RETURN(Matrix d, m->NewMatrix(type, rows, cols));
    cuda::RandomWeights(type, d.data, rows, cols, 1.0f / std::sqrt(static_cast<float>(cols)),
                        seed++, m->stream_);
    return d;
  };
  auto ones = [&](int64_t n) -> Result<float*> {
    KILN_ASSIGN_OR_RETURN(void* p, m->Alloc(n * sizeof(float)));
    cuda::FillF32(static_cast<float*>(p), n, 1.0f, false, 0, m->stream_);
    return static_cast<float*>(p);
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    Layer d;
    KILN_ASSIGN_OR_RETURN(d.attn_norm, ones(h));
    KILN_ASSIGN_OR_RETURN(d.ffn_norm, ones(h));
    KILN_ASSIGN_OR_RETURN(d.q, matrix(layers, q_dim, h));
    KILN_ASSIGN_OR_RETURN(d.k, matrix(layers, kv_dim, h));
    KILN_ASSIGN_OR_RETURN(d.v, matrix(layers, kv_dim, h));
    KILN_ASSIGN_OR_RETURN(d.o, matrix(layers, h, q_dim));
    KILN_ASSIGN_OR_RETURN(d.gate, matrix(layers, inter, h));
    KILN_ASSIGN_OR_RETURN(d.up, matrix(layers, inter, h));
    KILN_ASSIGN_OR_RETURN(d.down, matrix(layers, h, inter));
    m->layers_.push_back(d);
  }
  KILN_ASSIGN_OR_RETURN(m->final_norm_, ones(h));
  const int64_t before = m->weight_bytes_;
  KILN_ASSIGN_OR_RETURN(m->embed_, matrix(embedding, c.vocab_size, h));
  m->embed_bytes_ = m->weight_bytes_ - before;
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
    m->output_bytes_ = m->embed_bytes_;
  } else {
    const int64_t at = m->weight_bytes_;
    KILN_ASSIGN_OR_RETURN(m->lm_head_, matrix(embedding, c.vocab_size, h));
    m->output_bytes_ = m->weight_bytes_ - at;
  }
  if (!cuda::Sync(m->stream_)) return CudaError("synthesizing weights");
  KILN_RETURN_IF_ERROR(m->SetUp());
  return m;
}

Status CudaLlama::SetUp() {
  const formats::ModelConfig& c = config_;
  if (c.head_dim % 32 != 0 || c.head_dim > 256 || c.head_dim / 32 == 7) {
    return Status::Unsupported(
        "the CUDA attention kernel takes head_dim 32, 64, 96, 128, 160, "
        "192 or 256, not " +
        std::to_string(c.head_dim));
  }
  if (c.hidden_size % 32 != 0 || c.intermediate_size % 32 != 0) {
    return Status::Unsupported(
        "the CUDA kernels need hidden and intermediate sizes that are "
        "multiples of 32");
  }
  return Status::Ok();
}

int64_t CudaLlama::kv_bytes_per_token(KvDtype dtype) const {
  return KvCache::BytesPerToken(dtype, config_.num_hidden_layers, config_.num_key_value_heads,
                                config_.head_dim);
}

Status CudaLlama::AllocateKvCache(KvDtype dtype, int64_t num_blocks, int32_t block_size,
                                  int64_t max_positions) {
  if (dtype == KvDtype::kFp8E4M3) {
    return Status::Unsupported("kv_cache_dtype fp8_e4m3 on CUDA (f32 and bf16 are)");
  }
  if (!k_cache_.empty()) return Status::Internal("the KV cache is already allocated");
  kv_dtype_ = dtype;
  block_size_ = block_size;
  max_positions_ = max_positions;
  table_width_ = (max_positions + block_size - 1) / block_size;
  const int64_t kv_dim = config_.num_key_value_heads * config_.head_dim;
  const int64_t plane = num_blocks * block_size * kv_dim * (dtype == KvDtype::kF32 ? 4 : 2);
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    KILN_ASSIGN_OR_RETURN(void* k, Alloc(plane));
    KILN_ASSIGN_OR_RETURN(void* v, Alloc(plane));
    k_cache_.push_back(k);
    v_cache_.push_back(v);
    kv_bytes_ += 2 * plane;
  }
  // Angles as LlamaModel computes them: position times inverse frequency, in f32.
  const int64_t half = config_.head_dim / 2;
  std::vector<float> cos(max_positions * half), sin(cos.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq_[i];
      cos[p * half + i] = std::cos(angle);
      sin[p * half + i] = std::sin(angle);
    }
  }
  KILN_ASSIGN_OR_RETURN(void* c, Alloc(cos.size() * sizeof(float)));
  KILN_ASSIGN_OR_RETURN(void* s, Alloc(sin.size() * sizeof(float)));
  rope_cos_ = static_cast<float*>(c);
  rope_sin_ = static_cast<float*>(s);
  cuda::CopyToDevice(rope_cos_, cos.data(), cos.size() * sizeof(float), stream_);
  cuda::CopyToDevice(rope_sin_, sin.data(), sin.size() * sizeof(float), stream_);
  if (!cuda::Sync(stream_)) return CudaError("allocating the KV cache");
  return Status::Ok();
}

Status CudaLlama::Reserve(int64_t tokens, int64_t rows, int64_t chunks) {
  if (tokens <= cap_tokens_ && rows <= cap_rows_ && chunks <= cap_chunks_) return Status::Ok();
  for (auto& [n, graph] : decode_graphs_) cuda::DestroyGraph(graph);
  decode_graphs_.clear();
  if (!cuda::Sync(stream_)) return CudaError("before growing the step buffers");
  cuda::Free(step_memory_);
  step_memory_ = nullptr;
  cap_tokens_ = std::max(tokens, cap_tokens_);
  cap_rows_ = std::max(rows, cap_rows_);
  cap_chunks_ = std::max(chunks, cap_chunks_);
  const formats::ModelConfig& c = config_;
  const int64_t t = cap_tokens_, h = c.hidden_size, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * c.head_dim;
  const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
  const int64_t widest = std::max({h, inter, q_dim});
  const int64_t meta_ints = 4 * t + cap_rows_ + cap_chunks_ * table_width_;
  struct Part {
    void** at;
    int64_t bytes;
  };
  void* xq = nullptr;
  void* meta = nullptr;
  const Part parts[] = {
      {reinterpret_cast<void**>(&x_), t * h * 4},
      {reinterpret_cast<void**>(&xn_), std::max(t, cap_rows_) * h * 4},
      {reinterpret_cast<void**>(&q_), t * q_dim * 4},
      {reinterpret_cast<void**>(&k_), t * kv_dim * 4},
      {reinterpret_cast<void**>(&v_), t * kv_dim * 4},
      {reinterpret_cast<void**>(&att_), t * q_dim * 4},
      {reinterpret_cast<void**>(&gate_), t * inter * 4},
      {reinterpret_cast<void**>(&up_), t * inter * 4},
      {reinterpret_cast<void**>(&tmp_), t * h * 4},
      {reinterpret_cast<void**>(&logits_), cap_rows_ * c.vocab_size * 4},
      {&xq, std::max(t, cap_rows_) * (widest / 32) * static_cast<int64_t>(44)},
      {&meta, meta_ints * 4},
      {reinterpret_cast<void**>(&workspace_), kWorkspaceFloats * 4},
  };
  int64_t total = 0;
  for (const Part& p : parts) total += Align(p.bytes);
  step_memory_ = cuda::Malloc(total);
  if (!step_memory_)
    return CudaError("allocating " + std::to_string(total) + " bytes of step buffers");
  int64_t offset = 0;
  for (const Part& p : parts) {
    *p.at = static_cast<uint8_t*>(step_memory_) + offset;
    offset += Align(p.bytes);
  }
  xq_ = xq;
  meta_ = static_cast<int32_t*>(meta);
  host_meta_.assign(meta_ints, 0);
  return Status::Ok();
}

void CudaLlama::Project(const Matrix& w, const float* x, int64_t rows, float* y, bool xq_ready) {
  // Only the CUDA-core path reads quantized activations (cuda::MatMul).
  if (w.quantized() && !xq_ready && rows <= cuda::kCudaCoreRows) {
    cuda::QuantizeQ8(x, rows, w.cols, xq_, stream_);
  }
  cuda::MatMul(w.type, w.data, w.rows, w.cols, x, xq_, rows, w.bias, y, stream_, workspace_,
               kWorkspaceFloats);
}

void CudaLlama::Enqueue(int64_t n, int64_t rows) {
  const formats::ModelConfig& c = config_;
  const int64_t h = c.hidden_size, inter = c.intermediate_size, hd = c.head_dim;
  const int64_t heads = c.num_attention_heads, kv_heads = c.num_key_value_heads;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const int32_t* ids = meta_;
  const int32_t* positions = meta_ + cap_tokens_;
  const int32_t* slots = meta_ + 2 * cap_tokens_;
  const int32_t* chunks = meta_ + 3 * cap_tokens_;
  const int32_t* logit_rows = meta_ + 4 * cap_tokens_;
  const int32_t* tables = logit_rows + cap_rows_;
  const bool bf16 = kv_dtype_ == KvDtype::kBF16;

  cuda::Embed(embed_.type, embed_.data, h, ids, n, 1.0f, x_, stream_);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    // x += the previous layer's MLP output, then the attention norm.
    cuda::RmsNorm(x_, li == 0 ? nullptr : tmp_, nullptr, l.attn_norm, xn_, n, h, eps, stream_);
    Project(l.q, xn_, n, q_, false);
    Project(l.k, xn_, n, k_, l.q.quantized() && l.k.quantized());
    Project(l.v, xn_, n, v_, l.q.quantized() && l.v.quantized());
    cuda::Rope(q_, k_, positions, rope_cos_, rope_sin_, n, heads, kv_heads, hd, rope_interleaved_,
               stream_);
    cuda::KvWrite(k_, v_, slots, n, kv_heads * hd, k_cache_[li], v_cache_[li], bf16, stream_);
    cuda::Attention(q_, k_cache_[li], v_cache_[li], bf16, positions, chunks, tables, table_width_,
                    block_size_, n, heads, kv_heads, hd, attn_scale_, att_, stream_);
    Project(l.o, att_, n, tmp_, false);
    cuda::RmsNorm(x_, tmp_, nullptr, l.ffn_norm, xn_, n, h, eps, stream_);
    Project(l.gate, xn_, n, gate_, false);
    Project(l.up, xn_, n, up_, l.gate.quantized() && l.up.quantized());
    cuda::SiluMul(gate_, up_, n * inter, stream_);
    Project(l.down, gate_, n, tmp_, false);
  }
  // The last layer's MLP output joins only the rows whose logits are returned.
  cuda::RmsNorm(x_, layers_.empty() ? nullptr : tmp_, logit_rows, final_norm_, xn_, rows, h, eps,
                stream_);
  Project(lm_head_, xn_, rows, logits_, false);
}

Status CudaLlama::Forward(const engine::StepLayout& layout, std::vector<float>* logits) {
  if (k_cache_.empty()) return Status::Internal("the KV cache is not allocated");
  if (layout.num_groups != 1) return Status::Unsupported("KV cache groups on CUDA");
  const int64_t n = layout.num_tokens(), chunks = layout.num_chunks();
  const int64_t rows = static_cast<int64_t>(layout.logit_rows.size());
  if (n == 0) return Status::Ok();
  for (int32_t p : layout.positions) {
    if (p < 0 || p >= max_positions_) {
      return Status::OutOfRange("position " + std::to_string(p) + " is past the " +
                                std::to_string(max_positions_) + " the cache was sized for");
    }
  }
  if (layout.max_blocks_per_seq > table_width_) {
    return Status::OutOfRange("a block table of " + std::to_string(layout.max_blocks_per_seq) +
                              " blocks is longer than max_positions allows");
  }
  KILN_RETURN_IF_ERROR(Reserve(n, rows, chunks));
  int32_t* meta = host_meta_.data();
  std::copy(layout.token_ids.begin(), layout.token_ids.end(), meta);
  std::copy(layout.positions.begin(), layout.positions.end(), meta + cap_tokens_);
  for (int64_t t = 0; t < n; ++t)
    meta[2 * cap_tokens_ + t] = static_cast<int32_t>(layout.Slot(0, t));
  std::copy(layout.token_chunk.begin(), layout.token_chunk.end(), meta + 3 * cap_tokens_);
  std::copy(layout.logit_rows.begin(), layout.logit_rows.end(), meta + 4 * cap_tokens_);
  int32_t* tables = meta + 4 * cap_tokens_ + cap_rows_;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int32_t* table = layout.Table(0, ch);
    std::copy(table, table + layout.max_blocks_per_seq, tables + ch * table_width_);
  }
  const size_t meta_bytes = (tables + chunks * table_width_ - meta) * sizeof(int32_t);
  cuda::CopyToDevice(meta_, meta, meta_bytes, stream_);

  bool decode = use_graphs_ && n == chunks && rows == n;
  for (int64_t t = 0; decode && t < n; ++t) {
    decode = layout.logit_rows[t] == t && layout.token_chunk[t] == t;
  }
  if (decode) {
    auto it = decode_graphs_.find(n);
    if (it == decode_graphs_.end()) {
      if (!cuda::BeginCapture(stream_)) return CudaError("capturing a decode step");
      Enqueue(n, rows);
      void* graph = cuda::EndCapture(stream_);
      if (!graph) return CudaError("capturing a decode step");
      it = decode_graphs_.emplace(n, graph).first;
    }
    if (!cuda::LaunchGraph(it->second, stream_)) return CudaError("replaying a decode step");
  } else {
    Enqueue(n, rows);
  }
  const size_t offset = logits->size();
  logits->resize(offset + static_cast<size_t>(rows * config_.vocab_size));
  cuda::CopyToHost(logits->data() + offset, logits_, rows * config_.vocab_size * sizeof(float),
                   stream_);
  if (!cuda::Sync(stream_)) return CudaError("running a step");
  return Status::Ok();
}

}  // namespace kiln::native
