#include "kiln/cli/model_command.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/catalog/model_store.h"
#include "kiln/cli/catalog_command.h"
#include "kiln/cli/exit_codes.h"

namespace kiln::cli {
namespace {

struct ModelArgs {
  std::string name;
  std::string output = "table";
  std::string device = "auto";
  int parallel = 4;
};

int Fail(const Status& s) {
  std::cerr << s.message() << "\n";
  return ExitCodeFor(s);
}

std::string Size(int64_t bytes) {
  char text[32];
  if (bytes >= 1000000000) {
    std::snprintf(text, sizeof(text), "%.2f GB", bytes / 1e9);
  } else {
    std::snprintf(text, sizeof(text), "%.1f MB", bytes / 1e6);
  }
  return text;
}

// Every model the store holds: pulled ones (with their records) and catalog entries whose store
// path exists.
nlohmann::ordered_json StoreListing() {
  const catalog::ModelStore store(KilnHome());
  nlohmann::ordered_json models = nlohmann::ordered_json::array();
  Result<catalog::Catalog> installed = InstalledCatalog();
  auto entry_for = [&](const std::string& id) -> const catalog::Entry* {
    if (!installed.ok()) return nullptr;
    for (const catalog::Entry& e : installed->entries()) {
      if (e.id == id) return &e;
    }
    return nullptr;
  };
  if (installed.ok()) {
    for (const catalog::Entry& e : installed->entries()) {
      if (store.Record(e)) continue;  // listed below, from its record
      std::optional<std::string> path = store.InstalledPath(e);
      if (!path) continue;
      models.push_back({{"id", e.id},
                        {"alias", e.alias},
                        {"runtime", e.Runtime()},
                        {"path", *path},
                        {"uri", e.uri},
                        {"pulled", false}});
    }
  }
  for (const catalog::StoredModel& m : store.List()) {
    const catalog::Entry* e = entry_for(m.id);
    models.push_back({{"id", m.id},
                      {"alias", m.alias},
                      {"runtime", e ? e->Runtime() : "auto"},
                      {"path", m.path},
                      {"uri", m.uri},
                      {"pulled", true},
                      {"revision", m.revision},
                      {"bytes", m.bytes},
                      {"pulledAt", m.pulled_at}});
  }
  return models;
}

int List(const ModelArgs& args) {
  const nlohmann::ordered_json models = StoreListing();
  if (args.output == "json") {
    std::cout << nlohmann::ordered_json{{"models", models}}.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-24s %-40s %-10s %-10s %s\n", "ALIAS", "ID", "RUNTIME", "SIZE", "PATH");
  for (const auto& m : models) {
    const std::string size = m.contains("bytes") ? Size(m["bytes"].get<int64_t>()) : "-";
    std::printf("%-24s %-40s %-10s %-10s %s\n", m["alias"].get<std::string>().c_str(),
                m["id"].get<std::string>().c_str(), m["runtime"].get<std::string>().c_str(),
                size.c_str(), m["path"].get<std::string>().c_str());
  }
  return kExitOk;
}

int Show(const ModelArgs& args) {
  Result<ResolvedModel> model = ResolveModel(args.name, args.device);
  if (!model.ok()) return Fail(model.status());
  const catalog::ModelStore store(KilnHome());
  nlohmann::ordered_json o = model->entry.ToJson();
  o["installed"] = !model->path.empty();
  o["folder"] = store.FolderFor(model->entry);
  if (!model->path.empty()) o["path"] = model->path;
  if (std::optional<catalog::StoredModel> record = store.Record(model->entry)) {
    o["revision"] = record->revision;
    o["bytes"] = record->bytes;
    o["pulledAt"] = record->pulled_at;
    o["files"] = record->files;
  }
  if (args.output == "json") {
    std::cout << o.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& [key, value] : o.items()) {
    if (key == "files" || key == "variants") continue;
    std::cout << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump())
              << "\n";
  }
  if (o.contains("files")) {
    std::cout << "files:\n";
    for (const auto& f : o["files"]) {
      std::cout << "  " << f["path"].get<std::string>() << "  " << f["size"].get<int64_t>()
                << " bytes"
                << (f.contains("sha256") ? "  sha256 " + f["sha256"].get<std::string>() : "")
                << "\n";
    }
  }
  return kExitOk;
}

int Pull(const ModelArgs& args) {
  Result<ResolvedModel> model = ResolveModel(args.name, args.device);
  if (!model.ok()) return Fail(model.status());
  if (!model->path.empty()) {
    std::cerr << model->entry.id << " is already in the store\n";
    std::cout << model->path << "\n";
    return kExitOk;
  }
  catalog::PullOptions options = TerminalPullOptions();
  options.parallel = args.parallel;
  Result<std::string> path = EnsureModelFiles(args.name, &model.value(), options);
  if (!path.ok()) return Fail(path.status());
  std::cerr << "pulled " << model->entry.id << "\n";
  std::cout << *path << "\n";
  return kExitOk;
}

int Remove(const ModelArgs& args) {
  Result<ResolvedModel> model = ResolveModel(args.name, args.device);
  if (!model.ok()) return Fail(model.status());
  const catalog::ModelStore store(KilnHome());
  if (Status s = store.Remove(model->entry); !s.ok()) return Fail(s);
  std::cout << "removed " << model->entry.id << "\n";
  return kExitOk;
}

}  // namespace

void RegisterModelCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("model", "The models in the model store ($KILN_HOME)");
  cmd->require_subcommand(1);
  auto args = std::make_shared<ModelArgs>();
  auto add_output = [args](CLI::App* sub) {
    sub->add_option("--output,-o", args->output, "table or json")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
  };
  auto add_name = [args](CLI::App* sub) {
    sub->add_option("model", args->name,
                    "A catalog alias or id (kiln catalog list), or a source: hf://org/repo"
                    "[@revision][/folder], https://host/file, oci://registry/repository[:tag]")
        ->required();
    sub->add_option("--device", args->device,
                    "auto (a CUDA GPU before the CPU), cpu or cuda: which variant of an alias")
        ->check(CLI::IsMember({"auto", "cpu", "cuda", "gpu"}))
        ->capture_default_str();
  };

  CLI::App* list = cmd->add_subcommand("list", "List the models in the store");
  add_output(list);
  list->callback([args, exit_code] { *exit_code = List(*args); });

  CLI::App* show = cmd->add_subcommand("show", "Show a model's catalog entry, files and state");
  add_name(show);
  add_output(show);
  show->callback([args, exit_code] { *exit_code = Show(*args); });

  CLI::App* pull = cmd->add_subcommand(
      "pull", "Fetch a model into the store (resumable, checked by SHA-256, installed whole)");
  add_name(pull);
  pull->add_option("--parallel", args->parallel, "Files fetched at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  pull->callback([args, exit_code] { *exit_code = Pull(*args); });

  CLI::App* rm = cmd->add_subcommand("rm", "Remove a model's files from the store");
  add_name(rm);
  rm->callback([args, exit_code] { *exit_code = Remove(*args); });
}

}  // namespace kiln::cli
