#include "kiln/server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace kiln::server {
namespace {

using json = nlohmann::ordered_json;

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "unknown";
  }
}

// Reads typed optional fields of one JSON object, remembering the first error.
class Fields {
 public:
  Fields(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  const json* Get(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string Param(const std::string& key) const { return prefix_ + key; }

  bool Fail(const std::string& key, const std::string& message) {
    if (!error_) error_ = RequestError{message, Param(key)};
    return false;
  }
  bool WrongType(const char* key, const char* expected, const json& v) {
    return Fail(key, "'" + Param(key) + "' must be " + expected + ", got " + TypeName(v));
  }

  bool String(const char* key, std::string* out, bool required = false) {
    const json* v = Get(key);
    if (!v) return required ? Fail(key, "'" + Param(key) + "' is required") : true;
    if (!v->is_string()) return WrongType(key, "a string", *v);
    *out = v->get<std::string>();
    return true;
  }
  bool OptString(const char* key, std::optional<std::string>* out) {
    std::string s;
    if (!Get(key)) return true;
    if (!String(key, &s)) return false;
    *out = s;
    return true;
  }
  bool Bool(const char* key, bool* out) {
    const json* v = Get(key);
    if (!v) return true;
    if (!v->is_boolean()) return WrongType(key, "a boolean", *v);
    *out = v->get<bool>();
    return true;
  }
  bool Number(const char* key, float* out, double lo, double hi) {
    const json* v = Get(key);
    if (!v) return true;
    if (!v->is_number()) return WrongType(key, "a number", *v);
    double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) {
      return Fail(key, "'" + Param(key) + "' must be between " + Num(lo) + " and " + Num(hi) +
                           ", got " + v->dump());
    }
    *out = static_cast<float>(d);
    return true;
  }
  bool Integer(const char* key, std::optional<int64_t>* out, int64_t lo, int64_t hi) {
    const json* v = Get(key);
    if (!v) return true;
    if (!v->is_number_integer() && !(v->is_number_float() && IsIntegral(v->get<double>()))) {
      return WrongType(key, "an integer", *v);
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Fail(
          key, "'" + Param(key) + "' must be at most " + std::to_string(hi) + ", got " + v->dump());
    }
    double d = v->get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      return Fail(key, "'" + Param(key) + "' must be between " + std::to_string(lo) + " and " +
                           std::to_string(hi) + ", got " + v->dump());
    }
    *out = v->is_number_float() ? static_cast<int64_t>(d) : v->get<int64_t>();
    return true;
  }

  const std::optional<RequestError>& error() const { return error_; }

 private:
  static bool IsIntegral(double d) { return std::isfinite(d) && std::floor(d) == d; }
  static std::string Num(double d) {
    json j = d;
    std::string s = j.dump();
    if (s.size() > 2 && s.substr(s.size() - 2) == ".0") s.resize(s.size() - 2);
    return s;
  }
  const json& obj_;
  std::string prefix_;
  std::optional<RequestError> error_;
};

constexpr int64_t kMaxTokensLimit = 1 << 30;

// A JSON integer that fits a token id (0 to 2^31 - 1); vocabulary bounds are checked later.
bool IsTokenId(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= std::numeric_limits<int32_t>::max();
  return v.is_number_integer() && v.get<int64_t>() >= 0 &&
         v.get<int64_t>() <= std::numeric_limits<int32_t>::max();
}

