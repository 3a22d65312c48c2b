#include "kiln/executors/onnx/genai_executor.h"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "kiln/base/log.h"

namespace kiln::onnx {

Ort::Env& SharedOrtEnvironment();

struct GenaiExecutor::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<std::string> key_in, value_in, key_out, value_out;
  bool has_position_ids = false;
  // Per layer: [slots, kv_heads, max_len, head_size] floats, left untouched until written.
  std::vector<std::unique_ptr<float[]>> keys, values;
  int64_t slot_stride = 0;  // floats per slot per layer
};

GenaiExecutor::GenaiExecutor(GenaiConfig config, int64_t max_len, int32_t slots)
    : config_(std::move(config)),
      max_len_(max_len),
      num_slots_(slots),
      impl_(std::make_unique<Impl>()),
      seq_in_slot_(slots, 0),
      slot_length_(slots, 0),
      slot_tokens_(slots) {}

GenaiExecutor::~GenaiExecutor() = default;

Result<std::unique_ptr<GenaiExecutor>> GenaiExecutor::Load(const std::string& dir,
                                                           const GenaiExecutorOptions& options) {
  KILN_ASSIGN_OR_RETURN(GenaiConfig config, ReadGenaiConfig(dir));
  if (!config.past_present_share_buffer) {
    return Status::Unsupported(dir +
                               "/genai_config.json: past_present_share_buffer is false; "
                               "Kiln runs GenAI models with a shared past/present buffer");
  }
  int64_t max_len = options.max_model_len > 0 ? options.max_model_len
                                              : std::min<int64_t>(config.context_length, 4096);
  if (max_len > config.context_length) {
    return Status::InvalidArgument("max_model_len " + std::to_string(max_len) +
                                   " exceeds the model's context_length of " +
                                   std::to_string(config.context_length));
  }
  if (options.max_num_seqs < 1) return Status::InvalidArgument("max_num_seqs must be at least 1");
  std::unique_ptr<GenaiExecutor> ex(new GenaiExecutor(config, max_len, options.max_num_seqs));
  Impl& impl = *ex->impl_;
  const std::string model_path = dir + "/" + config.filename;
  Ort::Env& env = SharedOrtEnvironment();  // first: providers log through its logger
  try {
    Ort::SessionOptions so;
    if (options.intra_op_threads > 0) so.SetIntraOpNumThreads(options.intra_op_threads);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (options.device == "cuda") {
      try {
        OrtCUDAProviderOptions cuda{};
        so.AppendExecutionProvider_CUDA(cuda);
        ex->device_ = "cuda";
      } catch (const Ort::Exception& e) {
        LogWarning(std::string("CUDA execution provider unavailable (") + e.what() +
                   "); running on CPU");
      }
    } else if (options.device != "cpu") {
      return Status::InvalidArgument("unknown device '" + options.device + "' (cpu or cuda)");
    }
    impl.session = Ort::Session(env, model_path.c_str(), so);
  } catch (const Ort::Exception& e) {
    return Status::InvalidArgument(model_path +
                                   ": ONNX Runtime cannot load the model: " + e.what());
  }
  Ort::AllocatorWithDefaultOptions allocator;
  std::set<std::string> inputs, outputs;
  for (size_t i = 0; i < impl.session.GetInputCount(); ++i) {
    inputs.insert(impl.session.GetInputNameAllocated(i, allocator).get());
  }
  for (size_t i = 0; i < impl.session.GetOutputCount(); ++i) {
    outputs.insert(impl.session.GetOutputNameAllocated(i, allocator).get());
  }
  auto require = [&](const std::set<std::string>& names, const std::string& name,
                     const char* what) -> Status {
    if (names.count(name) == 0) {
      return Status::InvalidArgument(model_path + ": the graph has no " + what + " named '" + name +
                                     "' (genai_config.json names it)");
    }
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(require(inputs, config.input_ids_name, "input"));
  KILN_RETURN_IF_ERROR(require(inputs, config.attention_mask_name, "input"));
  KILN_RETURN_IF_ERROR(require(outputs, config.logits_name, "output"));
  impl.has_position_ids =
      !config.position_ids_name.empty() && inputs.count(config.position_ids_name) != 0;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    impl.key_in.push_back(GenaiConfig::LayerName(config.past_key_names, l));
    impl.value_in.push_back(GenaiConfig::LayerName(config.past_value_names, l));
    impl.key_out.push_back(GenaiConfig::LayerName(config.present_key_names, l));
    impl.value_out.push_back(GenaiConfig::LayerName(config.present_value_names, l));
    KILN_RETURN_IF_ERROR(require(inputs, impl.key_in.back(), "input"));
    KILN_RETURN_IF_ERROR(require(inputs, impl.value_in.back(), "input"));
    KILN_RETURN_IF_ERROR(require(outputs, impl.key_out.back(), "output"));
    KILN_RETURN_IF_ERROR(require(outputs, impl.value_out.back(), "output"));
  }
  impl.slot_stride = config.num_key_value_heads * max_len * config.head_size;
  const size_t layer_floats = static_cast<size_t>(impl.slot_stride) * options.max_num_seqs;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    // new float[] without value-initialization: pages are committed only when written.
    impl.keys.emplace_back(new float[layer_floats]);
    impl.values.emplace_back(new float[layer_floats]);
  }
  return ex;
}

