// Tensor naming and the rotary row un-permutation of GGUF -> Hugging Face import.
#include "kiln/formats/gguf_to_hf.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace kiln::formats {
namespace {

TEST(GgufToHfTest, TensorNames) {
  EXPECT_EQ(*HfTensorNameForGguf("token_embd.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(*HfTensorNameForGguf("output.weight"), "lm_head.weight");
  EXPECT_EQ(*HfTensorNameForGguf("output_norm.weight"), "model.norm.weight");
  EXPECT_EQ(*HfTensorNameForGguf("blk.12.attn_q.weight"),
            "model.layers.12.self_attn.q_proj.weight");
  EXPECT_EQ(*HfTensorNameForGguf("blk.0.ffn_norm.weight"),
            "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(*HfTensorNameForGguf("blk.3.ffn_down.weight"), "model.layers.3.mlp.down_proj.weight");
  EXPECT_FALSE(HfTensorNameForGguf("blk.x.attn_q.weight").ok());
  EXPECT_FALSE(HfTensorNameForGguf("blk.1.attn_q_norm.weight").ok());
  EXPECT_FALSE(HfTensorNameForGguf("rope_freqs.weight").ok());
}

// convert_hf_to_gguf.py: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2)
std::vector<float> Permute(const std::vector<float>& w, int64_t rows, int64_t cols,
                           int64_t n_head) {
  std::vector<float> out(w.size());
  int64_t half = rows / n_head / 2;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t c = 0; c < cols; ++c)
          out[((h * half + i) * 2 + j) * cols + c] = w[((h * 2 + j) * half + i) * cols + c];
  return out;
}

TEST(GgufToHfTest, UnpermuteInvertsTheConverterPermutation) {
  const int64_t n_head = 3, head_dim = 8, cols = 5, rows = n_head * head_dim;
  std::vector<float> hf(rows * cols);
  std::iota(hf.begin(), hf.end(), 0.f);
  std::vector<float> gguf = Permute(hf, rows, cols, n_head);
  ASSERT_NE(gguf, hf);
  std::vector<float> back(hf.size());
  UnpermuteRotaryRows(gguf.data(), back.data(), rows, cols, n_head);
  EXPECT_EQ(back, hf);
  // Row 1 of GGUF head 0 is HF row head_dim / 2: the second rotary half's first row.
  EXPECT_EQ(gguf[1 * cols], hf[(head_dim / 2) * cols]);
}

}  // namespace
}  // namespace kiln::formats
