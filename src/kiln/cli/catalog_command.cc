#include "kiln/cli/catalog_command.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

// The entry's files in the store, for entries that live there (a uri without a scheme).
std::string StorePath(const catalog::Entry& e) {
  if (e.uri.empty() || e.uri.find("://") != std::string::npos) return "";
  return (fs::path(KilnHome()) / e.uri).string();
}

catalog::ResolveContext Context(const std::string& device) {
  catalog::ResolveContext ctx;
  ctx.device = device == "cuda" ? "gpu" : device == "auto" ? "" : device;
  std::error_code ec;
  ctx.has_cuda_gpu = fs::exists("/dev/nvidiactl", ec);
  for (const catalog::Entry& e : catalog::Catalog::Builtin().entries()) {
    const std::string path = StorePath(e);
    if (!path.empty() && fs::exists(path, ec)) ctx.cached_ids.insert(e.id);
  }
  return ctx;
}

}  // namespace

std::string KilnHome() {
  if (const char* home = std::getenv("KILN_HOME"); home && *home) return home;
  const char* user = std::getenv("HOME");
  return (fs::path(user ? user : ".") / ".kiln").string();
}

Result<ResolvedModel> ResolveModel(const std::string& name, const std::string& device) {
  Result<catalog::Entry> entry =
      catalog::Resolve(catalog::Catalog::Builtin(), name, Context(device));
  if (!entry.ok()) return entry.status();
  std::string path = StorePath(*entry);
  return ResolvedModel{std::move(entry).value(), std::move(path)};
}

Status CheckFiles(const std::string& name, const ResolvedModel& model) {
  if (model.path.empty()) {
    return Status::Unsupported("'" + name + "' resolves to " + model.entry.id +
                               ", whose files are at " + model.entry.uri +
                               "; fetching models is not built yet: give a path");
  }
  std::error_code ec;
  if (!fs::exists(model.path, ec)) {
    return Status::NotFound("'" + name + "' resolves to " + model.entry.id +
                            ", whose files belong at " + model.path +
                            ", which does not exist (bash scripts/setup.sh puts the default "
                            "model there)");
  }
  return Status::Ok();
}

void RegisterCatalogCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("catalog", "The model catalog");
  cmd->require_subcommand(1);
  auto output = std::make_shared<std::string>("table");
  CLI::App* list = cmd->add_subcommand("list", "List the catalog's models and their runtimes");
  list->add_option("--output,-o", *output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  list->callback([output, exit_code] {
    const catalog::Catalog& c = catalog::Catalog::Builtin();
    const catalog::ResolveContext ctx = Context("auto");
    if (*output == "json") {
      nlohmann::ordered_json models = nlohmann::ordered_json::array();
      for (const catalog::Entry& e : c.entries()) {
        nlohmann::ordered_json o = e.ToJson();
        o["cached"] = ctx.cached_ids.count(e.id) > 0;
        models.push_back(std::move(o));
      }
      std::cout << nlohmann::ordered_json{{"models", models}}.dump(2) << "\n";
    } else {
      std::printf("%-20s %-38s %-10s %-8s %-6s\n", "ALIAS", "ID", "RUNTIME", "DEVICE", "CACHED");
      for (const catalog::Entry& e : c.entries()) {
        std::string devices;
        for (const std::string& d : e.supported_compute)
          devices += (devices.empty() ? "" : ",") + d;
        std::printf("%-20s %-38s %-10s %-8s %-6s\n", e.alias.c_str(), e.id.c_str(),
                    e.Runtime().c_str(), devices.c_str(),
                    ctx.cached_ids.count(e.id) ? "yes" : "no");
      }
    }
    *exit_code = 0;
  });
}

}  // namespace kiln::cli
