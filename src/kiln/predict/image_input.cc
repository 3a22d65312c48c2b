#include "kiln/predict/image_input.h"

// jpeglib.h needs stdio.h's FILE first, and jerror.h its types.
// clang-format off
#include <cstdio>
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <gif_lib.h>
#include <png.h>
#include <webp/decode.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>

namespace kiln::predict {
namespace {

std::string Megapixels(int64_t pixels) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", static_cast<double>(pixels) / 1e6);
  return buf;
}

Status CheckSize(const char* format, int64_t width, int64_t height, int64_t max_pixels) {
  if (width <= 0 || height <= 0) {
    return Status::InvalidArgument(std::string("the ") + format + " image has no pixels (" +
                                   std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  if (width * height > max_pixels) {
    return Status::InvalidArgument(std::string("the ") + format + " image is " +
                                   std::to_string(width) + "x" + std::to_string(height) + " (" +
                                   Megapixels(width * height) + " megapixels); the limit is " +
                                   Megapixels(max_pixels) + " megapixels");
  }
  return Status::Ok();
}

// --- JPEG (libjpeg-turbo, its default IDCT and upsampling, as Pillow decodes) ---

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;  // the data ended before the image did (libjpeg fills the rest and goes on)
};

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  cinfo->err->format_message(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings go unreported, but a premature end of the data is remembered: Pillow refuses such a
// file ("image file is truncated"), and so does Kiln.
void JpegWarning(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<JpegError*>(cinfo->err)->truncated = true;
  }
}

// Runs `fn` (libjpeg calls, no objects with destructors) under libjpeg's error handling, whose
// error_exit jumps back here; false when libjpeg failed (err->message says why).
template <typename Fn>
bool JpegTry(JpegError* err, const Fn& fn) {
  if (setjmp(err->jump)) return false;
  fn();
  return true;
}

Result<RgbImage> DecodeJpeg(std::string_view bytes, int64_t max_pixels) {
  // Every libjpeg call below runs inside JpegTry: an error anywhere else would jump into a frame
  // that has returned.
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof(cinfo));  // jpeg_destroy_decompress skips a struct never created
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = JpegErrorExit;
  err.mgr.emit_message = JpegWarning;
  err.message[0] = '\0';
  err.truncated = false;
  struct Destroy {
    jpeg_decompress_struct* cinfo;
    ~Destroy() { jpeg_destroy_decompress(cinfo); }
  } destroy{&cinfo};
  auto failed = [&] {
    return Status::InvalidArgument(std::string("the JPEG image does not decode: ") + err.message);
  };
  if (bytes.empty()) return Status::InvalidArgument("the JPEG image does not decode: no data");
  if (!JpegTry(&err, [&] {
        jpeg_create_decompress(&cinfo);
        jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()),
                     static_cast<unsigned long>(bytes.size()));
        jpeg_read_header(&cinfo, TRUE);
      })) {
    return failed();
  }
  if (Status s = CheckSize("JPEG", cinfo.image_width, cinfo.image_height, max_pixels); !s.ok()) {
    return s;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    return Status::InvalidArgument("the JPEG image is CMYK; send an RGB or grayscale JPEG");
  }
  cinfo.out_color_space = JCS_RGB;
  if (!JpegTry(&err, [&] { jpeg_start_decompress(&cinfo); })) return failed();
  RgbImage image;
  image.width = static_cast<int>(cinfo.output_width);
  image.height = static_cast<int>(cinfo.output_height);
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
  uint8_t* pixels = image.pixels.data();
  const size_t stride = static_cast<size_t>(image.width) * 3;
  if (!JpegTry(&err, [&] {
        while (cinfo.output_scanline < cinfo.output_height) {
          JSAMPROW row = pixels + cinfo.output_scanline * stride;
          jpeg_read_scanlines(&cinfo, &row, 1);
        }
        jpeg_finish_decompress(&cinfo);
      })) {
    return failed();
  }
  if (err.truncated) {
    return Status::InvalidArgument(
        "the JPEG image is truncated: its data ends before its last row (" +
        std::to_string(bytes.size()) + " bytes)");
  }
  return image;
}

