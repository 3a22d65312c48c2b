#include "kiln/executors/native/cpu/features.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace kiln::native::cpu {
namespace {

// Sets KILN_CPU_FEATURES for one test and restores it after.
class ScopedCpuFeaturesEnv {
 public:
  explicit ScopedCpuFeaturesEnv(const char* value) {
    if (const char* old = std::getenv(kName)) old_ = old;
    if (value == nullptr) {
      unsetenv(kName);
    } else {
      setenv(kName, value, 1);
    }
  }
  ~ScopedCpuFeaturesEnv() {
    if (old_) {
      setenv(kName, old_->c_str(), 1);
    } else {
      unsetenv(kName);
    }
  }

 private:
  static constexpr const char* kName = "KILN_CPU_FEATURES";
  std::optional<std::string> old_;
};

TEST(CpuFeaturesTest, BestIsaFollowsTheDetectedFeatures) {
  const CpuFeatures& f = DetectCpuFeatures();
  bool avx2 = f.avx2 && f.fma && f.f16c;
  bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
  Isa expected = avx512       ? Isa::kAvx512
                 : !avx2      ? Isa::kPortable
                 : f.avx_vnni ? Isa::kAvxVnni
                              : Isa::kAvx2;
  EXPECT_EQ(BestIsa(), expected) << f.model_name;
  // AVX-512 implies AVX2 on every CPU that has it; a detector that says otherwise is broken.
  EXPECT_TRUE(!f.avx512f || f.avx2);
  EXPECT_TRUE(!f.avx512_vnni || f.avx512f);
}

TEST(CpuFeaturesTest, ParseIsaKnowsEveryNameAndRejectsOthers) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512}) {
    Result<Isa> parsed = ParseIsa(IsaName(isa));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed.value(), isa);
  }
  for (const char* junk : {"", "AVX2", "avx512f", "sse4", "portable "}) {
    Result<Isa> parsed = ParseIsa(junk);
    ASSERT_FALSE(parsed.ok()) << junk;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CpuFeaturesTest, SelectIsaDefaultsToTheBestPath) {
  ScopedCpuFeaturesEnv env(nullptr);
  Result<Isa> isa = SelectIsa();
  ASSERT_TRUE(isa.ok());
  EXPECT_EQ(isa.value(), BestIsa());
}

TEST(CpuFeaturesTest, SelectIsaHonorsPortable) {
  ScopedCpuFeaturesEnv env("portable");
  Result<Isa> isa = SelectIsa();
  ASSERT_TRUE(isa.ok());
  EXPECT_EQ(isa.value(), Isa::kPortable);
}

TEST(CpuFeaturesTest, SelectIsaGivesAvx2OnlyWhereTheCpuRunsIt) {
  ScopedCpuFeaturesEnv env("avx2");
  Result<Isa> isa = SelectIsa();
  if (CanRun(Isa::kAvx2)) {
    ASSERT_TRUE(isa.ok());
    EXPECT_EQ(isa.value(), Isa::kAvx2);
  } else {
    ASSERT_FALSE(isa.ok());
    EXPECT_EQ(isa.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CpuFeaturesTest, SelectIsaGivesAvxVnniOnlyWhereTheCpuRunsIt) {
  ScopedCpuFeaturesEnv env("avx_vnni");
  Result<Isa> isa = SelectIsa();
  if (DetectCpuFeatures().avx_vnni && CanRun(Isa::kAvx2)) {
    ASSERT_TRUE(isa.ok());
    EXPECT_EQ(isa.value(), Isa::kAvxVnni);
  } else {
    ASSERT_FALSE(isa.ok());
    EXPECT_EQ(isa.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CpuFeaturesTest, SelectIsaGivesAvx512OnlyWhereTheCpuRunsIt) {
  ScopedCpuFeaturesEnv env("avx512");
  Result<Isa> isa = SelectIsa();
  const CpuFeatures& f = DetectCpuFeatures();
  if (CanRun(Isa::kAvx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni) {
    ASSERT_TRUE(isa.ok());
    EXPECT_EQ(isa.value(), Isa::kAvx512);
  } else {
    ASSERT_FALSE(isa.ok());
    EXPECT_EQ(isa.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CpuFeaturesTest, SelectIsaRejectsAnUnknownName) {
  ScopedCpuFeaturesEnv env("avx9000");
  Result<Isa> isa = SelectIsa();
  ASSERT_FALSE(isa.ok());
  EXPECT_EQ(isa.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(isa.status().message().find("KILN_CPU_FEATURES"), std::string::npos)
      << isa.status().message();
  EXPECT_NE(isa.status().message().find("avx9000"), std::string::npos) << isa.status().message();
}

}  // namespace
}  // namespace kiln::native::cpu
