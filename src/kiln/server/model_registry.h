// ModelRegistry: the models one server holds, by the name clients send in `model`. It owns each
// model (a generative one's runtime and engine, or a predictive one's worker), its metrics and
// its thread budget, and its lifetime: a request holds a lease on the model it uses, and a model
// is unloaded only once the leases on it are gone, so requests in flight always finish.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/server/metrics.h"
#include "kiln/server/predict_server.h"
#include "kiln/server/served_model.h"

namespace kiln::server {

struct RegisteredModel {
  std::string name;
  std::string runtime;  // "onnx-genai", "vllm" or "predictive"
  int threads = 0;      // compute threads this model was given
  // Exactly one of these two.
  std::unique_ptr<ServedModel> generative;
  std::unique_ptr<PredictService> predictive;
  std::unique_ptr<Metrics> metrics;  // generative models' vllm:* families
  int64_t loaded_at = 0;             // Unix seconds
  bool on_demand = false;  // loaded for a request (may be unloaded when idle or for another)
};

class ModelRegistry {
 public:
  class Lease {
   public:
    Lease(ModelRegistry* registry, RegisteredModel* model, bool request);
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    RegisteredModel& model() const { return *model_; }
    RegisteredModel* operator->() const { return model_; }

   private:
    ModelRegistry* registry_;
    RegisteredModel* model_;
    std::string name_;  // released by name: the model may be gone by then (at shutdown)
    bool request_;
  };
  using LeasePtr = std::shared_ptr<Lease>;

  ModelRegistry() = default;
  ~ModelRegistry();

  // InvalidArgument when a model of that name is already loaded.
  Status Add(std::unique_ptr<RegisteredModel> model);
  // A request's lease on `name`; null when no model of that name is loaded (or it is unloading).
  LeasePtr Acquire(const std::string& name);
  // The loaded models' names, sorted.
  std::vector<std::string> Names() const;
  // The one loaded model of a kind (generative or predictive), or null when there are none or
  // several; `name` gets its name.
  LeasePtr Only(bool predictive);

  struct Usage {
    int in_flight = 0;        // requests holding the model now
    double idle_seconds = 0;  // since the last request ended (0 while one runs)
  };
  // The on-demand model idle longest (no request holds it), or "" when none is idle.
  std::string LeastRecentlyUsedIdle() const;
  // On-demand models idle for at least `seconds`.
  std::vector<std::string> IdleFor(double seconds) const;
  size_t size() const;
  // Whether any predictive model is loaded.
  bool HasPredictive() const;
  // Calls `fn` for each loaded model (name order) with a lease that is not counted as a request.
  void ForEach(const std::function<void(RegisteredModel&, const Usage&)>& fn);

  // Stops new requests for `name`, waits up to `deadline` for those in flight to finish, then
  // stops and frees the model (on this thread). NotFound when it is not loaded; Unavailable when
  // requests were still running at the deadline (the model then stays loaded).
  Status Unload(const std::string& name, std::chrono::milliseconds deadline);
  // Stops every model's engine and worker (at shutdown, after requests finished); an Unload still
  // waiting gives up first.
  void Clear();

 private:
  struct Slot {
    std::unique_ptr<RegisteredModel> model;
    int holds = 0;     // leases of any kind
    int requests = 0;  // leases taken by requests
    bool unloading = false;
    std::chrono::steady_clock::time_point last_used = std::chrono::steady_clock::now();
  };
  void Release(const std::string& name, bool request);
  static void Free(std::unique_ptr<RegisteredModel> model);

  mutable std::mutex mu_;
  std::condition_variable released_;
  int unloads_ = 0;                    // Unload calls waiting
  bool closing_ = false;               // Clear has begun
  std::map<std::string, Slot> slots_;  // by name
};

}  // namespace kiln::server
