#include "kiln/cli/run_command.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/log.h"
#include "kiln/catalog/http_fetch.h"
#include "kiln/cli/catalog_command.h"
#include "kiln/cli/exit_codes.h"
#include "kiln/cli/serve_command.h"
#include "kiln/server/openai_server.h"

namespace kiln::cli {
namespace {

using ojson = nlohmann::ordered_json;

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted = true; }

struct RunArgs {
  std::string model;
  std::string url;  // a running server; empty: load the model in this process
  std::string api_key;
  server::ModelOptions options;
  std::string system;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> max_tokens;
  bool verbose = false;
};

// What one reply did.
struct ReplyStats {
  int64_t tokens = 0;
  double first_token_seconds = 0;
  double seconds = 0;  // from the request to the last token
  double TokensPerSecond() const {
    const double decode = seconds - first_token_seconds;
    return tokens > 1 && decode > 0 ? (tokens - 1) / decode : 0;
  }
};

class Chat {
 public:
  Chat(RunArgs args, std::string base_url, std::string model)
      : args_(std::move(args)), base_(std::move(base_url)), model_(std::move(model)) {}

  int Loop() {
    const bool tty = isatty(fileno(stdin));
    if (tty) {
      std::printf(
          "Chatting with %s. /help for commands; Ctrl-C stops a reply; Ctrl-D or /bye "
          "leaves.\n",
          model_.c_str());
    }
    std::string line;
    for (;;) {
      if (tty) {
        std::printf(">>> ");
        std::fflush(stdout);
      }
      g_interrupted = false;
      if (!std::getline(std::cin, line)) {
        // Ctrl-C at the prompt interrupts the read (the stream reports it as an end of file).
        if (g_interrupted && tty) {
          std::cin.clear();
          std::printf("\n(Ctrl-D or /bye leaves)\n");
          continue;
        }
        if (tty) std::printf("\n");
        return kExitOk;
      }
      while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
      if (line.empty()) continue;
      if (line[0] == '/') {
        if (!Command(line)) return kExitOk;
        continue;
      }
      if (Status s = Ask(line); !s.ok()) {
        std::printf("\nerror: %s\n", s.message().c_str());
        if (s.code() == StatusCode::kUnavailable) return kExitFailure;  // the server is gone
      }
    }
  }

 private:
  // Returns false to leave.
  bool Command(const std::string& line) {
    std::istringstream in(line);
    std::string cmd, key;
    in >> cmd;
    if (cmd == "/bye" || cmd == "/exit" || cmd == "/quit") return false;
    if (cmd == "/help" || cmd == "/?") {
      std::printf(
          "/clear                forget the conversation\n"
          "/set temperature X    sampling temperature (0: greedy)\n"
          "/set top_p X          nucleus sampling\n"
          "/set max_tokens N     longest reply\n"
          "/set system TEXT      the system message (clears the conversation)\n"
          "/set verbose on|off   show tokens per second after each reply\n"
          "/set FIELD VALUE      any other request field (seed, stop, ignore_eos, ...), as JSON;\n"
          "                      'default' removes it\n"
          "/show                 the model and settings\n"
          "/stats                the last reply's tokens and speed\n"
          "/bye                  leave\n");
    } else if (cmd == "/clear") {
      history_.clear();
      std::printf("Cleared the conversation.\n");
    } else if (cmd == "/set") {
      in >> key;
      std::string value;
      std::getline(in, value);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      Set(key, value);
    } else if (cmd == "/show") {
      std::printf("model: %s\nserver: %s\n", model_.c_str(), base_.c_str());
      std::printf("temperature: %s\ntop_p: %s\nmax_tokens: %s\nsystem: %s\nverbose: %s\n",
                  args_.temperature ? std::to_string(*args_.temperature).c_str() : "model default",
                  args_.top_p ? std::to_string(*args_.top_p).c_str() : "model default",
                  args_.max_tokens ? std::to_string(*args_.max_tokens).c_str() : "model default",
                  args_.system.empty() ? "(none)" : args_.system.c_str(),
                  args_.verbose ? "on" : "off");
      for (const auto& [k, v] : extra_.items())
        std::printf("%s: %s\n", k.c_str(), v.dump().c_str());
      std::printf("conversation: %zu messages\n", history_.size());
    } else if (cmd == "/stats") {
      if (!last_) {
        std::printf("No reply yet.\n");
      } else {
        PrintStats(*last_);
      }
    } else {
      std::printf("Unknown command %s; /help lists them.\n", cmd.c_str());
    }
    return true;
  }