// Fields both endpoints share: sampling, streaming, vLLM's extra parameters.
bool ParseGenerationOptions(Fields& f, const json& body, GenerationOptions* o, bool chat) {
  engine::SamplingParams& s = o->sampling;
  if (!f.String("model", &o->model, /*required=*/true)) return false;
  if (!f.Bool("stream", &o->stream)) return false;
  if (const json* so = f.Get("stream_options")) {
    if (!so->is_object()) return f.WrongType("stream_options", "an object", *so);
    Fields sf(*so, "stream_options.");
    if (!sf.Bool("include_usage", &o->include_usage))
      return f.Fail("stream_options", sf.error()->message);
  }
  if (!f.Number("temperature", &s.temperature, 0.0, 2.0)) return false;
  if (!f.Number("top_p", &s.top_p, 0.0, 1.0)) return false;
  if (f.Get("top_p") && s.top_p <= 0.0f) return f.Fail("top_p", "'top_p' must be greater than 0");
  if (!f.Number("min_p", &s.min_p, 0.0, 1.0)) return false;
  if (!f.Number("presence_penalty", &s.presence_penalty, -2.0, 2.0)) return false;
  if (!f.Number("frequency_penalty", &s.frequency_penalty, -2.0, 2.0)) return false;
  if (!f.Number("repetition_penalty", &s.repetition_penalty, 0.0, 100.0)) return false;
  if (f.Get("repetition_penalty") && s.repetition_penalty <= 0.0f) {
    return f.Fail("repetition_penalty", "'repetition_penalty' must be greater than 0");
  }
  std::optional<int64_t> i;
  if (!f.Integer("top_k", &i, -1, std::numeric_limits<int32_t>::max())) return false;
  if (i) s.top_k = static_cast<int>(*i);
  i.reset();
  if (!f.Integer("n", &i, 1, 128)) return false;
  if (i) s.n = static_cast<int>(*i);
  i.reset();
  if (!f.Integer("seed", &i, std::numeric_limits<int64_t>::min(),
                 std::numeric_limits<int64_t>::max())) {
    return false;
  }
  if (i) s.seed = static_cast<uint64_t>(*i);
  // max_completion_tokens is the newer name for max_tokens in chat.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    i.reset();
    if (!f.Integer(key, &i, 1, kMaxTokensLimit)) return false;
    if (i) s.max_tokens = *i;
  }
  i.reset();
  if (!f.Integer("min_tokens", &i, 0, kMaxTokensLimit)) return false;
  if (i) s.min_tokens = *i;
  if (!f.Bool("ignore_eos", &s.ignore_eos)) return false;
  if (!f.Bool("skip_special_tokens", &o->skip_special_tokens)) return false;
  if (!f.Bool("return_tokens_as_token_ids", &o->return_tokens_as_token_ids)) return false;
  if (!f.Bool("include_stop_str_in_output", &s.include_stop_str_in_output)) return false;
  if (!f.OptString("user", &o->user)) return false;

  if (const json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      s.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& x : *stop) {
        if (!x.is_string()) return f.WrongType("stop", "a string or an array of strings", x);
        s.stop.push_back(x.get<std::string>());
      }
    } else {
      return f.WrongType("stop", "a string or an array of strings", *stop);
    }
    if (s.stop.size() > 16) return f.Fail("stop", "at most 16 stop sequences are allowed");
    for (const auto& x : s.stop) {
      if (x.empty()) return f.Fail("stop", "stop sequences must not be empty");
    }
  }
  if (const json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return f.WrongType("stop_token_ids", "an array of integers", *ids);
    for (const json& x : *ids) {
      if (!x.is_number_integer()) return f.WrongType("stop_token_ids", "an array of integers", x);
      s.stop_token_ids.push_back(x.get<int32_t>());
    }
  }
  if (const json* bias = f.Get("logit_bias")) {
    if (!bias->is_object()) return f.WrongType("logit_bias", "an object", *bias);
    for (const auto& [key, value] : bias->items()) {
      char* end = nullptr;
      long token = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || token < 0 || token > std::numeric_limits<int32_t>::max()) {
        return f.Fail("logit_bias", "'logit_bias' keys must be token ids, got \"" + key + "\"");
      }
      if (!value.is_number() || value.get<double>() < -100 || value.get<double>() > 100) {
        return f.Fail("logit_bias", "'logit_bias' values must be numbers between -100 and 100");
      }
      s.logit_bias[static_cast<int32_t>(token)] = value.get<float>();
    }
  }
  if (chat) {
    if (!f.Bool("logprobs", &o->logprobs)) return false;
    i.reset();
    if (!f.Integer("top_logprobs", &i, 0, 20)) return false;
    if (i && !o->logprobs)
      return f.Fail("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    if (o->logprobs) s.logprobs = static_cast<int>(i.value_or(0));
  } else {
    i.reset();
    if (const json* lp = f.Get("logprobs"); lp && lp->is_boolean()) {
      return f.WrongType("logprobs", "an integer between 0 and 20", *lp);
    }
    if (!f.Integer("logprobs", &i, 0, 20)) return false;
    if (i) {
      o->logprobs = true;
      s.logprobs = static_cast<int>(*i);
    }
  }
  i.reset();
  if (!f.Integer("prompt_logprobs", &i, 0, 20)) return false;
  if (i) {
    o->prompt_logprobs = true;
    s.prompt_logprobs = static_cast<int>(*i);
    if (chat && o->stream) {
      return f.Fail("prompt_logprobs", "'prompt_logprobs' is not available when streaming a chat");
    }
  }
  (void)body;
  return true;
}

