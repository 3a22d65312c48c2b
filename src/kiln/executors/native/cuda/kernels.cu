#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "kiln/executors/native/cuda/kernels.h"

namespace kiln::native::cuda {
namespace {

std::mutex error_mutex;
std::string first_error;

void Note(cudaError_t e) {
  if (e == cudaSuccess) return;
  std::lock_guard<std::mutex> lock(error_mutex);
  if (first_error.empty()) first_error = cudaGetErrorString(e);
}
void Note(const char* message) {
  std::lock_guard<std::mutex> lock(error_mutex);
  if (first_error.empty()) first_error = message;
}
void AfterLaunch() { Note(cudaGetLastError()); }

cudaStream_t S(void* stream) { return static_cast<cudaStream_t>(stream); }

constexpr int kWarp = 32;

unsigned Blocks(int64_t n, int threads) {
  return static_cast<unsigned>(std::max<int64_t>(1, (n + threads - 1) / threads));
}

// The GGUF blocks (cpu/kernels.h) and the activation blocks.
__host__ __device__ constexpr int BlockBytes(WType t) {
  return t == WType::kQ8_0 ? 34 : t == WType::kQ4_0 ? 18 : t == WType::kQ4_1 ? 20 : 0;
}
struct BlockQ8 {
  float d;
  float sum;  // d * qsum
  int32_t qsum;
  int8_t q[32];
};
static_assert(sizeof(BlockQ8) == 44);

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int WarpSumInt(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float Half(const uint8_t* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}
// Four bytes at a 2-byte aligned address.
__device__ __forceinline__ int LoadInt2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<int>(static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16));
}
__device__ __forceinline__ int LoadInt4(const uint8_t* p) {
  return *reinterpret_cast<const int*>(p);
}
__device__ __forceinline__ float Bf16(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// ---------------------------------------------------------------------------------------------
// Quantized matrix multiply, up to kCudaCoreRows activation rows: a block of kRowThreads threads
// per output column. Thread t takes whole weight blocks t, t + kRowThreads, ... (16 or 32 quant
// bytes in a few wide loads), multiplies them with each row's 8-bit activation block (dp4a),
// scales by the two blocks' scales, and the block's warps add their sums in shared memory.
// (One warp per column, lanes taking quarter blocks, reached 98 tok/s where this reaches 267 on
// an H200, Llama-3-8B Q4_1 at batch 1.)
constexpr int kRowThreads = 128;

template <WType T, int MT>
__global__ void __launch_bounds__(kRowThreads)
    MatVecQKernel(const uint8_t* __restrict__ w, int64_t n_out, int64_t k,
                  const BlockQ8* __restrict__ xq, int64_t rows, const float* __restrict__ bias,
                  float* __restrict__ y) {
  const int64_t n = blockIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * MT;
  const int64_t blocks = k / 32;
  const uint8_t* row = w + n * blocks * BlockBytes(T);
  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.0f;
  for (int64_t b = threadIdx.x; b < blocks; b += kRowThreads) {
    const uint8_t* blk = row + b * BlockBytes(T);
    const float d = Half(blk);
    float offset = 0.0f;
    constexpr int kInts = T == WType::kQ8_0 ? 8 : 4;
    int q[kInts];
    if constexpr (T == WType::kQ4_1) {
      offset = Half(blk + 2);
#pragma unroll
      for (int i = 0; i < kInts; ++i) q[i] = LoadInt4(blk + 4 + 4 * i);
    } else {
#pragma unroll
      for (int i = 0; i < kInts; ++i) q[i] = LoadInt2(blk + 2 + 4 * i);
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      if (m0 + m >= rows) break;
      const BlockQ8& x = xq[(m0 + m) * blocks + b];
      const int* xv = reinterpret_cast<const int*>(x.q);
      int sum = 0;
      if constexpr (T == WType::kQ8_0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) sum = __dp4a(q[i], xv[i], sum);
        acc[m] += d * x.d * static_cast<float>(sum);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          sum = __dp4a(q[i] & 0x0F0F0F0F, xv[i], sum);
          sum = __dp4a((q[i] >> 4) & 0x0F0F0F0F, xv[4 + i], sum);
        }
        if constexpr (T == WType::kQ4_0) {
          acc[m] += d * x.d * static_cast<float>(sum - 8 * x.qsum);
        } else {
          acc[m] += d * x.d * static_cast<float>(sum) + offset * x.sum;
        }
      }
    }
  }
  __shared__ float partial[kRowThreads / kWarp][MT];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    const float v = WarpSum(acc[m]);
    if (lane == 0) partial[warp][m] = v;
  }
  __syncthreads();
  if (threadIdx.x < MT && m0 + threadIdx.x < rows) {
    float v = 0.0f;
    for (int i = 0; i < kRowThreads / kWarp; ++i) v += partial[i][threadIdx.x];
    y[(m0 + threadIdx.x) * n_out + n] = v + (bias ? bias[n] : 0.0f);
  }
}

// Float weights, up to kCudaCoreRows rows: a warp per output column (kMatMulWarps columns a
// block).
constexpr int kMatMulWarps = 4;