engine::KvCacheGeometry GenaiExecutor::kv_geometry() const {
  return {static_cast<int32_t>(max_len_), num_slots_, {}};
}

int64_t GenaiExecutor::kv_cache_bytes() const {
  return 2 * config_.num_hidden_layers * impl_->slot_stride * num_slots_ *
         static_cast<int64_t>(sizeof(float));
}

Result<int32_t> GenaiExecutor::SlotFor(const engine::Sequence& seq) {
  if (auto it = slot_of_.find(seq.id); it != slot_of_.end()) return it->second;
  for (int32_t s = 0; s < num_slots_; ++s) {
    if (seq_in_slot_[s] == 0) {
      seq_in_slot_[s] = seq.id;
      slot_length_[s] = 0;
      slot_tokens_[s].clear();
      slot_of_[seq.id] = s;
      return s;
    }
  }
  return Status::Internal("no free KV slot (the scheduler admitted more sequences than slots)");
}

void GenaiExecutor::Release(const engine::Sequence& seq) {
  auto it = slot_of_.find(seq.id);
  if (it == slot_of_.end()) return;
  const int32_t s = it->second;
  seq_in_slot_[s] = 0;
  // The slot keeps what was computed, for a later sequence with the same prefix; a filler row
  // lands just past it.
  const int64_t computed = std::min<int64_t>(slot_length_[s], seq.num_tokens());
  slot_tokens_[s].assign(seq.tokens.begin(), seq.tokens.begin() + computed);
  slot_length_[s] = computed;
  slot_of_.erase(it);
}

int64_t GenaiExecutor::AdmitWithCachedPrefix(const engine::Sequence& seq) {
  if (slot_of_.count(seq.id) != 0 || seq.num_tokens() < 2) return 0;
  int32_t target = -1;
  for (int32_t s = 0; s < num_slots_ && target < 0; ++s) {
    if (seq_in_slot_[s] == 0) target = s;
  }
  if (target < 0) return 0;                    // Execute reports the missing slot
  const int64_t limit = seq.num_tokens() - 1;  // the last token is computed for its logits
  int32_t donor = -1;
  int64_t best = 0;
  for (int32_t s = 0; s < num_slots_; ++s) {
    if (seq_in_slot_[s] != 0) continue;
    const std::vector<int32_t>& held = slot_tokens_[s];
    const int64_t n = std::min<int64_t>(limit, static_cast<int64_t>(held.size()));
    int64_t common = 0;
    while (common < n && held[common] == seq.tokens[common]) ++common;
    if (common > best || (common == best && common > 0 && s == target)) {
      best = common;
      donor = s;
    }
  }
  seq_in_slot_[target] = seq.id;
  slot_of_[seq.id] = target;
  if (best > 0 && donor != target) CopySlotPrefix(donor, target, best);
  slot_tokens_[target].clear();
  slot_length_[target] = best;
  return best;
}