std::optional<RequestError> ParseContent(const json& content, const std::string& param,
                                         std::optional<std::string>* out) {
  if (content.is_null()) return std::nullopt;
  if (content.is_string()) {
    *out = content.get<std::string>();
    return std::nullopt;
  }
  if (!content.is_array()) {
    return RequestError{
        "'" + param + "' must be a string or an array of content parts, got " + TypeName(content),
        param};
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return RequestError{"'" + p + "' must be an object with a 'type'", p};
    }
    std::string type = part["type"].get<std::string>();
    if (type != "text") {
      return RequestError{
          "content part type '" + type + "' is not supported by this model; " + "only 'text' is",
          p + ".type"};
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return RequestError{"'" + p + ".text' must be a string", p + ".text"};
    }
    text += part["text"].get<std::string>();
  }
  *out = text;
  return std::nullopt;
}

}  // namespace

std::optional<std::string> ValidateJsonSchemaShape(const json& schema) {
  if (!schema.is_object()) return "a JSON schema must be an object";
  static const std::set<std::string> kTypes = {"object",  "array",   "string", "number",
                                               "integer", "boolean", "null"};
  if (auto t = schema.find("type"); t != schema.end()) {
    auto check = [&](const json& x) -> std::optional<std::string> {
      if (!x.is_string() || kTypes.count(x.get<std::string>()) == 0) {
        return "unknown schema type " + x.dump();
      }
      return std::nullopt;
    };
    if (t->is_array()) {
      for (const json& x : *t) {
        if (auto e = check(x)) return e;
      }
    } else if (auto e = check(*t)) {
      return e;
    }
  }
  if (auto p = schema.find("properties"); p != schema.end()) {
    if (!p->is_object()) return "'properties' must be an object";
    for (const auto& [name, sub] : p->items()) {
      if (auto e = ValidateJsonSchemaShape(sub)) return "property '" + name + "': " + *e;
    }
  }
  if (auto r = schema.find("required"); r != schema.end()) {
    if (!r->is_array()) return "'required' must be an array of property names";
    for (const json& x : *r) {
      if (!x.is_string()) return "'required' must be an array of property names";
    }
  }
  if (auto items = schema.find("items"); items != schema.end() && !items->is_boolean()) {
    if (auto e = ValidateJsonSchemaShape(*items)) return "items: " + *e;
  }
  if (auto e = schema.find("enum"); e != schema.end() && (!e->is_array() || e->empty())) {
    return "'enum' must be a non-empty array";
  }
  for (const char* key : {"anyOf", "oneOf", "allOf"}) {
    if (auto a = schema.find(key); a != schema.end()) {
      if (!a->is_array() || a->empty())
        return std::string("'") + key + "' must be a non-empty array";
      for (const json& sub : *a) {
        if (auto e = ValidateJsonSchemaShape(sub)) return std::string(key) + ": " + *e;
      }
    }
  }
  return std::nullopt;
}