// Lane l takes chunks of 8 consecutive weights l, l + 32, ..., U loaded ahead.
template <WType T>
__device__ __forceinline__ void LoadChunk(const uint8_t* row, int64_t c, float* out) {
  if constexpr (T == WType::kF32) {
    const float4* p = reinterpret_cast<const float4*>(row) + 2 * c;
    const float4 a = p[0], b = p[1];
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
    out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  } else {
    const uint4 raw = reinterpret_cast<const uint4*>(row)[c];
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (T == WType::kBF16) {
        out[2 * i] = Bf16(static_cast<uint16_t>(words[i] & 0xFFFF));
        out[2 * i + 1] = Bf16(static_cast<uint16_t>(words[i] >> 16));
      } else {
        out[2 * i] = __half2float(__ushort_as_half(static_cast<uint16_t>(words[i] & 0xFFFF)));
        out[2 * i + 1] = __half2float(__ushort_as_half(static_cast<uint16_t>(words[i] >> 16)));
      }
    }
  }
}

template <WType T, int MT, int U>
__global__ void __launch_bounds__(kMatMulWarps* kWarp)
    MatMulFKernel(const uint8_t* __restrict__ w, int64_t n_out, int64_t k,
                  const float* __restrict__ x, int64_t rows, const float* __restrict__ bias,
                  float* __restrict__ y) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * MT;
  const int64_t chunks = k / 8;
  const int64_t row_bytes = k * (T == WType::kF32 ? 4 : 2);
  for (int64_t n = static_cast<int64_t>(blockIdx.y) * kMatMulWarps + warp; n < n_out;
       n += static_cast<int64_t>(gridDim.y) * kMatMulWarps) {
    const uint8_t* row = w + n * row_bytes;
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[m] = 0.0f;
    for (int64_t c0 = lane; c0 < chunks; c0 += kWarp * U) {
      float wv[U][8];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c0 + u * kWarp < chunks) LoadChunk<T>(row, c0 + u * kWarp, wv[u]);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t c = c0 + u * kWarp;
        if (c >= chunks) break;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m0 + m >= rows) break;
          const float4* xp = reinterpret_cast<const float4*>(x + (m0 + m) * k) + 2 * c;
          const float4 a = xp[0], b = xp[1];
          float s = acc[m];
          s = fmaf(wv[u][0], a.x, s);
          s = fmaf(wv[u][1], a.y, s);
          s = fmaf(wv[u][2], a.z, s);
          s = fmaf(wv[u][3], a.w, s);
          s = fmaf(wv[u][4], b.x, s);
          s = fmaf(wv[u][5], b.y, s);
          s = fmaf(wv[u][6], b.z, s);
          s = fmaf(wv[u][7], b.w, s);
          acc[m] = s;
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const float v = WarpSum(acc[m]);
      if (lane == 0 && m0 + m < rows) y[(m0 + m) * n_out + n] = v + (bias ? bias[n] : 0.0f);
    }
  }
}

// Tensor-core matrix multiply for steps of more than kCudaCoreRows rows (prefill, large decode
// batches): a block computes a 64-row x 32-column tile of y with bf16 WMMA and f32 accumulation.
// Each 32-wide slice of k is staged in shared memory as bf16: the activations rounded, the
// weights dequantized (a quantized block's values d * q + m, rounded), the next slice's global
// loads issued before the current one is multiplied.
constexpr int kTcRows = 64, kTcCols = 32, kTcK = 32, kTcPad = 8;