void GenaiExecutor::CopySlotPrefix(int32_t from, int32_t to, int64_t count) {
  Impl& impl = *impl_;
  const int64_t head_stride = max_len_ * config_.head_size;
  const size_t bytes = static_cast<size_t>(count * config_.head_size) * sizeof(float);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    for (float* base : {impl.keys[l].get(), impl.values[l].get()}) {
      for (int64_t h = 0; h < config_.num_key_value_heads; ++h) {
        std::memcpy(base + to * impl.slot_stride + h * head_stride,
                    base + from * impl.slot_stride + h * head_stride, bytes);
      }
    }
  }
}

Status GenaiExecutor::Forward(int32_t first_slot, const std::vector<Row>& rows, int64_t seq_len,
                              const std::vector<std::pair<int32_t, float*>>& wanted,
                              bool all_positions) {
  Impl& impl = *impl_;
  const int64_t batch = static_cast<int64_t>(rows.size());
  int64_t total = 0;
  for (const Row& r : rows) total = std::max(total, r.past + seq_len);
  if (total > max_len_) {
    return Status::OutOfRange("sequence of " + std::to_string(total) +
                              " tokens exceeds the KV cache length " + std::to_string(max_len_));
  }
  std::vector<int64_t> input_ids(batch * seq_len, 0);
  std::vector<int64_t> mask(batch * total, 0);
  std::vector<int64_t> positions(batch * seq_len, 0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < seq_len; ++j) {
      input_ids[b * seq_len + j] = rows[b].tokens[j];
      positions[b * seq_len + j] = rows[b].past + j;
    }
    std::fill_n(mask.begin() + b * total, rows[b].past + seq_len, 1);
  }
  try {
    Ort::IoBinding binding(impl.session);
    const int64_t ids_shape[] = {batch, seq_len};
    const int64_t mask_shape[] = {batch, total};
    binding.BindInput(config_.input_ids_name.c_str(),
                      Ort::Value::CreateTensor<int64_t>(impl.cpu, input_ids.data(),
                                                        input_ids.size(), ids_shape, 2));
    binding.BindInput(
        config_.attention_mask_name.c_str(),
        Ort::Value::CreateTensor<int64_t>(impl.cpu, mask.data(), mask.size(), mask_shape, 2));
    if (impl.has_position_ids) {
      binding.BindInput(config_.position_ids_name.c_str(),
                        Ort::Value::CreateTensor<int64_t>(impl.cpu, positions.data(),
                                                          positions.size(), ids_shape, 2));
    }
    const int64_t kv_shape[] = {batch, config_.num_key_value_heads, max_len_, config_.head_size};
    const size_t kv_count = static_cast<size_t>(batch * impl.slot_stride);
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      float* k = impl.keys[l].get() + first_slot * impl.slot_stride;
      float* v = impl.values[l].get() + first_slot * impl.slot_stride;
      Ort::Value kv = Ort::Value::CreateTensor<float>(impl.cpu, k, kv_count, kv_shape, 4);
      Ort::Value vv = Ort::Value::CreateTensor<float>(impl.cpu, v, kv_count, kv_shape, 4);
      binding.BindInput(impl.key_in[l].c_str(), kv);
      binding.BindInput(impl.value_in[l].c_str(), vv);
      binding.BindOutput(impl.key_out[l].c_str(), kv);
      binding.BindOutput(impl.value_out[l].c_str(), vv);
    }
    binding.BindOutput(config_.logits_name.c_str(), impl.cpu);
    impl.session.Run(Ort::RunOptions{nullptr}, binding);
    std::vector<Ort::Value> outputs = binding.GetOutputValues();
    // Outputs come back in binding order: the present tensors first, then the logits.
    Ort::Value& out = outputs.back();
    auto info = out.GetTensorTypeAndShapeInfo();
    auto shape = info.GetShape();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 3 ||
        shape[0] != batch || shape[2] != config_.vocab_size) {
      return Status::Internal("logits output has an unexpected type or shape");
    }
    const float* data = out.GetTensorData<float>();
    const int64_t positions_out = shape[1];  // seq_len, or 1 if the graph keeps only the last
    if (all_positions && positions_out != seq_len) {
      return Status::Unsupported(
          "this model's graph returns logits for the last position only, so it cannot score "
          "prompt tokens (prompt logprobs)");
    }
    const int64_t first = all_positions ? 0 : positions_out - 1;
    for (auto [b, dest] : wanted) {
      const float* row = data + (b * positions_out + first) * config_.vocab_size;
      std::copy(row, row + (positions_out - first) * config_.vocab_size, dest);
    }
  } catch (const Ort::Exception& e) {
    return Status::Internal(std::string("ONNX Runtime forward pass failed: ") + e.what());
  }
  return Status::Ok();
}