  void Set(const std::string& key, const std::string& value) {
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    const bool is_number = !value.empty() && end && *end == '\0';
    if (key == "temperature" && is_number && number >= 0) {
      args_.temperature = number;
    } else if (key == "top_p" && is_number && number > 0 && number <= 1) {
      args_.top_p = number;
    } else if (key == "max_tokens" && is_number && number >= 1) {
      args_.max_tokens = static_cast<int64_t>(number);
    } else if (key == "system") {
      args_.system = value;
      history_.clear();
    } else if (key == "verbose" && (value == "on" || value == "off")) {
      args_.verbose = value == "on";
    } else if (!key.empty() && key != "temperature" && key != "top_p" && key != "max_tokens" &&
               key != "verbose" && key != "model" && key != "messages" && key != "stream") {
      // Any other request field (seed, stop, ignore_eos, repetition_penalty, ...): the value as
      // JSON, else as a string; "default" removes it.
      if (value == "default") {
        extra_.erase(key);
      } else {
        const ojson parsed = ojson::parse(value, nullptr, false);
        extra_[key] = parsed.is_discarded() ? ojson(value) : parsed;
      }
    } else {
      std::printf("Cannot set '%s' to '%s'; /help lists the settings.\n", key.c_str(),
                  value.c_str());
      return;
    }
    std::printf("Set %s.\n", key.c_str());
  }

  void PrintStats(const ReplyStats& s) {
    std::printf("[%lld tokens, first after %.2f s, %.1f tokens/s]\n",
                static_cast<long long>(s.tokens), s.first_token_seconds, s.TokensPerSecond());
  }

  Status Ask(const std::string& question) {
    history_.push_back({{"role", "user"}, {"content", question}});
    ojson messages = ojson::array();
    if (!args_.system.empty()) messages.push_back({{"role", "system"}, {"content", args_.system}});
    for (const ojson& m : history_) messages.push_back(m);
    ojson body = {{"model", model_},
                  {"messages", messages},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}}};
    if (args_.temperature) body["temperature"] = *args_.temperature;
    if (args_.top_p) body["top_p"] = *args_.top_p;
    if (args_.max_tokens) body["max_tokens"] = *args_.max_tokens;
    for (const auto& [k, v] : extra_.items()) body[k] = v;

    std::string pending, reply, error;
    ReplyStats stats;
    const auto start = std::chrono::steady_clock::now();
    auto since_start = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    auto on_data = [&](const char* data, size_t n) {
      pending.append(data, n);
      size_t end;
      while ((end = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, end);
        pending.erase(0, end + 1);
        if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
        const ojson event = ojson::parse(line.substr(6), nullptr, false);
        if (!event.is_object()) continue;
        if (event.contains("error")) {
          error = event["error"].value("message", event["error"].dump());
          continue;
        }
        if (event.contains("usage") && event["usage"].is_object()) {
          stats.tokens = event["usage"].value("completion_tokens", stats.tokens);
        }
        if (!event.contains("choices") || event["choices"].empty()) continue;
        const ojson& delta = event["choices"][0]["delta"];
        if (!delta.is_object() || !delta.contains("content") || !delta["content"].is_string()) {
          continue;
        }
        const std::string text = delta["content"];
        if (text.empty()) continue;
        if (reply.empty()) stats.first_token_seconds = since_start();
        reply += text;
        stats.seconds = since_start();
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
    };
    std::vector<std::string> headers;
    if (!args_.api_key.empty()) headers.push_back("Authorization: Bearer " + args_.api_key);
    Result<catalog::StreamResult> r =
        catalog::HttpPostStream(base_ + "/v1/chat/completions", headers, body.dump(), on_data,
                                [] { return g_interrupted.load(); });
    if (!r.ok()) {
      history_.pop_back();
      return r.status();
    }
    if (r->status >= 400) {
      history_.pop_back();
      const ojson e = ojson::parse(r->error_body, nullptr, false);
      const std::string message = e.is_object() && e.contains("error") && e["error"].is_object()
                                      ? e["error"].value("message", r->error_body)
                                      : r->error_body;
      return Status::InvalidArgument("HTTP " + std::to_string(r->status) + ": " + message);
    }
    // The reply as far as it came is the assistant's turn, even when stopped.
    history_.push_back({{"role", "assistant"}, {"content", reply}});
    if (r->stopped) {
      std::printf("\n[stopped]\n");
    } else {
      std::printf("\n");
    }
    if (!error.empty()) std::printf("error: %s\n", error.c_str());
    last_ = stats;
    if (args_.verbose) PrintStats(stats);
    std::fflush(stdout);
    return Status::Ok();
  }