__device__ __forceinline__ uint32_t PackBf16(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Weights k0 + 8 * part .. + 7 of row `row` as 8 bf16 (4 words).
template <WType T>
__device__ __forceinline__ void LoadWeights8(const uint8_t* __restrict__ w, int64_t row, int64_t k,
                                             int64_t k0, int part, uint32_t* out) {
  if constexpr (T == WType::kBF16 || T == WType::kF16) {
    const uint4 raw = *reinterpret_cast<const uint4*>(w + (row * k + k0 + 8 * part) * 2);
    if constexpr (T == WType::kBF16) {
      out[0] = raw.x, out[1] = raw.y, out[2] = raw.z, out[3] = raw.w;
    } else {
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        out[i] = PackBf16(__half2float(__ushort_as_half(static_cast<uint16_t>(words[i] & 0xFFFF))),
                          __half2float(__ushort_as_half(static_cast<uint16_t>(words[i] >> 16))));
      }
    }
  } else {
    const uint8_t* b = w + (row * (k / 32) + k0 / 32) * BlockBytes(T);
    const float d = Half(b);
    float v[8];
    if constexpr (T == WType::kQ8_0) {
      const int lo = LoadInt2(b + 2 + 8 * part), hi = LoadInt2(b + 2 + 8 * part + 4);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = d * static_cast<float>(static_cast<int8_t>(lo >> (8 * i)));
        v[4 + i] = d * static_cast<float>(static_cast<int8_t>(hi >> (8 * i)));
      }
    } else {
      // Elements 0-15 are the low nibbles of qs[0..15], 16-31 the high ones.
      const int first = (part % 2) * 8, shift = part >= 2 ? 4 : 0;
      int lo, hi;
      float m = 0.0f;
      if constexpr (T == WType::kQ4_1) {
        m = Half(b + 2);
        lo = LoadInt4(b + 4 + first);
        hi = LoadInt4(b + 4 + first + 4);
      } else {
        lo = LoadInt2(b + 2 + first);
        hi = LoadInt2(b + 2 + first + 4);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n0 = ((lo >> (8 * i)) >> shift) & 0x0F, n1 = ((hi >> (8 * i)) >> shift) & 0x0F;
        if constexpr (T == WType::kQ4_1) {
          v[i] = fmaf(d, static_cast<float>(n0), m);
          v[4 + i] = fmaf(d, static_cast<float>(n1), m);
        } else {
          v[i] = d * static_cast<float>(n0 - 8);
          v[4 + i] = d * static_cast<float>(n1 - 8);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = PackBf16(v[2 * i], v[2 * i + 1]);
  }
}

// Split over k (gridDim.z > 1, when the tiles are too few to fill the GPU): slice z of
// [k_begin, k_end) writes its partial sums to y + z * rows * n_out, without the bias, and
// ReduceSplitsKernel adds the slices in order.
template <WType T>
__global__ void __launch_bounds__(128)
    MatMulTcKernel(const uint8_t* __restrict__ w, int64_t n_out, int64_t k, int64_t k_chunk,
                   const float* __restrict__ x, int64_t rows, const float* __restrict__ bias,
                   float* __restrict__ y) {
  using namespace nvcuda;
  __shared__ __align__(32) __nv_bfloat16 a_tile[kTcRows][kTcK + kTcPad];
  __shared__ __align__(32) __nv_bfloat16 b_tile[kTcCols][kTcK + kTcPad];
  __shared__ __align__(32) float c_tile[kTcRows][kTcCols + 4];
  const int tid = threadIdx.x, warp = tid / kWarp;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTcCols;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTcRows;
  // This thread's share of each slice: activations row tid / 2, 16 values from (tid % 2) * 16;
  // weights row tid / 4, 8 values from (tid % 4) * 8.
  const int a_row = tid / 2, a_col = (tid % 2) * 16;
  const int b_row = tid / 4, b_part = tid % 4;
  const bool a_valid = m0 + a_row < rows, b_valid = n0 + b_row < n_out;
  uint32_t a_regs[8], b_regs[4];
  auto load = [&](int64_t k0) {
    if (a_valid) {
      const float4* p = reinterpret_cast<const float4*>(x + (m0 + a_row) * k + k0 + a_col);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float4 f = p[i];
        a_regs[2 * i] = PackBf16(f.x, f.y);
        a_regs[2 * i + 1] = PackBf16(f.z, f.w);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) a_regs[i] = 0;
    }
    if (b_valid) {
      LoadWeights8<T>(w, n0 + b_row, k, k0, b_part, b_regs);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) b_regs[i] = 0;
    }
  };
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
  wmma::fill_fragment(acc[0], 0.0f);
  wmma::fill_fragment(acc[1], 0.0f);
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_chunk;
  const int64_t k_end = k_begin + k_chunk < k ? k_begin + k_chunk : k;
  if (gridDim.z > 1) {
    y += static_cast<int64_t>(blockIdx.z) * rows * n_out;
    bias = nullptr;
  }
  if (k_begin < k_end) load(k_begin);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTcK) {
    uint4* a_dst = reinterpret_cast<uint4*>(&a_tile[a_row][a_col]);
    a_dst[0] = make_uint4(a_regs[0], a_regs[1], a_regs[2], a_regs[3]);
    a_dst[1] = make_uint4(a_regs[4], a_regs[5], a_regs[6], a_regs[7]);
    *reinterpret_cast<uint4*>(&b_tile[b_row][8 * b_part]) =
        make_uint4(b_regs[0], b_regs[1], b_regs[2], b_regs[3]);
    __syncthreads();
    if (k0 + kTcK < k_end) load(k0 + kTcK);
#pragma unroll
    for (int kk = 0; kk < kTcK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
      wmma::load_matrix_sync(a, &a_tile[warp * 16][kk], kTcK + kTcPad);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(b, &b_tile[j * 16][kk], kTcK + kTcPad);
        wmma::mma_sync(acc[j], a, b, acc[j]);
      }
    }
    __syncthreads();
  }
  wmma::store_matrix_sync(&c_tile[warp * 16][0], acc[0], kTcCols + 4, wmma::mem_row_major);
  wmma::store_matrix_sync(&c_tile[warp * 16][16], acc[1], kTcCols + 4, wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < kTcRows * kTcCols; i += blockDim.x) {
    const int r = i / kTcCols, c = i % kTcCols;
    if (m0 + r < rows && n0 + c < n_out) {
      y[(m0 + r) * n_out + n0 + c] = c_tile[r][c] + (bias ? bias[n0 + c] : 0.0f);
    }
  }
}

__global__ void ReduceSplitsKernel(const float* __restrict__ parts, int64_t splits, int64_t count,
                                   int64_t n_out, const float* __restrict__ bias,
                                   float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float v = 0.0f;
  for (int64_t z = 0; z < splits; ++z) v += parts[z * count + i];
  y[i] = v + (bias ? bias[i % n_out] : 0.0f);
}

