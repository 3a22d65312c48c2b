// The model registry: leases keep a model loaded, unloading waits for them and refuses new ones,
// and expositions of several models merge into one. The models here are predictive services with
// no model set (a registered model's runtime is not what is tested; loading a real one is the
// Python suite's job, test_multi_model.py).
#include "kiln/server/model_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "kiln/server/metrics.h"

namespace kiln::server {
namespace {

std::unique_ptr<RegisteredModel> Model(const std::string& name) {
  auto m = std::make_unique<RegisteredModel>();
  m->name = name;
  m->runtime = "predictive";
  m->predictive = std::make_unique<PredictService>(PredictServerOptions{});
  return m;
}

TEST(ModelRegistry, NamesAreUniqueAndLookedUp) {
  ModelRegistry registry;
  ASSERT_TRUE(registry.Add(Model("a")).ok());
  ASSERT_TRUE(registry.Add(Model("b")).ok());
  EXPECT_FALSE(registry.Add(Model("a")).ok());
  EXPECT_EQ(registry.Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_NE(registry.Acquire("a"), nullptr);
  EXPECT_EQ(registry.Acquire("c"), nullptr);
  EXPECT_EQ(registry.Only(/*predictive=*/true), nullptr);  // two of them
  EXPECT_EQ(registry.Only(/*predictive=*/false), nullptr);
  EXPECT_TRUE(registry.HasPredictive());
}

TEST(ModelRegistry, UnloadWaitsForLeasesAndRefusesNewOnes) {
  ModelRegistry registry;
  ASSERT_TRUE(registry.Add(Model("a")).ok());
  ASSERT_TRUE(registry.Add(Model("b")).ok());
  ModelRegistry::LeasePtr lease = registry.Acquire("a");
  std::atomic<bool> unloaded{false};
  Status result;
  std::thread unloader([&] {
    result = registry.Unload("a", std::chrono::seconds(30));
    unloaded = true;
  });
  // Unloading has begun once "a" leaves the names; it must still be waiting for the lease.
  while (registry.Names().size() != 1) std::this_thread::yield();
  EXPECT_EQ(registry.Acquire("a"), nullptr);
  EXPECT_FALSE(unloaded);
  int in_flight = -1;
  registry.ForEach([&](RegisteredModel& m, const ModelRegistry::Usage& u) {
    if (m.name == "b") in_flight = u.in_flight;
  });
  EXPECT_EQ(in_flight, 0);
  EXPECT_EQ(lease->model().name, "a");  // still there while leased
  lease.reset();
  unloader.join();
  EXPECT_TRUE(unloaded);
  EXPECT_TRUE(result.ok()) << result.message();
  EXPECT_EQ(registry.Names(), (std::vector<std::string>{"b"}));
  EXPECT_EQ(registry.Unload("a", std::chrono::seconds(1)).code(), StatusCode::kNotFound);
}

TEST(ModelRegistry, UnloadGivesUpAtTheDeadlineAndTheModelStays) {
  ModelRegistry registry;
  ASSERT_TRUE(registry.Add(Model("a")).ok());
  ModelRegistry::LeasePtr lease = registry.Acquire("a");
  Status s = registry.Unload("a", std::chrono::milliseconds(20));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("1 requests running"), std::string::npos) << s.message();
  EXPECT_NE(registry.Acquire("a"), nullptr);
}

TEST(ModelRegistry, LeasesFromManyThreads) {
  ModelRegistry registry;
  ASSERT_TRUE(registry.Add(Model("a")).ok());
  std::vector<std::thread> threads;
  std::atomic<int> got{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (registry.Acquire("a")) ++got;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(got, 8000);
  EXPECT_TRUE(registry.Unload("a", std::chrono::seconds(5)).ok());
}

TEST(ModelRegistry, OnlyIdleOnDemandModelsMakeRoom) {
  ModelRegistry registry;
  auto pinned = Model("pinned");
  auto first = Model("first");
  first->on_demand = true;
  auto second = Model("second");
  second->on_demand = true;
  ASSERT_TRUE(registry.Add(std::move(pinned)).ok());
  ASSERT_TRUE(registry.Add(std::move(first)).ok());
  ASSERT_TRUE(registry.Add(std::move(second)).ok());
  registry.Acquire("first");  // used (and released) after "second" was added: "second" is older
  EXPECT_EQ(registry.LeastRecentlyUsedIdle(), "second");
  ModelRegistry::LeasePtr busy = registry.Acquire("second");
  EXPECT_EQ(registry.LeastRecentlyUsedIdle(), "first");
  EXPECT_EQ(registry.IdleFor(0), (std::vector<std::string>{"first"}));
  EXPECT_TRUE(registry.IdleFor(3600).empty());
  ModelRegistry::LeasePtr also_busy = registry.Acquire("first");
  EXPECT_EQ(registry.LeastRecentlyUsedIdle(), "");  // the pinned model never makes room
}

TEST(ModelRegistry, ClearEndsAnUnloadThatIsStillWaiting) {
  ModelRegistry registry;
  ASSERT_TRUE(registry.Add(Model("a")).ok());
  ModelRegistry::LeasePtr lease = registry.Acquire("a");  // a request that never ends
  Status result;
  std::thread unloader([&] { result = registry.Unload("a", std::chrono::minutes(10)); });
  while (!registry.Names().empty()) std::this_thread::yield();  // the unload is waiting
  registry.Clear();
  unloader.join();
  EXPECT_EQ(result.code(), StatusCode::kUnavailable) << result.message();
  lease.reset();  // released by name, after its model is gone
  EXPECT_EQ(registry.Acquire("a"), nullptr);
}

TEST(MergeExpositions, EachFamilyOnceWithEveryModelsSamples) {
  const std::string a =
      "# HELP x_total X.\n# TYPE x_total counter\nx_total{model_name=\"a\"} 1\n"
      "# HELP y Y.\n# TYPE y gauge\ny{model_name=\"a\"} 2\n";
  const std::string b =
      "# HELP x_total X.\n# TYPE x_total counter\nx_total{model_name=\"b\"} 3\n"
      "# HELP z Z.\n# TYPE z gauge\nz{model_name=\"b\"} 4\n";
  EXPECT_EQ(MergeExpositions({a, b}),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{model_name=\"a\"} 1\n"
            "x_total{model_name=\"b\"} 3\n"
            "# HELP y Y.\n# TYPE y gauge\ny{model_name=\"a\"} 2\n"
            "# HELP z Z.\n# TYPE z gauge\nz{model_name=\"b\"} 4\n");
}

}  // namespace
}  // namespace kiln::server