// --- PNG (libpng's own transformations: 16 bits cut to the high byte, palette and gray
// expanded, alpha dropped; as Pillow converts to RGB) ---

struct PngReader {
  std::string_view bytes;
  size_t at = 0;
};

void PngRead(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (n > r->bytes.size() - r->at) png_error(png, "the data ends inside the image");
  std::memcpy(out, r->bytes.data() + r->at, n);
  r->at += n;
}

void PngErrorFn(png_structp png, png_const_charp message) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  *text = message;
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp, png_const_charp) {}

// Runs `fn` (libpng calls, no objects with destructors) under libpng's error handling; false
// when libpng failed.
template <typename Fn>
bool PngTry(png_structp png, const Fn& fn) {
  if (setjmp(png_jmpbuf(png))) return false;
  fn();
  return true;
}

Result<RgbImage> DecodePng(std::string_view bytes, int64_t max_pixels) {
  std::string message;
  PngReader reader{bytes, 0};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &message, PngErrorFn, PngWarningFn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  struct Destroy {
    png_structp* png;
    png_infop* info;
    ~Destroy() { png_destroy_read_struct(png, info, nullptr); }
  } destroy{&png, &info};
  if (!png || !info) return Status::Internal("libpng could not start");
  auto failed = [&] {
    return Status::InvalidArgument("the PNG image does not decode: " + message);
  };
  png_set_read_fn(png, &reader, PngRead);
  if (!PngTry(png, [&] { png_read_info(png, info); })) return failed();
  const int64_t width = png_get_image_width(png, info);
  const int64_t height = png_get_image_height(png, info);
  if (Status s = CheckSize("PNG", width, height, max_pixels); !s.ok()) return s;
  const int color = png_get_color_type(png, info);
  if (!PngTry(png, [&] {
        if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
        if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
        if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
          png_set_expand_gray_1_2_4_to_8(png);
          png_set_gray_to_rgb(png);
        }
        if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
        png_set_packing(png);
        png_set_interlace_handling(png);
        png_read_update_info(png, info);
      })) {
    return failed();
  }
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width) * 3) {
    return Status::InvalidArgument("the PNG image does not decode to 8-bit RGB rows");
  }
  RgbImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  std::vector<png_bytep> rows(height);
  for (int64_t y = 0; y < height; ++y) rows[y] = image.pixels.data() + y * width * 3;
  png_bytepp row_pointers = rows.data();
  if (!PngTry(png, [&] {
        png_read_image(png, row_pointers);
        png_read_end(png, nullptr);
      })) {
    return failed();
  }
  return image;
}

// --- GIF (giflib; the first frame on the logical screen, its palette looked up) ---

struct GifReader {
  std::string_view bytes;
  size_t at = 0;
};

int GifRead(GifFileType* gif, GifByteType* out, int n) {
  auto* r = static_cast<GifReader*>(gif->UserData);
  const size_t take = std::min<size_t>(n, r->bytes.size() - r->at);
  std::memcpy(out, r->bytes.data() + r->at, take);
  r->at += take;
  return static_cast<int>(take);
}

// giflib's message for an error code; it has none for some (nullptr).
std::string GifError(int code) {
  const char* text = GifErrorString(code);
  return text ? text : "no frame";
}