int Multiprocessors() {
  static const int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return 100;
    }
    return n;
  }();
  return count;
}

void LaunchMatMulTc(WType type, const void* w, int64_t n_out, int64_t k, const float* x,
                    int64_t rows, const float* bias, float* y, float* workspace,
                    int64_t workspace_floats, cudaStream_t s) {
  const int64_t tiles = ((n_out + kTcCols - 1) / kTcCols) * ((rows + kTcRows - 1) / kTcRows);
  // Enough blocks for four per multiprocessor, each slice at least 8 steps of k.
  int64_t splits = std::min<int64_t>((4 * Multiprocessors() + tiles - 1) / tiles, k / (8 * kTcK));
  if (workspace) splits = std::min(splits, workspace_floats / (rows * n_out));
  if (!workspace || splits < 2) splits = 1;
  const int64_t steps = k / kTcK;
  const int64_t k_chunk = (steps + splits - 1) / splits * kTcK;
  splits = (k + k_chunk - 1) / k_chunk;
  float* out = splits > 1 ? workspace : y;
  const dim3 grid(static_cast<unsigned>((n_out + kTcCols - 1) / kTcCols),
                  static_cast<unsigned>((rows + kTcRows - 1) / kTcRows),
                  static_cast<unsigned>(splits));
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  switch (type) {
    case WType::kQ8_0:
      MatMulTcKernel<WType::kQ8_0><<<grid, 128, 0, s>>>(wb, n_out, k, k_chunk, x, rows, bias, out);
      break;
    case WType::kQ4_0:
      MatMulTcKernel<WType::kQ4_0><<<grid, 128, 0, s>>>(wb, n_out, k, k_chunk, x, rows, bias, out);
      break;
    case WType::kQ4_1:
      MatMulTcKernel<WType::kQ4_1><<<grid, 128, 0, s>>>(wb, n_out, k, k_chunk, x, rows, bias, out);
      break;
    case WType::kBF16:
      MatMulTcKernel<WType::kBF16><<<grid, 128, 0, s>>>(wb, n_out, k, k_chunk, x, rows, bias, out);
      break;
    case WType::kF16:
      MatMulTcKernel<WType::kF16><<<grid, 128, 0, s>>>(wb, n_out, k, k_chunk, x, rows, bias, out);
      break;
    case WType::kF32:
      Note("the tensor-core path takes no f32 weights");
      return;
  }
  AfterLaunch();
  if (splits > 1) {
    const int64_t count = rows * n_out;
    ReduceSplitsKernel<<<Blocks(count, 256), 256, 0, s>>>(workspace, splits, count, n_out, bias, y);
    AfterLaunch();
  }
}

template <int MT>
void LaunchMatMul(WType type, const void* w, int64_t n_out, int64_t k, const float* x,
                  const void* xq, int64_t rows, const float* bias, float* y, cudaStream_t s) {
  const dim3 grid(
      static_cast<unsigned>((rows + MT - 1) / MT),
      static_cast<unsigned>(std::min<int64_t>((n_out + kMatMulWarps - 1) / kMatMulWarps, 65535)));
  const dim3 block(kMatMulWarps * kWarp);
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const BlockQ8* q = static_cast<const BlockQ8*>(xq);
  if (BlockBytes(type) > 0) {
    const dim3 row_grid(static_cast<unsigned>(n_out), static_cast<unsigned>((rows + MT - 1) / MT));
    if (type == WType::kQ8_0) {
      MatVecQKernel<WType::kQ8_0, MT>
          <<<row_grid, kRowThreads, 0, s>>>(wb, n_out, k, q, rows, bias, y);
    } else if (type == WType::kQ4_0) {
      MatVecQKernel<WType::kQ4_0, MT>
          <<<row_grid, kRowThreads, 0, s>>>(wb, n_out, k, q, rows, bias, y);
    } else {
      MatVecQKernel<WType::kQ4_1, MT>
          <<<row_grid, kRowThreads, 0, s>>>(wb, n_out, k, q, rows, bias, y);
    }
    AfterLaunch();
    return;
  }
  switch (type) {
    case WType::kF32:
      MatMulFKernel<WType::kF32, MT, 2><<<grid, block, 0, s>>>(wb, n_out, k, x, rows, bias, y);
      break;
    case WType::kBF16:
      MatMulFKernel<WType::kBF16, MT, 2><<<grid, block, 0, s>>>(wb, n_out, k, x, rows, bias, y);
      break;
    case WType::kF16:
      MatMulFKernel<WType::kF16, MT, 2><<<grid, block, 0, s>>>(wb, n_out, k, x, rows, bias, y);
      break;
    default:
      break;
  }
  AfterLaunch();
}

// ---------------------------------------------------------------------------------------------
__global__ void QuantizeQ8Kernel(const float* __restrict__ x, int64_t total_blocks,
                                 BlockQ8* __restrict__ out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (b >= total_blocks) return;
  const float v = x[b * 32 + lane];
  const float amax = WarpMax(fabsf(v));
  const float d = amax / 127.0f;
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = static_cast<int>(roundf(v * inv));
  const int sum = WarpSumInt(q);
  out[b].q[lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    out[b].d = d;
    out[b].sum = d * static_cast<float>(sum);
    out[b].qsum = sum;
  }
}