Status GenaiExecutor::Execute(const engine::SchedulerStep& step, std::vector<float>* logits) {
  const int64_t vocab = config_.vocab_size;
  // Each chunk's rows of logits go straight to their place in the output, in chunk order.
  std::vector<float*> dest(step.chunks.size(), nullptr);
  {
    size_t rows = 0;
    std::vector<size_t> first_row(step.chunks.size(), 0);
    for (size_t i = 0; i < step.chunks.size(); ++i) {
      const engine::ScheduledChunk& c = step.chunks[i];
      first_row[i] = rows;
      rows += c.all_logits ? static_cast<size_t>(c.count) : (c.samples ? 1 : 0);
    }
    const size_t base = logits->size();
    logits->resize(base + rows * vocab);
    for (size_t i = 0; i < step.chunks.size(); ++i) {
      if (step.chunks[i].samples || step.chunks[i].all_logits) {
        dest[i] = logits->data() + base + first_row[i] * vocab;
      }
    }
  }
  std::vector<size_t> decodes;
  for (size_t i = 0; i < step.chunks.size(); ++i) {
    const engine::ScheduledChunk& c = step.chunks[i];
    KILN_ASSIGN_OR_RETURN(int32_t slot, SlotFor(*c.seq));
    if (c.start != slot_length_[slot]) {
      return Status::Internal("KV slot holds " + std::to_string(slot_length_[slot]) +
                              " tokens but the step starts at " + std::to_string(c.start));
    }
    if (c.count == 1 && c.start > 0) {
      decodes.push_back(i);
      continue;
    }
    std::vector<std::pair<int32_t, float*>> wanted;
    if (dest[i] != nullptr) wanted.emplace_back(0, dest[i]);
    KILN_RETURN_IF_ERROR(Forward(slot, {Row{c.seq->tokens.data() + c.start, c.count, c.start}},
                                 c.count, wanted, c.all_logits));
    slot_length_[slot] = c.start + c.count;
  }
  if (decodes.empty()) return Status::Ok();
  int32_t lo = num_slots_, hi = -1;
  for (size_t i : decodes) {
    int32_t s = slot_of_.at(step.chunks[i].seq->id);
    lo = std::min(lo, s);
    hi = std::max(hi, s);
  }
  static const int32_t kFillerToken = 0;
  std::vector<Row> rows;
  for (int32_t s = lo; s <= hi; ++s) {
    const int64_t at = std::min<int64_t>(slot_length_[s], max_len_ - 1);
    rows.push_back(Row{&kFillerToken, 1, at});
    // A free slot's cached tokens end where the filler writes.
    if (static_cast<int64_t>(slot_tokens_[s].size()) > at) slot_tokens_[s].resize(at);
  }
  std::vector<std::pair<int32_t, float*>> wanted;
  for (size_t i : decodes) {
    const engine::ScheduledChunk& c = step.chunks[i];
    int32_t s = slot_of_.at(c.seq->id);
    rows[s - lo] = Row{c.seq->tokens.data() + c.start, 1, c.start};
    if (dest[i] != nullptr) wanted.emplace_back(s - lo, dest[i]);
  }
  auto started = std::chrono::steady_clock::now();
  KILN_RETURN_IF_ERROR(Forward(lo, rows, 1, wanted, /*all_positions=*/false));
  if (GetLogLevel() <= LogLevel::kDebug) {
    Log(LogLevel::kDebug, "decode pass: " + std::to_string(rows.size()) + " rows (" +
                              std::to_string(decodes.size()) + " decoding), " +
                              std::to_string(std::chrono::duration<double, std::milli>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count()) +
                              " ms");
  }
  for (size_t i : decodes) slot_length_[slot_of_.at(step.chunks[i].seq->id)] += 1;
  return Status::Ok();
}

}  // namespace kiln::onnx