Result<RgbImage> DecodeGif(std::string_view bytes, int64_t max_pixels) {
  GifReader reader{bytes, 0};
  int error = 0;
  GifFileType* gif = DGifOpen(&reader, GifRead, &error);
  if (gif == nullptr) {
    return Status::InvalidArgument("the GIF image does not decode: " + GifError(error));
  }
  struct Closer {
    GifFileType* gif;
    ~Closer() {
      int e = 0;
      DGifCloseFile(gif, &e);
    }
  } closer{gif};
  if (Status s = CheckSize("GIF", gif->SWidth, gif->SHeight, max_pixels); !s.ok()) return s;
  if (DGifSlurp(gif) != GIF_OK || gif->ImageCount < 1) {
    return Status::InvalidArgument("the GIF image does not decode: " + GifError(gif->Error));
  }
  const SavedImage& frame = gif->SavedImages[0];
  const ColorMapObject* map = frame.ImageDesc.ColorMap ? frame.ImageDesc.ColorMap : gif->SColorMap;
  if (map == nullptr) return Status::InvalidArgument("the GIF image has no color table");
  RgbImage image;
  image.width = gif->SWidth;
  image.height = gif->SHeight;
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
  auto put = [&](size_t at, int index) {
    const GifColorType c = index < map->ColorCount ? map->Colors[index] : GifColorType{0, 0, 0};
    image.pixels[at] = c.Red;
    image.pixels[at + 1] = c.Green;
    image.pixels[at + 2] = c.Blue;
  };
  // The screen's background color where the first frame does not reach.
  for (size_t p = 0; p < image.pixels.size(); p += 3) put(p, gif->SBackGroundColor);
  const GifImageDesc& d = frame.ImageDesc;
  for (int y = 0; y < d.Height; ++y) {
    for (int x = 0; x < d.Width; ++x) {
      const int sx = d.Left + x, sy = d.Top + y;
      if (sx < 0 || sy < 0 || sx >= image.width || sy >= image.height) continue;
      put((static_cast<size_t>(sy) * image.width + sx) * 3,
          frame.RasterBits[static_cast<size_t>(y) * d.Width + x]);
    }
  }
  return image;
}

// --- WebP (libwebp; alpha dropped) ---

Result<RgbImage> DecodeWebp(std::string_view bytes, int64_t max_pixels) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  int width = 0, height = 0;
  if (!WebPGetInfo(data, bytes.size(), &width, &height)) {
    return Status::InvalidArgument("the WebP image does not decode: not a WebP file");
  }
  if (Status s = CheckSize("WebP", width, height, max_pixels); !s.ok()) return s;
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  if (WebPDecodeRGBInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), width * 3) ==
      nullptr) {
    return Status::InvalidArgument("the WebP image does not decode: its data is damaged");
  }
  return image;
}

// --- BMP (Kiln's own: uncompressed 1, 4, 8, 24 and 32 bits a pixel, or 32 bits with bit
// fields; rows bottom-up or top-down) ---

uint32_t Le32(std::string_view b, size_t at) {
  return uint32_t(uint8_t(b[at])) | uint32_t(uint8_t(b[at + 1])) << 8 |
         uint32_t(uint8_t(b[at + 2])) << 16 | uint32_t(uint8_t(b[at + 3])) << 24;
}

uint16_t Le16(std::string_view b, size_t at) {
  return static_cast<uint16_t>(uint8_t(b[at]) | uint8_t(b[at + 1]) << 8);
}

// The 8-bit value of a bit field (mask m) of v, scaled as Pillow's BMP reader does for 32-bit
// masks of 8 bits.
int MaskShift(uint32_t mask) {
  int shift = 0;
  while (mask != 0 && (mask & 1u) == 0) {
    mask >>= 1;
    ++shift;
  }
  return shift;
}

