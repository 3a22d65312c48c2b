#include "kiln/engine/stop_matcher.h"

#include <gtest/gtest.h>

namespace kiln::engine {
namespace {

TEST(StopMatcherTest, ReleasesTextWithoutStops) {
  StopMatcher m({}, false);
  EXPECT_EQ(m.Push("hello "), "hello ");
  EXPECT_EQ(m.Push("world"), "world");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcherTest, HoldsBackAPartialStopAcrossPushes) {
  StopMatcher m({"</end>"}, false);
  EXPECT_EQ(m.Push("abc</"), "abc");
  EXPECT_EQ(m.Push("en"), "");
  EXPECT_EQ(m.Push("d>tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "</end>");
  EXPECT_EQ(m.Push("more"), "");
}

TEST(StopMatcherTest, ReleasesAPartialThatStopsMatching) {
  StopMatcher m({"</end>"}, false);
  EXPECT_EQ(m.Push("a</e"), "a");
  EXPECT_EQ(m.Push("x"), "</ex");
  EXPECT_EQ(m.Flush(), "");
  StopMatcher n({"STOP"}, false);
  EXPECT_EQ(n.Push("xST"), "x");
  EXPECT_EQ(n.Flush(), "ST");
}

TEST(StopMatcherTest, EarliestStopWinsAndIncludeStopKeepsIt) {
  StopMatcher m({"world", "lo w"}, true);
  EXPECT_EQ(m.Push("hello world"), "hello w");
  EXPECT_EQ(m.matched(), "lo w");
}

TEST(StopMatcherTest, StopInsideOnePush) {
  StopMatcher m({"\n\n"}, false);
  EXPECT_EQ(m.Push("line one\n\nline two"), "line one");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, OverlappingPrefixIsHeldAtItsLongest) {
  StopMatcher m({"aab"}, false);
  EXPECT_EQ(m.Push("xaa"), "x");
  EXPECT_EQ(m.Push("a"), "a");  // "aaa": the suffix "aa" may still become "aab"
  EXPECT_EQ(m.Push("b"), "");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace kiln::engine
