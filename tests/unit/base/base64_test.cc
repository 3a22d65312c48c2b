#include "kiln/base/base64.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace kiln {
namespace {

TEST(Base64Test, EncodesRfc4648Vectors) {
  // RFC 4648, section 10.
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, DecodesRfc4648VectorsAndWrappedText) {
  EXPECT_EQ(Base64Decode("Zg=="), "f");
  EXPECT_EQ(Base64Decode("Zm8="), "fo");
  EXPECT_EQ(Base64Decode("Zm9vYmFy"), "foobar");
  EXPECT_EQ(Base64Decode("Zm9v\r\nYmE="), "fooba");
  EXPECT_EQ(Base64Decode(""), "");
}

TEST(Base64Test, RefusesWhatIsNotBase64) {
  for (const char* bad :
       {"Zg", "Zg=", "Z===", "Zm9v=", "Zg==Zg==", "Zm9-", "Zm9_", "%%%%", "Zm9vY", "=Zm9"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

TEST(Base64Test, RoundTripsEveryByte) {
  std::mt19937 rng(3);
  for (int len = 0; len < 200; ++len) {
    std::string bytes(len, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    std::optional<std::string> back = Base64Decode(Base64Encode(bytes));
    ASSERT_TRUE(back.has_value()) << len;
    EXPECT_EQ(*back, bytes);
  }
}

}  // namespace
}  // namespace kiln