Result<RgbImage> DecodeBmp(std::string_view b, int64_t max_pixels) {
  auto bad = [](const std::string& what) {
    return Status::InvalidArgument("the BMP image does not decode: " + what);
  };
  if (b.size() < 26 || b[0] != 'B' || b[1] != 'M') return bad("no 'BM' signature");
  const uint32_t pixel_offset = Le32(b, 10);
  const uint32_t header = Le32(b, 14);
  int64_t width = 0, height = 0;
  int bits = 0;
  uint32_t compression = 0, colors_used = 0;
  size_t palette_entry = 4;
  if (header == 12) {
    width = Le16(b, 18);
    height = static_cast<int16_t>(Le16(b, 20));
    bits = Le16(b, 24);
    palette_entry = 3;
  } else if (header >= 40 && 14 + size_t{header} <= b.size()) {
    width = static_cast<int32_t>(Le32(b, 18));
    height = static_cast<int32_t>(Le32(b, 22));
    bits = Le16(b, 28);
    compression = Le32(b, 30);
    colors_used = Le32(b, 46);
  } else {
    return bad("its header (" + std::to_string(header) +
               " bytes at byte 14) is not one Kiln "
               "reads, or the file ends inside it");
  }
  const bool top_down = height < 0;
  height = std::abs(height);
  if (Status s = CheckSize("BMP", width, height, max_pixels); !s.ok()) return s;
  uint32_t masks[3] = {0xff0000u, 0xff00u, 0xffu};
  if (compression == 3 || compression == 6) {
    if (bits != 32) return bad("bit fields are read for 32-bit images only");
    // The masks follow a 40-byte header, or are part of a longer one.
    if (14 + 40 + 12 > b.size()) return bad("the file ends inside its bit masks (byte 54)");
    for (int i = 0; i < 3; ++i) masks[i] = Le32(b, 54 + 4 * i);
  } else if (compression != 0) {
    return bad("compression " + std::to_string(compression) +
               " (RLE or embedded JPEG/PNG) is not supported; send an uncompressed BMP");
  }
  if (bits != 1 && bits != 4 && bits != 8 && bits != 24 && bits != 32) {
    return bad(std::to_string(bits) + " bits a pixel is not supported (1, 4, 8, 24 or 32)");
  }
  std::vector<std::array<uint8_t, 3>> palette;
  if (bits <= 8) {
    const size_t count = colors_used ? colors_used : (size_t{1} << bits);
    const size_t at = 14 + header;
    if (count > 256 || at + count * palette_entry > b.size()) {
      return bad("its color table (" + std::to_string(count) + " entries at byte " +
                 std::to_string(at) + ") does not fit in the file");
    }
    for (size_t i = 0; i < count; ++i) {
      const size_t e = at + i * palette_entry;  // blue, green, red
      palette.push_back({uint8_t(b[e + 2]), uint8_t(b[e + 1]), uint8_t(b[e])});
    }
  }
  const size_t stride = (static_cast<size_t>(bits) * width + 31) / 32 * 4;
  if (pixel_offset > b.size() || stride * height > b.size() - pixel_offset) {
    return bad("its pixels (" + std::to_string(stride * height) + " bytes from byte " +
               std::to_string(pixel_offset) + ") run past the end of the file (" +
               std::to_string(b.size()) + " bytes)");
  }
  RgbImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  int shifts[3];
  for (int i = 0; i < 3; ++i) shifts[i] = MaskShift(masks[i]);
  for (int64_t y = 0; y < height; ++y) {
    const auto* row = reinterpret_cast<const uint8_t*>(b.data()) + pixel_offset +
                      stride * (top_down ? y : height - 1 - y);
    uint8_t* out = image.pixels.data() + static_cast<size_t>(y) * width * 3;
    for (int64_t x = 0; x < width; ++x, out += 3) {
      if (bits == 24 || (bits == 32 && compression == 0)) {
        const uint8_t* p = row + x * (bits / 8);
        out[0] = p[2];
        out[1] = p[1];
        out[2] = p[0];
      } else if (bits == 32) {
        const uint32_t v = Le32(std::string_view(reinterpret_cast<const char*>(row), stride),
                                static_cast<size_t>(x) * 4);
        for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>((v & masks[c]) >> shifts[c]);
      } else {
        const int per_byte = 8 / bits;
        const int byte = row[x / per_byte];
        const int index = (byte >> (8 - bits * (1 + x % per_byte))) & ((1 << bits) - 1);
        if (static_cast<size_t>(index) >= palette.size()) {
          return bad("pixel (" + std::to_string(x) + ", " + std::to_string(y) + ") names color " +
                     std::to_string(index) + " of a " + std::to_string(palette.size()) +
                     "-color table");
        }
        std::memcpy(out, palette[index].data(), 3);
      }
    }
  }
  return image;
}

// --- Pillow's resampling (libImaging/Resample.c): filter weights in double, normalized to
// 22-bit fixed point, a horizontal pass then a vertical one, each rounding to 8 bits ---

constexpr int kPrecisionBits = 32 - 8 - 2;

double BilinearFilter(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double BicubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // per output: first input, count
  std::vector<int32_t> kk;  // per output: ksize fixed-point weights
};

