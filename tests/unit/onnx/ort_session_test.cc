#include "kiln/executors/onnx/ort_session.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace kiln::onnx {
namespace {

TEST(OrtSessionTest, LoadsThePinnedRuntime) { EXPECT_EQ(RuntimeVersion(), "1.32.0"); }

TEST(OrtSessionTest, MissingFileIsAnErrorNamingIt) {
  auto session = OrtSession::Load("/nonexistent/model.onnx", {});
  ASSERT_FALSE(session.ok());
  EXPECT_NE(session.status().message().find("/nonexistent/model.onnx"), std::string::npos);
}

TEST(OrtSessionTest, GarbageFileIsAnErrorNotACrash) {
  std::string path = ::testing::TempDir() + "/garbage.onnx";
  std::ofstream(path) << "this is not a protobuf";
  auto session = OrtSession::Load(path, {});
  ASSERT_FALSE(session.ok());
  EXPECT_NE(session.status().message().find(path), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kiln::onnx
