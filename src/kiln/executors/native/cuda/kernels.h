// CUDA kernels of the native runtime, behind a plain C++ interface (no CUDA header needed to
// call them): device memory, one stream, graphs, and the Llama family's step kernels.
//
// Layouts are the CPU path's (cpu/kernels.h) with the weights unpacked: a matrix is [rows, cols]
// in the stored row layout, GGUF's blocks for Q8_0, Q4_0 and Q4_1 (RowBytes apart), plain values
// for f32, bf16 and f16. Activations are f32, [tokens, width] row-major. For the quantized types
// the activations are first quantized to 8-bit blocks (QuantizeQ8), as on the CPU: the same
// blocks, integer dot products (dp4a) per block and one scale multiply per block; only the order
// in which the blocks' products are summed differs (lanes of a warp, then a tree), so results
// agree with the CPU to float rounding, not bitwise.
//
// Every launcher enqueues on `stream` and returns at once; Sync() reports the first error.
// Kernels read per-token metadata (positions, slots, chunks, block tables) from device memory,
// never from their arguments, so a decode step can be captured once as a graph and replayed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln::native::cuda {

// The weight types, in cpu::WeightType's order.
enum class WType : int { kF32, kQ8_0, kQ4_0, kQ4_1, kBF16, kF16 };

// Bytes of one BlockQ8: {float d; float sum; int8 q[32]}, 32 activations.
inline constexpr size_t kBlockQ8Bytes = 40;

struct DeviceInfo {
  std::string name;
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
  int multiprocessors = 0;
  int compute_major = 0, compute_minor = 0;
};

int DeviceCount();  // 0 without a driver or a GPU
// Device 0's properties; false (with LastError) when it cannot be read.
bool QueryDevice(DeviceInfo* info);
// The first error since the last call, as text ("" for none), and clears it.
std::string LastError();

void* Malloc(size_t bytes);  // nullptr on failure (LastError says why)
void Free(void* p);
void* CreateStream();
void DestroyStream(void* stream);
void CopyToDevice(void* dst, const void* src, size_t bytes, void* stream);
void CopyToHost(void* dst, const void* src, size_t bytes, void* stream);
void CopyOnDevice(void* dst, const void* src, size_t bytes, void* stream);
void Memset(void* dst, int value, size_t bytes, void* stream);
// Waits for the stream; false on any error of the work enqueued (LastError says which).
bool Sync(void* stream);

// Graphs: BeginCapture, enqueue the work, EndCapture returns an executable graph (nullptr on
// failure) that Launch replays on the stream.
bool BeginCapture(void* stream);
void* EndCapture(void* stream);
bool LaunchGraph(void* graph, void* stream);
void DestroyGraph(void* graph);

// Milliseconds between two points of the stream (events), for benchmarks.
void* RecordEvent(void* stream);
float ElapsedMs(void* start, void* end);
void DestroyEvent(void* event);

// Fills `rows` rows of `cols` weights of `type` with pseudo-random values of magnitude about
// `scale` (block scales fp16 scale / 8 for Q4, / 127 for Q8_0), for synthesized models.
void RandomWeights(WType type, void* w, int64_t rows, int64_t cols, float scale, uint64_t seed,
                   void* stream);
// n f32 values: `value`, or pseudo-random in [-value, value] with `random`.
void FillF32(float* x, int64_t n, float value, bool random, uint64_t seed, void* stream);

// out[t] = scale * dequantized row ids[t] of `table` ([vocab, h] of `type`).
void Embed(WType type, const void* table, int64_t h, const int32_t* ids, int64_t tokens,
           float scale, float* out, void* stream);
// When `residual` is given, x[r] += residual[r] first (x updated in place). Then
// out[r] = w * x[r] / sqrt(mean(x[r]^2) + eps). `rows_index` (optional) picks which rows of x
// (and residual) make out's `rows` rows; x is then read only.
void RmsNorm(float* x, const float* residual, const int32_t* rows_index, const float* w, float* out,
             int64_t rows, int64_t h, float eps, void* stream);
// Quantizes `rows` rows of k floats (k a multiple of 32) to BlockQ8s, k / 32 per row, the CPU's
// QuantizeRowQ8: d = max|x| / 127, q = round(x / d) half away from zero.
void QuantizeQ8(const float* x, int64_t rows, int64_t k, void* blocks, void* stream);
// y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) for m < rows, n < n_out; y row stride n_out.
// Up to kCudaCoreRows rows (decode), the quantized types read `xq` (QuantizeQ8 of x) and the
// float types read x, on the CUDA cores in f32 as above. More rows, for every type but f32 (and
// k a multiple of 32), go through the tensor cores: x and the (dequantized) weights rounded to
// bf16, products summed in f32; xq is not read. So a row's result depends on how many rows share
// its step: the GPU path is not batch invariant (the CPU path is). With a `workspace` of
// `workspace_floats`, a tensor-core product with too few output tiles to fill the GPU is split
// over k, the slices' partial sums added in a fixed order.
inline constexpr int64_t kCudaCoreRows = 8;
void MatMul(WType type, const void* w, int64_t n_out, int64_t k, const float* x, const void* xq,
            int64_t rows, const float* bias, float* y, void* stream, float* workspace = nullptr,
            int64_t workspace_floats = 0);
// Rotary embedding of q ([tokens, heads, hd]) and k ([tokens, kv_heads, hd]) at positions[t],
// with tables cos/sin [positions, hd / 2]; pairs (i, i + hd/2), or (2i, 2i + 1) `interleaved`.
void Rope(float* q, float* k, const int32_t* positions, const float* cos, const float* sin,
          int64_t tokens, int64_t heads, int64_t kv_heads, int64_t hd, bool interleaved,
          void* stream);
// Stores token t's keys and values (kv_dim floats each) at slots[t] of the layer's cache
// ([slots, kv_dim], f32 or bf16).
void KvWrite(const float* k, const float* v, const int32_t* slots, int64_t tokens, int64_t kv_dim,
             void* k_cache, void* v_cache, bool bf16, void* stream);
// Causal attention over the paged cache: token t (position positions[t], chunk chunks[t]) attends
// to positions [0, positions[t]] through row chunks[t] of `tables` ([chunks, table_width] block
// ids), each head of q ([tokens, heads, hd]) to its kv head; out is [tokens, heads, hd].
void Attention(const float* q, const void* k_cache, const void* v_cache, bool bf16,
               const int32_t* positions, const int32_t* chunks, const int32_t* tables,
               int64_t table_width, int64_t block_size, int64_t tokens, int64_t heads,
               int64_t kv_heads, int64_t hd, float scale, float* out, void* stream);
// gate[i] = silu(gate[i]) * up[i] for i < n.
void SiluMul(float* gate, const float* up, int64_t n, void* stream);

}  // namespace kiln::native::cuda