constexpr int kNormThreads = 256;

__global__ void RmsNormKernel(float* __restrict__ x, const float* __restrict__ residual,
                              const int32_t* __restrict__ rows_index, const float* __restrict__ w,
                              float* __restrict__ out, int64_t h, float eps) {
  const int64_t r = blockIdx.x;
  const int64_t src = rows_index ? rows_index[r] : r;
  float* xr = x + src * h;
  const float* rr = residual ? residual + src * h : nullptr;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    float v = xr[i];
    if (rr) {
      v += rr[i];
      if (!rows_index) xr[i] = v;
    }
    sum += static_cast<double>(v) * v;
  }
  __shared__ double partial[kNormThreads / kWarp];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = sum;
  __syncthreads();
  double total = 0.0;
  for (int i = 0; i < kNormThreads / kWarp; ++i) total += partial[i];
  const float inv = 1.0f / sqrtf(static_cast<float>(total / static_cast<double>(h)) + eps);
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    float v = xr[i];
    if (rr && rows_index) v += rr[i];
    out[r * h + i] = w[i] * (v * inv);
  }
}

__global__ void EmbedKernel(WType type, const uint8_t* __restrict__ table, int64_t h,
                            const int32_t* __restrict__ ids, int64_t tokens, float scale,
                            float* __restrict__ out) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= tokens * h) return;
  const int64_t t = e / h, i = e % h;
  const int64_t id = ids[t];
  float v = 0.0f;
  switch (type) {
    case WType::kF32:
      v = reinterpret_cast<const float*>(table)[id * h + i];
      break;
    case WType::kBF16:
      v = Bf16(reinterpret_cast<const uint16_t*>(table)[id * h + i]);
      break;
    case WType::kF16:
      v = __half2float(reinterpret_cast<const __half*>(table)[id * h + i]);
      break;
    default: {
      const int bytes = type == WType::kQ8_0 ? 34 : type == WType::kQ4_0 ? 18 : 20;
      const uint8_t* b = table + (id * (h / 32) + i / 32) * bytes;
      const int j = static_cast<int>(i % 32);
      const float d = Half(b);
      if (type == WType::kQ8_0) {
        v = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[2 + j])));
      } else {
        const uint8_t* qs = b + (type == WType::kQ4_1 ? 4 : 2);
        const int nibble = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
        if (type == WType::kQ4_1) {
          v = __fadd_rn(__fmul_rn(d, static_cast<float>(nibble)), Half(b + 2));
        } else {
          v = __fmul_rn(d, static_cast<float>(nibble - 8));
        }
      }
    }
  }
  out[e] = scale == 1.0f ? v : v * scale;
}

__global__ void RopeKernel(float* __restrict__ q, float* __restrict__ k,
                           const int32_t* __restrict__ positions, const float* __restrict__ cos,
                           const float* __restrict__ sin, int64_t tokens, int64_t heads,
                           int64_t kv_heads, int64_t hd, bool interleaved) {
  const int64_t half = hd / 2;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t per_token = (heads + kv_heads) * half;
  if (e >= tokens * per_token) return;
  const int64_t t = e / per_token, rest = e % per_token;
  const int64_t head = rest / half, i = rest % half;
  float* v = head < heads ? q + (t * heads + head) * hd : k + (t * kv_heads + head - heads) * hd;
  const int64_t p = positions[t];
  const float c = cos[p * half + i], s = sin[p * half + i];
  float* a = interleaved ? v + 2 * i : v + i;
  float* b = interleaved ? v + 2 * i + 1 : v + i + half;
  const float x1 = *a, x2 = *b;
  *a = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
  *b = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

__global__ void KvWriteKernel(const float* __restrict__ k, const float* __restrict__ v,
                              const int32_t* __restrict__ slots, int64_t tokens, int64_t kv_dim,
                              void* k_cache, void* v_cache, bool bf16) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= tokens * kv_dim) return;
  const int64_t t = e / kv_dim, i = e % kv_dim;
  const int64_t at = static_cast<int64_t>(slots[t]) * kv_dim + i;
  if (bf16) {
    static_cast<__nv_bfloat16*>(k_cache)[at] = __float2bfloat16_rn(k[e]);
    static_cast<__nv_bfloat16*>(v_cache)[at] = __float2bfloat16_rn(v[e]);
  } else {
    static_cast<float*>(k_cache)[at] = k[e];
    static_cast<float*>(v_cache)[at] = v[e];
  }
}

// Attention: a block of kAttnWarps warps per (head, token). Warp w takes positions w,
// w + kAttnWarps, ... (two per pass); lane l holds elements l, l + 32, ... of the head (E of them),
// keeps an online softmax (running max, total, weighted sum of values), and the warps' partial
// results are merged at the end.
constexpr int kAttnWarps = 8;