Coefficients Precompute(int in_size, int out_size, ResizeFilter filter) {
  double (*fn)(double) = filter == ResizeFilter::kBicubic ? BicubicFilter : BilinearFilter;
  const double filter_support = filter == ResizeFilter::kBicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.kk.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  const double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    double ww = 0.0;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    std::fill(k.begin(), k.end(), 0.0);
    for (int x = 0; x < xmax; ++x) {
      const double w = fn((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    if (ww != 0.0) {
      for (int x = 0; x < xmax; ++x) k[x] /= ww;
    }
    for (int x = 0; x < c.ksize; ++x) {
      const double v = k[x] * (1 << kPrecisionBits);
      c.kk[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(k[x] < 0 ? -0.5 + v : 0.5 + v);
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

uint8_t Clip8(int32_t v) {
  const int32_t shifted = v >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp(shifted, 0, 255));
}

// One pass along x (`horizontal`) or y over `in`, rows [row0, row0 + out_h) of the input for the
// horizontal pass.
RgbImage ResampleHorizontal(const RgbImage& in, int out_w, int row0, int rows,
                            const Coefficients& c) {
  RgbImage out{out_w, rows, std::vector<uint8_t>(static_cast<size_t>(out_w) * rows * 3)};
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* line = in.pixels.data() + static_cast<size_t>(yy + row0) * in.width * 3;
    uint8_t* o = out.pixels.data() + static_cast<size_t>(yy) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.kk[static_cast<size_t>(xx) * c.ksize];
      int32_t ss[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1),
                       1 << (kPrecisionBits - 1)};
      for (int x = 0; x < xmax; ++x) {
        const uint8_t* p = line + static_cast<size_t>(x + xmin) * 3;
        for (int ch = 0; ch < 3; ++ch) ss[ch] += p[ch] * k[x];
      }
      for (int ch = 0; ch < 3; ++ch) o[xx * 3 + ch] = Clip8(ss[ch]);
    }
  }
  return out;
}

RgbImage ResampleVertical(const RgbImage& in, int out_h, const Coefficients& c, int shift) {
  const size_t row_bytes = static_cast<size_t>(in.width) * 3;
  RgbImage out{in.width, out_h, std::vector<uint8_t>(row_bytes * out_h)};
  // Whole rows at a time (integer sums: the order of the terms changes nothing).
  std::vector<int32_t> acc(row_bytes);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[yy * 2] - shift, ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.kk[static_cast<size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; ++y) {
      const uint8_t* p = in.pixels.data() + static_cast<size_t>(y + ymin) * row_bytes;
      const int32_t w = k[y];
      for (size_t i = 0; i < row_bytes; ++i) acc[i] += p[i] * w;
    }
    uint8_t* o = out.pixels.data() + static_cast<size_t>(yy) * row_bytes;
    for (size_t i = 0; i < row_bytes; ++i) o[i] = Clip8(acc[i]);
  }
  return out;
}

}  // namespace

bool IsImageContentType(std::string_view content_type) {
  return std::find(kImageContentTypes.begin(), kImageContentTypes.end(), content_type) !=
         kImageContentTypes.end();
}

Result<RgbImage> DecodeImage(std::string_view content_type, std::string_view bytes,
                             int64_t max_pixels) {
  if (content_type == "image/jpeg") return DecodeJpeg(bytes, max_pixels);
  if (content_type == "image/png") return DecodePng(bytes, max_pixels);
  if (content_type == "image/gif") return DecodeGif(bytes, max_pixels);
  if (content_type == "image/webp") return DecodeWebp(bytes, max_pixels);
  if (content_type == "image/bmp") return DecodeBmp(bytes, max_pixels);
  return Status::InvalidArgument("'" + std::string(content_type) + "' is not an image type");
}

Result<ResizeFilter> ParseResizeFilter(std::string_view name) {
  if (name == "nearest") return ResizeFilter::kNearest;
  if (name == "bilinear") return ResizeFilter::kBilinear;
  if (name == "bicubic") return ResizeFilter::kBicubic;
  return Status::InvalidArgument("resize '" + std::string(name) +
                                 "' is not one of nearest, bilinear, bicubic");
}