Parsed<ChatCompletionRequest> ParseChatCompletionRequest(const json& body,
                                                         const engine::SamplingParams& defaults) {
  if (!body.is_object()) return RequestError{"the request body must be a JSON object", ""};
  ChatCompletionRequest req;
  req.options.sampling = defaults;
  Fields f(body, "");
  if (!ParseGenerationOptions(f, body, &req.options, /*chat=*/true)) return *f.error();

  const json* messages = f.Get("messages");
  if (!messages) return RequestError{"'messages' is required", "messages"};
  if (!messages->is_array()) {
    return RequestError{std::string("'messages' must be an array, got ") + TypeName(*messages),
                        "messages"};
  }
  if (messages->empty())
    return RequestError{"'messages' must contain at least one message", "messages"};
  static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant", "tool"};
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return RequestError{"'" + p + "' must be an object", p};
    ChatMessage msg;
    Fields mf(m, p + ".");
    if (!mf.String("role", &msg.role, true)) return *mf.error();
    if (kRoles.count(msg.role) == 0) {
      return RequestError{"'" + p +
                              ".role' must be one of system, developer, user, assistant, "
                              "tool; got '" +
                              msg.role + "'",
                          p + ".role"};
    }
    if (auto it = m.find("content"); it != m.end()) {
      if (auto e = ParseContent(*it, p + ".content", &msg.content)) return *e;
    }
    if (!mf.OptString("name", &msg.name)) return *mf.error();
    if (!mf.OptString("tool_call_id", &msg.tool_call_id)) return *mf.error();
    if (const json* calls = mf.Get("tool_calls")) {
      if (msg.role != "assistant") {
        return RequestError{"only assistant messages may carry 'tool_calls'", p + ".tool_calls"};
      }
      if (!calls->is_array())
        return RequestError{"'" + p + ".tool_calls' must be an array", p + ".tool_calls"};
      for (size_t k = 0; k < calls->size(); ++k) {
        const json& c = (*calls)[k];
        std::string cp = p + ".tool_calls[" + std::to_string(k) + "]";
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) {
          return RequestError{"'" + cp + "' must be an object with a 'function'", cp};
        }
        ToolCall call;
        Fields cf(c, cp + ".");
        if (!cf.String("id", &call.id)) return *cf.error();
        Fields ff(c["function"], cp + ".function.");
        if (!ff.String("name", &call.name, true)) return *ff.error();
        if (const json* args = ff.Get("arguments")) {
          call.arguments = args->is_string() ? args->get<std::string>() : args->dump();
        }
        msg.tool_calls.push_back(call);
      }
    }
    if (!msg.content && msg.tool_calls.empty() && msg.role != "assistant") {
      return RequestError{"'" + p + ".content' is required for " + msg.role + " messages",
                          p + ".content"};
    }
    if (msg.role == "tool" && !msg.tool_call_id) {
      return RequestError{"'" + p + ".tool_call_id' is required for tool messages",
                          p + ".tool_call_id"};
    }
    req.messages.push_back(std::move(msg));
  }
  req.messages_json = *messages;

  if (const json* tools = f.Get("tools")) {
    if (!tools->is_array()) return RequestError{"'tools' must be an array", "tools"};
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      std::string p = "tools[" + std::to_string(i) + "]";
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") ||
          !t["function"].is_object()) {
        return RequestError{"'" + p + "' must be {\"type\": \"function\", \"function\": {...}}", p};
      }
      ToolDefinition def;
      Fields tf(t["function"], p + ".function.");
      if (!tf.String("name", &def.name, true)) return *tf.error();
      if (def.name.empty() || def.name.size() > 64 ||
          def.name.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
              std::string::npos) {
        return RequestError{"'" + p + ".function.name' must be 1 to 64 letters, digits, '_' or '-'",
                            p + ".function.name"};
      }
      if (!tf.String("description", &def.description)) return *tf.error();
      if (const json* params = tf.Get("parameters")) {
        if (auto e = ValidateJsonSchemaShape(*params)) {
          return RequestError{"'" + p + ".function.parameters' is not a valid JSON schema: " + *e,
                              p + ".function.parameters"};
        }
        def.parameters = *params;
      }
      for (const auto& other : req.tools) {
        if (other.name == def.name) {
          return RequestError{"two tools are named '" + def.name + "'", p + ".function.name"};
        }
      }
      req.tools.push_back(std::move(def));
    }
    req.tools_json = *tools;
  }
  if (const json* choice = f.Get("tool_choice")) {
    if (choice->is_string()) {
      std::string c = choice->get<std::string>();
      if (c == "auto") {
        req.tool_choice = ToolChoiceMode::kAuto;
      } else if (c == "none") {
        req.tool_choice = ToolChoiceMode::kNone;
      } else if (c == "required") {
        req.tool_choice = ToolChoiceMode::kRequired;
      } else {
        return RequestError{
            "'tool_choice' must be none, auto, required or a named function; got '" + c + "'",
            "tool_choice"};
      }
    } else if (choice->is_object() && choice->contains("function") &&
               (*choice)["function"].is_object() && (*choice)["function"].contains("name") &&
               (*choice)["function"]["name"].is_string()) {
      req.tool_choice = ToolChoiceMode::kNamed;
      req.tool_choice_name = (*choice)["function"]["name"].get<std::string>();
    } else {
      return RequestError{
          "'tool_choice' must be a string or {\"type\": \"function\", \"function\": "
          "{\"name\": ...}}",
          "tool_choice"};
    }
    if ((req.tool_choice == ToolChoiceMode::kRequired ||
         req.tool_choice == ToolChoiceMode::kNamed) &&
        req.tools.empty()) {
      return RequestError{"'tool_choice' requires 'tools'", "tool_choice"};
    }
    if (req.tool_choice == ToolChoiceMode::kNamed) {
      bool found = false;
      for (const auto& t : req.tools) found = found || t.name == req.tool_choice_name;
      if (!found) {
        return RequestError{
            "'tool_choice' names '" + req.tool_choice_name + "', which is not in 'tools'",
            "tool_choice"};
      }
    }
  }
  if (!f.Bool("parallel_tool_calls", &req.parallel_tool_calls)) return *f.error();
  if (const json* rf = f.Get("response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string()) {
      return RequestError{"'response_format' must be an object with a 'type'", "response_format"};
    }
    std::string type = (*rf)["type"].get<std::string>();
    if (type == "text") {
      req.response_format.type = ResponseFormat::Type::kText;
    } else if (type == "json_object") {
      req.response_format.type = ResponseFormat::Type::kJsonObject;
    } else if (type == "json_schema") {
      req.response_format.type = ResponseFormat::Type::kJsonSchema;
      const json* js = rf->contains("json_schema") ? &(*rf)["json_schema"] : nullptr;
      if (!js || !js->is_object() || !js->contains("schema")) {
        return RequestError{"'response_format.json_schema.schema' is required",
                            "response_format.json_schema"};
      }
      req.response_format.schema_name = js->value("name", "");
      req.response_format.schema = (*js)["schema"];
      if (auto e = ValidateJsonSchemaShape(req.response_format.schema)) {
        return RequestError{
            "'response_format.json_schema.schema' is not a valid JSON schema: " + *e,
            "response_format.json_schema.schema"};
      }
    } else {
      return RequestError{
          "'response_format.type' must be text, json_object or json_schema; got '" + type + "'",
          "response_format.type"};
    }
  }
  if (!f.Bool("add_generation_prompt", &req.add_generation_prompt)) return *f.error();
  if (!f.Bool("continue_final_message", &req.continue_final_message)) return *f.error();
  return req;
}

