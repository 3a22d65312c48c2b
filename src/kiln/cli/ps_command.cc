#include "kiln/cli/ps_command.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/catalog/http_fetch.h"
#include "kiln/cli/exit_codes.h"

namespace kiln::cli {
namespace {

struct PsArgs {
  std::string url = "http://127.0.0.1:8080";
  std::string api_key;
  std::string output = "table";
};

std::string Idle(const nlohmann::json& card) {
  if (card.value("in_flight", 0) > 0) return "busy";
  const double s = card.value("idle_seconds", 0.0);
  char text[32];
  if (s < 60) {
    std::snprintf(text, sizeof(text), "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(text, sizeof(text), "%.0fm", s / 60);
  } else {
    std::snprintf(text, sizeof(text), "%.1fh", s / 3600);
  }
  return text;
}

int Ps(const PsArgs& args) {
  std::vector<std::string> headers;
  std::string key = args.api_key;
  if (key.empty()) {
    const char* env = std::getenv("KILN_API_KEY");
    if (env) key = env;
  }
  if (!key.empty()) headers.push_back("Authorization: Bearer " + key);
  std::string base = args.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  Result<catalog::HttpReply> reply = catalog::HttpGet(base + "/v1/models", headers, 16 << 20);
  if (!reply.ok()) {
    std::cerr << "no Kiln server answers at " << base << ": " << reply.status().message() << "\n";
    return kExitFailure;
  }
  const nlohmann::json body = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status != 200 || !body.is_object() || !body.contains("data")) {
    std::cerr << base << "/v1/models answered HTTP " << reply->status << ": "
              << reply->body.substr(0, 300) << "\n";
    return kExitFailure;
  }
  if (args.output == "json") {
    nlohmann::ordered_json models = nlohmann::ordered_json::array();
    for (const auto& card : body["data"]) {
      models.push_back(
          {{"name", card.value("id", "")},
           {"runtime", card.value("runtime", "")},
           {"context_length",
            card.contains("context_length") ? card["context_length"] : nlohmann::json(nullptr)},
           {"in_flight", card.value("in_flight", 0)},
           {"idle_seconds", card.value("idle_seconds", 0.0)},
           {"threads", card.value("threads", 0)}});
    }
    std::cout << nlohmann::ordered_json{{"models", models}}.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-28s %-11s %-8s %-9s %-6s %s\n", "NAME", "RUNTIME", "CONTEXT", "IN FLIGHT", "IDLE",
              "THREADS");
  for (const auto& card : body["data"]) {
    const std::string context =
        card.contains("context_length") && card["context_length"].is_number()
            ? std::to_string(card["context_length"].get<int64_t>())
            : "-";
    std::printf("%-28s %-11s %-8s %-9d %-6s %d\n", card.value("id", "").c_str(),
                card.value("runtime", "").c_str(), context.c_str(), card.value("in_flight", 0),
                Idle(card).c_str(), card.value("threads", 0));
  }
  return kExitOk;
}

}  // namespace

void RegisterPsCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<PsArgs>();
  CLI::App* cmd = app.add_subcommand("ps", "List the models a running kiln serve holds");
  cmd->add_option("--url", args->url, "The server")->capture_default_str();
  cmd->add_option("--api-key", args->api_key, "The server's API key (also KILN_API_KEY)");
  cmd->add_option("--output,-o", args->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->callback([args, exit_code] { *exit_code = Ps(*args); });
}

}  // namespace kiln::cli