  RunArgs args_;
  std::string base_;
  std::string model_;
  std::vector<ojson> history_;
  ojson extra_ = ojson::object();  // request fields set with /set
  std::optional<ReplyStats> last_;
};

int Run(RunArgs args) {
  // Ctrl-C sets a flag (the reply in progress stops) instead of ending the program.
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a read at the prompt returns
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (args.api_key.empty()) {
    if (const char* env = std::getenv("KILN_API_KEY")) args.api_key = env;
  }
  if (!args.url.empty()) {
    std::string base = args.url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return Chat(args, base, args.model).Loop();
  }
  if (!std::getenv("KILN_LOG_LEVEL")) SetLogLevel(LogLevel::kWarning);
  Result<ModelToServe> resolved = ResolveModelToServe(args.model, args.options);
  if (!resolved.ok()) {
    std::cerr << resolved.status().message() << "\n";
    return ExitCodeFor(resolved.status());
  }
  if (resolved->predictive) {
    std::cerr << "'" << args.model
              << "' is a predictive model; kiln run chats with generative models (serve it with "
                 "kiln serve and call /v1/predict)\n";
    return kExitFailure;
  }
  server::OpenAiServerOptions options;
  options.http.host = "127.0.0.1";
  options.http.port = 0;  // any free port, for this process's own requests
  options.http.io_threads = 1;
  options.api_key = args.api_key;
  server::OpenAiServer srv(options);
  if (Status s = srv.Start(); !s.ok()) {
    std::cerr << s.message() << "\n";
    return kExitFailure;
  }
  if (isatty(fileno(stderr))) std::cerr << "loading " << args.model << " ...\n";
  auto model = server::ServedModel::Load(resolved->options);
  if (!model.ok()) {
    std::cerr << model.status().message() << "\n";
    srv.Shutdown(std::chrono::milliseconds(0));
    return kExitFailure;
  }
  const std::string id = (*model)->id();
  srv.SetModel(std::move(model).value());
  const int code = Chat(args, "http://127.0.0.1:" + std::to_string(srv.port()), id).Loop();
  srv.Shutdown(std::chrono::milliseconds(0));
  return code;
}

}  // namespace

void RegisterRunCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RunArgs>();
  auto temperature = std::make_shared<double>(-1);
  auto top_p = std::make_shared<double>(-1);
  auto max_tokens = std::make_shared<int64_t>(0);
  CLI::App* cmd = app.add_subcommand(
      "run", "Chat with a model in the terminal (pulled first if it is not in the store)");
  cmd->add_option("model", args->model,
                  "A catalog alias or id, a path, or a source URI (hf://, https://, oci://); "
                  "with --url, the name the server knows it by")
      ->required();
  cmd->add_option("--url", args->url,
                  "Chat through a running kiln serve instead of loading the model here");
  cmd->add_option("--api-key", args->api_key, "The server's API key (also KILN_API_KEY)");
  cmd->add_option("--system", args->system, "A system message");
  cmd->add_option("--temperature", *temperature, "Sampling temperature (default: the model's)");
  cmd->add_option("--top-p", *top_p, "Nucleus sampling (default: the model's)");
  cmd->add_option("--max-tokens", *max_tokens, "Longest reply (default: the model's)");
  cmd->add_flag("--verbose", args->verbose, "Show tokens per second after each reply");
  cmd->add_option("--runtime", args->options.runtime,
                  "auto (from the model's files), onnx-genai or vllm")
      ->capture_default_str();
  cmd->add_option("--max-model-len", args->options.max_model_len,
                  "Longest conversation in tokens (default: the model's, at most 4096)");
  cmd->add_option("--threads", args->options.threads, "Compute threads (0: one per core)")
      ->capture_default_str();
  cmd->add_option("--device", args->options.device, "cpu or cuda")->capture_default_str();
  cmd->callback([args, temperature, top_p, max_tokens, exit_code] {
    RunArgs a = *args;
    if (*temperature >= 0) a.temperature = *temperature;
    if (*top_p > 0) a.top_p = *top_p;
    if (*max_tokens > 0) a.max_tokens = *max_tokens;
    *exit_code = Run(std::move(a));
  });
}

}  // namespace kiln::cli