Parsed<json> ParseJsonBody(std::string_view body) {
  try {
    return json::parse(body);
  } catch (const json::exception& e) {
    // parse_error says where; out_of_range is a number too large for a double ("1e999").
    std::string what = e.what();
    size_t bracket = what.find("] ");
    std::string detail = bracket == std::string::npos ? what : what.substr(bracket + 2);
    if (const auto* pe = dynamic_cast<const json::parse_error*>(&e)) {
      size_t colon = what.rfind(": ");
      return RequestError{"the request body is not valid JSON (byte " + std::to_string(pe->byte) +
                              "): " + (colon == std::string::npos ? what : what.substr(colon + 2)),
                          ""};
    }
    return RequestError{"the request body is not usable JSON: " + detail, ""};
  }
}

Parsed<CompletionRequest> ParseCompletionRequest(const json& body,
                                                 const engine::SamplingParams& defaults) {
  if (!body.is_object()) return RequestError{"the request body must be a JSON object", ""};
  CompletionRequest req;
  req.options.sampling = defaults;
  Fields f(body, "");
  if (!ParseGenerationOptions(f, body, &req.options, /*chat=*/false)) return *f.error();
  if (!f.Bool("echo", &req.echo)) return *f.error();
  if (req.echo && req.options.logprobs) {
    // The echoed prompt carries its tokens' logprobs too, as OpenAI's completions do.
    auto& s = req.options.sampling;
    s.prompt_logprobs = std::max(s.prompt_logprobs.value_or(0), s.logprobs.value_or(0));
  }
  if (f.Get("suffix")) return RequestError{"'suffix' is not supported", "suffix"};
  const json* prompt = f.Get("prompt");
  if (!prompt) return RequestError{"'prompt' is required", "prompt"};
  auto token_list = [](const json& a, std::vector<int32_t>* out) {
    for (const json& x : a) {
      if (!IsTokenId(x)) return false;
      out->push_back(x.get<int32_t>());
    }
    return true;
  };
  const char* kShape =
      "'prompt' must be a string, an array of strings, an array of token ids or "
      "an array of arrays of token ids";
  if (prompt->is_string()) {
    req.prompts.emplace_back(prompt->get<std::string>());
  } else if (prompt->is_array() && !prompt->empty()) {
    if ((*prompt)[0].is_number_integer()) {
      std::vector<int32_t> ids;
      if (!token_list(*prompt, &ids)) return RequestError{kShape, "prompt"};
      req.prompts.emplace_back(std::move(ids));
    } else {
      for (const json& p : *prompt) {
        if (p.is_string()) {
          req.prompts.emplace_back(p.get<std::string>());
        } else if (p.is_array()) {
          std::vector<int32_t> ids;
          if (!token_list(p, &ids)) return RequestError{kShape, "prompt"};
          req.prompts.emplace_back(std::move(ids));
        } else {
          return RequestError{kShape, "prompt"};
        }
      }
    }
  } else {
    return RequestError{kShape, "prompt"};
  }
  for (const auto& p : req.prompts) {
    if (const auto* s = std::get_if<std::string>(&p); s && s->empty()) {
      return RequestError{"'prompt' must not be empty", "prompt"};
    }
    if (const auto* ids = std::get_if<std::vector<int32_t>>(&p); ids && ids->empty()) {
      return RequestError{"'prompt' must not be empty", "prompt"};
    }
  }
  return req;
}

