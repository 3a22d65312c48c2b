#include "kiln/server/model_registry.h"

#include <chrono>

namespace kiln::server {

ModelRegistry::Lease::Lease(ModelRegistry* registry, RegisteredModel* model, bool request)
    : registry_(registry), model_(model), name_(model->name), request_(request) {}

ModelRegistry::Lease::~Lease() { registry_->Release(name_, request_); }

ModelRegistry::~ModelRegistry() { Clear(); }

Status ModelRegistry::Add(std::unique_ptr<RegisteredModel> model) {
  std::lock_guard lock(mu_);
  if (slots_.count(model->name)) {
    return Status::InvalidArgument("two models are named '" + model->name +
                                   "'; give each its own --served-model-name");
  }
  const std::string name = model->name;
  slots_[name].model = std::move(model);
  return Status::Ok();
}

ModelRegistry::LeasePtr ModelRegistry::Acquire(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second.unloading) return nullptr;
  ++it->second.holds;
  ++it->second.requests;
  return std::make_shared<Lease>(this, it->second.model.get(), true);
}

std::vector<std::string> ModelRegistry::Names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, slot] : slots_) {
    if (!slot.unloading) names.push_back(name);
  }
  return names;
}

ModelRegistry::LeasePtr ModelRegistry::Only(bool predictive) {
  std::lock_guard lock(mu_);
  Slot* found = nullptr;
  for (auto& [name, slot] : slots_) {
    if (slot.unloading || (slot.model->predictive != nullptr) != predictive) continue;
    if (found) return nullptr;
    found = &slot;
  }
  if (!found) return nullptr;
  ++found->holds;
  ++found->requests;
  return std::make_shared<Lease>(this, found->model.get(), true);
}

std::string ModelRegistry::LeastRecentlyUsedIdle() const {
  std::lock_guard lock(mu_);
  const Slot* oldest = nullptr;
  std::string name;
  for (const auto& [n, slot] : slots_) {
    if (slot.unloading || slot.holds > 0 || !slot.model->on_demand) continue;
    if (!oldest || slot.last_used < oldest->last_used) {
      oldest = &slot;
      name = n;
    }
  }
  return name;
}

std::vector<std::string> ModelRegistry::IdleFor(double seconds) const {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::string> names;
  for (const auto& [n, slot] : slots_) {
    if (slot.unloading || slot.holds > 0 || !slot.model->on_demand) continue;
    if (std::chrono::duration<double>(now - slot.last_used).count() >= seconds) names.push_back(n);
  }
  return names;
}

size_t ModelRegistry::size() const {
  std::lock_guard lock(mu_);
  return slots_.size();
}

bool ModelRegistry::HasPredictive() const {
  std::lock_guard lock(mu_);
  for (const auto& [name, slot] : slots_) {
    if (!slot.unloading && slot.model->predictive) return true;
  }
  return false;
}

void ModelRegistry::ForEach(const std::function<void(RegisteredModel&, const Usage&)>& fn) {
  std::vector<std::pair<LeasePtr, Usage>> held;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto& [name, slot] : slots_) {
      if (slot.unloading) continue;
      Usage usage;
      usage.in_flight = slot.requests;
      if (slot.requests == 0) {
        usage.idle_seconds = std::chrono::duration<double>(now - slot.last_used).count();
      }
      ++slot.holds;
      held.emplace_back(std::make_shared<Lease>(this, slot.model.get(), false), usage);
    }
  }
  for (auto& [lease, usage] : held) fn(lease->model(), usage);
}

void ModelRegistry::Release(const std::string& name, bool request) {
  {
    std::lock_guard lock(mu_);
    auto it = slots_.find(name);
    if (it == slots_.end()) return;
    --it->second.holds;
    if (request) {
      --it->second.requests;
      it->second.last_used = std::chrono::steady_clock::now();
    }
  }
  released_.notify_all();
}

Status ModelRegistry::Unload(const std::string& name, std::chrono::milliseconds deadline) {
  std::unique_ptr<RegisteredModel> freed;
  {
    std::unique_lock lock(mu_);
    if (closing_) return Status::Unavailable("the server is shutting down");
    auto it = slots_.find(name);
    if (it == slots_.end() || it->second.unloading) {
      return Status::NotFound("no model '" + name + "' is loaded");
    }
    it->second.unloading = true;  // new requests for it are refused from now on
    ++unloads_;
    const bool drained =
        released_.wait_for(lock, deadline, [&] { return closing_ || it->second.holds == 0; });
    --unloads_;
    if (closing_) {
      released_.notify_all();  // Clear waits for the unloads to give up
      return Status::Unavailable("the server is shutting down");
    }
    if (!drained) {
      it->second.unloading = false;
      return Status::Unavailable("'" + name + "' still has " + std::to_string(it->second.requests) +
                                 " requests running; it stays loaded");
    }
    freed = std::move(it->second.model);
    slots_.erase(it);
  }
  Free(std::move(freed));
  return Status::Ok();
}

void ModelRegistry::Clear() {
  std::map<std::string, Slot> slots;
  {
    std::unique_lock lock(mu_);
    closing_ = true;
    released_.notify_all();
    released_.wait(lock, [&] { return unloads_ == 0; });
    slots.swap(slots_);
  }
  for (auto& [name, slot] : slots) Free(std::move(slot.model));
}

void ModelRegistry::Free(std::unique_ptr<RegisteredModel> model) {
  if (!model) return;
  if (model->generative) model->generative->engine().Stop();
  model->predictive.reset();  // joins its worker
  model->generative.reset();
}

}  // namespace kiln::server
