// Image inputs of /v1/predict: JPEG, PNG, GIF, WebP and BMP bytes decoded to 8-bit RGB, resized
// with Pillow's resampling (the same fixed-point two-pass filters, so a model sees the pixels a
// Python client's Pillow preprocessing would give it), then scaled and normalized per channel
// into the model's input layout (predictive_model.h: PredictiveModel::PrepareImage).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::predict {

// 8-bit RGB pixels, row-major, 3 bytes a pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
};

// The image content types, as the predict API names them.
inline constexpr std::array<std::string_view, 5> kImageContentTypes = {
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"};
bool IsImageContentType(std::string_view content_type);

// Decodes `bytes` of `content_type` (one of kImageContentTypes) to RGB as Pillow's
// Image.open(...).convert("RGB") does: grayscale replicated, a palette looked up, alpha dropped
// (not composited), 16-bit samples cut to their high byte, a GIF's first frame. InvalidArgument
// saying what is wrong for data that does not decode, and for an image of more than `max_pixels`
// pixels (checked from its header, before any pixel is decoded).
Result<RgbImage> DecodeImage(std::string_view content_type, std::string_view bytes,
                             int64_t max_pixels);

// Pillow's Image.resize filters.
enum class ResizeFilter { kNearest, kBilinear, kBicubic };
Result<ResizeFilter> ParseResizeFilter(std::string_view name);  // nearest, bilinear, bicubic

// `image` resized to width x height as Pillow's Image.resize(size, filter) computes it for an
// RGB image, bit for bit.
RgbImage Resize(const RgbImage& image, int width, int height, ResizeFilter filter);

// How an image becomes the input tensor: value = (pixel * scale - mean[c]) / std[c] for the
// channel c of the model's order (rgb or bgr); width and height are the model's when its input
// fixes them, else these (0: the image's own).
struct ImagePreprocess {
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};  // ImageNet's
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  float scale = 1.0f / 255.0f;
  ResizeFilter resize = ResizeFilter::kBilinear;
  bool bgr = false;
  int width = 0;
  int height = 0;
  int64_t max_pixels = 40'000'000;
};

// Applies the fields present in `config` (mean, std, scale, resize, channel_order, size
// [height, width], max_pixels) to `preprocess`. InvalidArgument naming the field that is wrong.
Status ApplyPreprocessConfig(const nlohmann::json& config, ImagePreprocess* preprocess);

}  // namespace kiln::predict