template <typename KV>
__device__ __forceinline__ float LoadKv(const KV* p) {
  if constexpr (sizeof(KV) == 2) {
    return Bf16(*reinterpret_cast<const uint16_t*>(p));
  } else {
    return *p;
  }
}

template <int E, typename KV>
__global__ void __launch_bounds__(kAttnWarps* kWarp)
    AttentionKernel(const float* __restrict__ q, const KV* __restrict__ k_cache,
                    const KV* __restrict__ v_cache, const int32_t* __restrict__ positions,
                    const int32_t* __restrict__ chunks, const int32_t* __restrict__ tables,
                    int64_t table_width, int64_t block_size, int64_t heads, int64_t kv_heads,
                    float scale, float* __restrict__ out) {
  constexpr int hd = E * kWarp;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t head = blockIdx.x, t = blockIdx.y;
  const int64_t g = head / (heads / kv_heads);
  const int64_t pos = positions[t];
  const int32_t* table = tables + static_cast<int64_t>(chunks[t]) * table_width;
  float qv[E], acc[E];
  const float* qh = q + (t * heads + head) * hd;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    qv[e] = qh[lane + e * kWarp];
    acc[e] = 0.0f;
  }
  float max_score = -INFINITY, total = 0.0f;
  // Two positions per pass, their loads issued together.
  for (int64_t p = warp; p <= pos; p += 2 * kAttnWarps) {
    const bool second = p + kAttnWarps <= pos;
    float k0[E], v0[E], k1[E], v1[E];
    {
      const int64_t slot =
          static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
      const KV* kr = k_cache + (slot * kv_heads + g) * hd;
      const KV* vr = v_cache + (slot * kv_heads + g) * hd;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        k0[e] = LoadKv(kr + lane + e * kWarp);
        v0[e] = LoadKv(vr + lane + e * kWarp);
      }
    }
    if (second) {
      const int64_t p1 = p + kAttnWarps;
      const int64_t slot =
          static_cast<int64_t>(table[p1 / block_size]) * block_size + p1 % block_size;
      const KV* kr = k_cache + (slot * kv_heads + g) * hd;
      const KV* vr = v_cache + (slot * kv_heads + g) * hd;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        k1[e] = LoadKv(kr + lane + e * kWarp);
        v1[e] = LoadKv(vr + lane + e * kWarp);
      }
    } else {
#pragma unroll
      for (int e = 0; e < E; ++e) k1[e] = v1[e] = 0.0f;
    }
    float dot0 = 0.0f, dot1 = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      dot0 = fmaf(qv[e], k0[e], dot0);
      dot1 = fmaf(qv[e], k1[e], dot1);
    }
    const float s0 = WarpSum(dot0) * scale;
    const float s1 = second ? WarpSum(dot1) * scale : -INFINITY;
    const float next = fmaxf(max_score, fmaxf(s0, s1));
    const float correction = __expf(max_score - next);
    const float w0 = __expf(s0 - next), w1 = second ? __expf(s1 - next) : 0.0f;
    total = total * correction + w0 + w1;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = fmaf(acc[e], correction, fmaf(w0, v0[e], w1 * v1[e]));
    max_score = next;
  }
  __shared__ float warp_max[kAttnWarps], warp_total[kAttnWarps];
  __shared__ float warp_acc[kAttnWarps][hd];
  if (lane == 0) {
    warp_max[warp] = max_score;
    warp_total[warp] = total;
  }
#pragma unroll
  for (int e = 0; e < E; ++e) warp_acc[warp][lane + e * kWarp] = acc[e];
  __syncthreads();
  float best = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) best = fmaxf(best, warp_max[w]);
  float sum = 0.0f;
  float factor[kAttnWarps];
  for (int w = 0; w < kAttnWarps; ++w) {
    factor[w] = warp_total[w] > 0.0f ? __expf(warp_max[w] - best) : 0.0f;
    sum += warp_total[w] * factor[w];
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float v = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) v += warp_acc[w][i] * factor[w];
    out[(t * heads + head) * hd + i] = v / sum;
  }
}

template <typename KV>
void LaunchAttention(int64_t e, const float* q, const void* k_cache, const void* v_cache,
                     const int32_t* positions, const int32_t* chunks, const int32_t* tables,
                     int64_t table_width, int64_t block_size, int64_t tokens, int64_t heads,
                     int64_t kv_heads, float scale, float* out, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>(tokens));
  const dim3 block(kAttnWarps * kWarp);
  const KV* kc = static_cast<const KV*>(k_cache);
  const KV* vc = static_cast<const KV*>(v_cache);
#define KILN_ATTN(N)                                                                               \
  case N:                                                                                          \
    AttentionKernel<N, KV><<<grid, block, 0, s>>>(q, kc, vc, positions, chunks, tables,            \
                                                  table_width, block_size, heads, kv_heads, scale, \
                                                  out);                                            \
    break;
  switch (e) {
    KILN_ATTN(1)
    KILN_ATTN(2)
    KILN_ATTN(3)
    KILN_ATTN(4)
    KILN_ATTN(5)
    KILN_ATTN(6)
    KILN_ATTN(8)
    default:
      Note("attention: head_dim must be 32, 64, 96, 128, 160, 192 or 256");
      return;
  }
