// Fuzzes the image decoders of /v1/predict (libjpeg-turbo, libpng, giflib and libwebp behind
// Kiln's wrappers, and Kiln's own BMP reader) and the resize after them: the first byte picks
// the content type, the rest is the file. No input may crash, read out of bounds or allocate
// past the pixel limit.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kiln/predict/image_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view type =
      kiln::predict::kImageContentTypes[data[0] % kiln::predict::kImageContentTypes.size()];
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto image = kiln::predict::DecodeImage(type, bytes, /*max_pixels=*/1 << 20);
  if (!image.ok()) return 0;
  (void)kiln::predict::Resize(*image, 7, 5, kiln::predict::ResizeFilter::kBicubic);
  return 0;
}