RgbImage Resize(const RgbImage& image, int width, int height, ResizeFilter filter) {
  if (width == image.width && height == image.height) return image;
  if (filter == ResizeFilter::kNearest) {
    // Pillow's affine nearest: the source pixel under each output pixel's center.
    RgbImage out{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
    const double sx = static_cast<double>(static_cast<float>(image.width)) / width;
    const double sy = static_cast<double>(static_cast<float>(image.height)) / height;
    for (int y = 0; y < height; ++y) {
      const int iy = std::min(image.height - 1, static_cast<int>((y + 0.5) * sy));
      for (int x = 0; x < width; ++x) {
        const int ix = std::min(image.width - 1, static_cast<int>((x + 0.5) * sx));
        std::memcpy(&out.pixels[(static_cast<size_t>(y) * width + x) * 3],
                    &image.pixels[(static_cast<size_t>(iy) * image.width + ix) * 3], 3);
      }
    }
    return out;
  }
  const bool horizontal = width != image.width;
  const bool vertical = height != image.height;
  Coefficients vert = Precompute(image.height, height, filter);
  // Only the rows the vertical pass reads go through the horizontal one.
  const int first = vert.bounds[0];
  const int last = vert.bounds[height * 2 - 2] + vert.bounds[height * 2 - 1];
  RgbImage out;
  int shift = 0;
  if (horizontal) {
    Coefficients horiz = Precompute(image.width, width, filter);
    out = ResampleHorizontal(image, width, vertical ? first : 0,
                             vertical ? last - first : image.height, horiz);
    shift = vertical ? first : 0;
  }
  if (vertical) return ResampleVertical(horizontal ? out : image, height, vert, shift);
  return out;
}

Status ApplyPreprocessConfig(const nlohmann::json& config, ImagePreprocess* p) {
  if (!config.is_object()) return Status::InvalidArgument("the preprocessing is not an object");
  auto triple = [&](const char* key, std::array<float, 3>* out) -> Status {
    if (!config.contains(key)) return Status::Ok();
    const nlohmann::json& v = config[key];
    if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() ||
        !v[2].is_number()) {
      return Status::InvalidArgument(std::string("'") + key + "' must be 3 numbers");
    }
    for (int i = 0; i < 3; ++i) (*out)[i] = v[i].get<float>();
    return Status::Ok();
  };
  if (Status s = triple("mean", &p->mean); !s.ok()) return s;
  if (Status s = triple("std", &p->std); !s.ok()) return s;
  for (float s : p->std) {
    if (!(s != 0.0f)) return Status::InvalidArgument("'std' must not hold 0");
  }
  if (config.contains("scale")) {
    if (!config["scale"].is_number()) return Status::InvalidArgument("'scale' must be a number");
    p->scale = config["scale"].get<float>();
  }
  if (config.contains("resize")) {
    if (!config["resize"].is_string()) return Status::InvalidArgument("'resize' must be a string");
    Result<ResizeFilter> f = ParseResizeFilter(config["resize"].get<std::string>());
    if (!f.ok()) return f.status();
    p->resize = f.value();
  }
  if (config.contains("channel_order")) {
    const nlohmann::json& v = config["channel_order"];
    if (v != "rgb" && v != "bgr") {
      return Status::InvalidArgument("'channel_order' must be \"rgb\" or \"bgr\"");
    }
    p->bgr = v == "bgr";
  }
  if (config.contains("size")) {
    const nlohmann::json& v = config["size"];
    if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer() ||
        v[0].get<int64_t>() < 1 || v[1].get<int64_t>() < 1 || v[0].get<int64_t>() > 16384 ||
        v[1].get<int64_t>() > 16384) {
      return Status::InvalidArgument("'size' must be [height, width], each 1 to 16384");
    }
    p->height = v[0].get<int>();
    p->width = v[1].get<int>();
  }
  if (config.contains("max_pixels")) {
    const nlohmann::json& v = config["max_pixels"];
    if (!v.is_number_integer() || v.get<int64_t>() < 1) {
      return Status::InvalidArgument("'max_pixels' must be a positive integer");
    }
    p->max_pixels = v.get<int64_t>();
  }
  return Status::Ok();
}

}  // namespace kiln::predict