#undef KILN_ATTN
  AfterLaunch();
}

__global__ void SiluMulKernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  gate[i] = g / (1.0f + expf(-g)) * up[i];
}

__device__ __forceinline__ uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [-1, 1).
__device__ __forceinline__ float Uniform(uint64_t bits) {
  return static_cast<float>(bits >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void RandomWeightsKernel(WType type, uint8_t* w, int64_t units, float scale,
                                    uint64_t seed) {
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t r = Mix(seed ^ (static_cast<uint64_t>(u) * 0xD6E8FEB86659FD93ull));
    switch (type) {
      case WType::kF32:
        reinterpret_cast<float*>(w)[u] = scale * Uniform(r);
        break;
      case WType::kBF16:
        reinterpret_cast<__nv_bfloat16*>(w)[u] = __float2bfloat16_rn(scale * Uniform(r));
        break;
      case WType::kF16:
        reinterpret_cast<__half*>(w)[u] = __float2half_rn(scale * Uniform(r));
        break;
      default: {  // one block of 32 weights per unit
        const int bytes = BlockBytes(type);
        uint8_t* b = w + u * bytes;
        const float d = type == WType::kQ8_0 ? scale / 127.0f : scale / 8.0f;
        *reinterpret_cast<__half*>(b) = __float2half_rn(d);
        int first = 2;
        if (type == WType::kQ4_1) {
          *reinterpret_cast<__half*>(b + 2) = __float2half_rn(-8.0f * d);
          first = 4;
        }
        for (int i = first; i < bytes; ++i) {
          if ((i - first) % 8 == 0) r = Mix(r);
          uint8_t byte = static_cast<uint8_t>(r >> (8 * ((i - first) % 8)));
          if (type == WType::kQ8_0 && byte == 0x80) byte = 0x81;  // keep within +-127
          b[i] = byte;
        }
      }
    }
  }
}

__global__ void FillKernel(float* x, int64_t n, float value, bool random, uint64_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = random ? value * Uniform(Mix(seed ^ static_cast<uint64_t>(i))) : value;
  }
}

}  // namespace

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

bool QueryDevice(DeviceInfo* info) {
  cudaDeviceProp prop;
  cudaError_t e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess) return Note(e), false;
  size_t free_bytes = 0, total_bytes = 0;
  e = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (e != cudaSuccess) return Note(e), false;
  info->name = prop.name;
  info->total_bytes = static_cast<int64_t>(total_bytes);
  info->free_bytes = static_cast<int64_t>(free_bytes);
  info->multiprocessors = prop.multiProcessorCount;
  info->compute_major = prop.major;
  info->compute_minor = prop.minor;
  return true;
}

std::string LastError() {
  std::lock_guard<std::mutex> lock(error_mutex);
  std::string e;
  e.swap(first_error);
  return e;
}

void* Malloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
  if (e != cudaSuccess) {
    Note(e);
    return nullptr;
  }
  return p;
}
void Free(void* p) {
  if (p) Note(cudaFree(p));
}
void* CreateStream() {
  cudaStream_t s = nullptr;
  Note(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}
void DestroyStream(void* stream) {
  if (stream) Note(cudaStreamDestroy(S(stream)));
}
void CopyToDevice(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) Note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S(stream)));
}
void CopyToHost(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) Note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, S(stream)));
}
void CopyOnDevice(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) Note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, S(stream)));
}
void Memset(void* dst, int value, size_t bytes, void* stream) {
  if (bytes) Note(cudaMemsetAsync(dst, value, bytes, S(stream)));
}
bool Sync(void* stream) {
  Note(cudaStreamSynchronize(S(stream)));
  std::lock_guard<std::mutex> lock(error_mutex);
  return first_error.empty();
}

bool BeginCapture(void* stream) {
  cudaError_t e = cudaStreamBeginCapture(S(stream), cudaStreamCaptureModeThreadLocal);
  Note(e);
  return e == cudaSuccess;
}
void* EndCapture(void* stream) {
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(S(stream), &graph);
  if (e != cudaSuccess) return Note(e), nullptr;
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) return Note(e), nullptr;
  return exec;
}
bool LaunchGraph(void* graph, void* stream) {
  cudaError_t e = cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), S(stream));
  Note(e);
  return e == cudaSuccess;
}
void DestroyGraph(void* graph) {
  if (graph) Note(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)));
}