Parsed<TokenizeRequest> ParseTokenizeRequest(const json& body, const std::string& model) {
  if (!body.is_object()) return RequestError{"the request body must be a JSON object", ""};
  TokenizeRequest req;
  Fields f(body, "");
  if (!f.Bool("return_token_strs", &req.return_token_strs)) return *f.error();
  if (body.contains("messages")) {
    req.add_special_tokens = false;  // the template writes the special tokens itself
    if (!f.Bool("add_special_tokens", &req.add_special_tokens)) return *f.error();
    json chat = body;
    chat.erase("add_special_tokens");
    chat.erase("return_token_strs");
    if (!chat.contains("model") || chat["model"].is_null()) chat["model"] = model;
    auto parsed = ParseChatCompletionRequest(chat);
    if (auto* err = std::get_if<RequestError>(&parsed)) return *err;
    req.chat = std::move(std::get<ChatCompletionRequest>(parsed));
    return req;
  }
  if (!f.Bool("add_special_tokens", &req.add_special_tokens)) return *f.error();
  const json* prompt = f.Get("prompt");
  if (!prompt || !prompt->is_string()) {
    return RequestError{"give 'prompt' (a string) or 'messages'", "prompt"};
  }
  req.prompt = prompt->get<std::string>();
  return req;
}

Parsed<std::vector<int32_t>> ParseDetokenizeRequest(const json& body, size_t vocab_size) {
  const char* kShape = "'tokens' (an array of token ids) is required";
  if (!body.is_object()) return RequestError{"the request body must be a JSON object", ""};
  auto it = body.find("tokens");
  if (it == body.end() || !it->is_array()) return RequestError{kShape, "tokens"};
  std::vector<int32_t> ids;
  for (const json& t : *it) {
    if (!IsTokenId(t) || static_cast<size_t>(t.get<int64_t>()) >= vocab_size) {
      return RequestError{"'tokens' must hold token ids of this model's vocabulary (0 to " +
                              std::to_string(vocab_size) + " - 1), got " + t.dump(),
                          "tokens"};
    }
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

}  // namespace kiln::server