void* RecordEvent(void* stream) {
  cudaEvent_t e = nullptr;
  Note(cudaEventCreate(&e));
  Note(cudaEventRecord(e, S(stream)));
  return e;
}
float ElapsedMs(void* start, void* end) {
  float ms = 0.0f;
  Note(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  Note(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}
void DestroyEvent(void* event) {
  if (event) Note(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void RandomWeights(WType type, void* w, int64_t rows, int64_t cols, float scale, uint64_t seed,
                   void* stream) {
  const bool block_type = BlockBytes(type) > 0;
  const int64_t units = block_type ? rows * (cols / 32) : rows * cols;
  RandomWeightsKernel<<<Blocks(std::min<int64_t>(units, 1 << 22), 256), 256, 0, S(stream)>>>(
      type, static_cast<uint8_t*>(w), units, scale, seed);
  AfterLaunch();
}

void FillF32(float* x, int64_t n, float value, bool random, uint64_t seed, void* stream) {
  FillKernel<<<Blocks(std::min<int64_t>(n, 1 << 22), 256), 256, 0, S(stream)>>>(x, n, value, random,
                                                                                seed);
  AfterLaunch();
}

void Embed(WType type, const void* table, int64_t h, const int32_t* ids, int64_t tokens,
           float scale, float* out, void* stream) {
  EmbedKernel<<<Blocks(tokens * h, 256), 256, 0, S(stream)>>>(
      type, static_cast<const uint8_t*>(table), h, ids, tokens, scale, out);
  AfterLaunch();
}

void RmsNorm(float* x, const float* residual, const int32_t* rows_index, const float* w, float* out,
             int64_t rows, int64_t h, float eps, void* stream) {
  if (rows == 0) return;
  RmsNormKernel<<<static_cast<unsigned>(rows), kNormThreads, 0, S(stream)>>>(
      x, residual, rows_index, w, out, h, eps);
  AfterLaunch();
}

void QuantizeQ8(const float* x, int64_t rows, int64_t k, void* blocks, void* stream) {
  const int64_t total = rows * (k / 32);
  if (total == 0) return;
  QuantizeQ8Kernel<<<Blocks(total * kWarp, 256), 256, 0, S(stream)>>>(
      x, total, static_cast<BlockQ8*>(blocks));
  AfterLaunch();
}

void MatMul(WType type, const void* w, int64_t n_out, int64_t k, const float* x, const void* xq,
            int64_t rows, const float* bias, float* y, void* stream, float* workspace,
            int64_t workspace_floats) {
  if (rows == 0) return;
  if (BlockBytes(type) > 0 ? k % 32 != 0 : k % 8 != 0) {
    Note("matmul: the inner dimension must be a multiple of 32 (block types) or 8");
    return;
  }
  cudaStream_t s = S(stream);
  if (rows > kCudaCoreRows && type != WType::kF32 && k % kTcK == 0) {
    LaunchMatMulTc(type, w, n_out, k, x, rows, bias, y, workspace, workspace_floats, s);
    return;
  }
  if (rows == 1) {
    LaunchMatMul<1>(type, w, n_out, k, x, xq, rows, bias, y, s);
  } else if (rows == 2) {
    LaunchMatMul<2>(type, w, n_out, k, x, xq, rows, bias, y, s);
  } else if (rows <= 4) {
    LaunchMatMul<4>(type, w, n_out, k, x, xq, rows, bias, y, s);
  } else if (rows <= 8) {
    LaunchMatMul<8>(type, w, n_out, k, x, xq, rows, bias, y, s);
  } else {
    LaunchMatMul<16>(type, w, n_out, k, x, xq, rows, bias, y, s);
  }
}

void Rope(float* q, float* k, const int32_t* positions, const float* cos, const float* sin,
          int64_t tokens, int64_t heads, int64_t kv_heads, int64_t hd, bool interleaved,
          void* stream) {
  const int64_t n = tokens * (heads + kv_heads) * (hd / 2);
  if (n == 0) return;
  RopeKernel<<<Blocks(n, 256), 256, 0, S(stream)>>>(q, k, positions, cos, sin, tokens, heads,
                                                    kv_heads, hd, interleaved);
  AfterLaunch();
}

void KvWrite(const float* k, const float* v, const int32_t* slots, int64_t tokens, int64_t kv_dim,
             void* k_cache, void* v_cache, bool bf16, void* stream) {
  if (tokens == 0) return;
  KvWriteKernel<<<Blocks(tokens * kv_dim, 256), 256, 0, S(stream)>>>(k, v, slots, tokens, kv_dim,
                                                                     k_cache, v_cache, bf16);
  AfterLaunch();
}

void Attention(const float* q, const void* k_cache, const void* v_cache, bool bf16,
               const int32_t* positions, const int32_t* chunks, const int32_t* tables,
               int64_t table_width, int64_t block_size, int64_t tokens, int64_t heads,
               int64_t kv_heads, int64_t hd, float scale, float* out, void* stream) {
  if (tokens == 0) return;
  if (hd % kWarp != 0) {
    Note("attention: head_dim must be a multiple of 32");
    return;
  }
  if (bf16) {
    LaunchAttention<__nv_bfloat16>(hd / kWarp, q, k_cache, v_cache, positions, chunks, tables,
                                   table_width, block_size, tokens, heads, kv_heads, scale, out,
                                   S(stream));
  } else {
    LaunchAttention<float>(hd / kWarp, q, k_cache, v_cache, positions, chunks, tables, table_width,
                           block_size, tokens, heads, kv_heads, scale, out, S(stream));
  }
}

void SiluMul(float* gate, const float* up, int64_t n, void* stream) {
  if (n == 0) return;
  SiluMulKernel<<<Blocks(n, 256), 256, 0, S(stream)>>>(gate, up, n);
  AfterLaunch();
}

}  // namespace kiln::native::cuda
