#include "kiln/cli/catalog_command.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <vector>

#include "kiln/catalog/http_fetch.h"
#include "kiln/catalog/model_source.h"
#include "kiln/cli/exit_codes.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

// The catalogs `kiln catalog add` installed, in the order they were added.
fs::path CatalogsDir() { return fs::path(KilnHome()) / "catalogs"; }

catalog::ResolveContext Context(const catalog::Catalog& c, const std::string& device) {
  catalog::ResolveContext ctx;
  ctx.device = device == "cuda" ? "gpu" : device == "auto" ? "" : device;
  std::error_code ec;
  ctx.has_cuda_gpu = fs::exists("/dev/nvidiactl", ec);
  const catalog::ModelStore store(KilnHome());
  for (const catalog::Entry& e : c.entries()) {
    if (store.InstalledPath(e)) ctx.cached_ids.insert(e.id);
  }
  return ctx;
}

}  // namespace

std::string KilnHome() {
  if (const char* home = std::getenv("KILN_HOME"); home && *home) return home;
  const char* user = std::getenv("HOME");
  return (fs::path(user ? user : ".") / ".kiln").string();
}

Result<catalog::Catalog> InstalledCatalog() {
  catalog::Catalog all = catalog::Catalog::Builtin();
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(CatalogsDir(), ec)) {
    if (f.path().extension() == ".json") files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());  // named in the order they were added
  // Then the files $KILN_CATALOG names (':'-separated), such as a catalog a Kubernetes ConfigMap
  // mounts; a file named there must exist.
  if (const char* extra = std::getenv("KILN_CATALOG"); extra && *extra) {
    std::string list = extra;
    for (size_t start = 0; start <= list.size();) {
      const size_t colon = std::min(list.find(':', start), list.size());
      if (colon > start) {
        const fs::path f = list.substr(start, colon - start);
        if (!fs::is_regular_file(f, ec)) {
          return Status::NotFound("KILN_CATALOG names " + f.string() + ", which is not a file");
        }
        files.push_back(f);
      }
      start = colon + 1;
    }
  }
  for (const fs::path& f : files) {
    std::ifstream in(f);
    nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return Status::InvalidArgument(f.string() + " is not JSON");
    Result<catalog::Catalog> c = catalog::Catalog::Parse(doc, f.string());
    if (!c.ok()) return c.status();
    all.Merge(*c);
  }
  return all;
}

bool IsSourceUri(const std::string& name) {
  for (const char* scheme : {"hf://", "https://", "http://", "oci://"}) {
    if (name.rfind(scheme, 0) == 0) return true;
  }
  return false;
}

// A bring-your-own model named by its source: an entry of its own, stored under a name made of
// the URI and a version of the revision or tag it names.
Result<catalog::Entry> EntryForUri(const std::string& uri) {
  Result<catalog::Source> source = catalog::ParseSource(uri);
  if (!source.ok()) return source.status();
  catalog::Entry e;
  e.uri = uri;
  std::string name, version = "1";
  switch (source->kind) {
    case catalog::Source::Kind::kHf:
      name = "hf/" + source->repo + (source->folder.empty() ? "" : "/" + source->folder);
      version = source->revision;
      break;
    case catalog::Source::Kind::kOci:
      name = "oci/" + source->registry + "/" + source->repository;
      version = source->reference;
      break;
    default:
      name = uri.substr(uri.find("://") + 3);
      break;
  }
  for (char& c : name) {
    if (c == '/' || c == ':') c = '-';
  }
  for (char& c : version) {
    if (c == ':') c = '-';
  }
  e.id = name + ":" + version;
  e.alias = uri.substr(uri.find("://") + 3);  // what clients name it, as vLLM names a Hub repo
  e.display_name = uri;
  e.task = "chat-completion";
  e.source = "uri";
  return e;
}

Result<ResolvedModel> ResolveModel(const std::string& name, const std::string& device) {
  const catalog::ModelStore store(KilnHome());
  if (IsSourceUri(name)) {
    Result<catalog::Entry> entry = EntryForUri(name);
    if (!entry.ok()) return entry.status();
    std::string path = store.InstalledPath(*entry).value_or("");
    return ResolvedModel{std::move(entry).value(), std::move(path)};
  }
  Result<catalog::Catalog> installed = InstalledCatalog();
  if (!installed.ok()) return installed.status();
  Result<catalog::Entry> entry = catalog::Resolve(*installed, name, Context(*installed, device));
  if (!entry.ok()) return entry.status();
  std::string path = store.InstalledPath(*entry).value_or("");
  return ResolvedModel{std::move(entry).value(), std::move(path)};
}

Result<std::string> EnsureModelFiles(const std::string& name, ResolvedModel* model,
                                     const catalog::PullOptions& options) {
  if (!model->path.empty()) return model->path;
  const catalog::ModelStore store(KilnHome());
  Result<catalog::Source> source = catalog::ParseSource(model->entry.uri);
  if (!source.ok()) return source.status().WithContext(model->entry.id);
  if (!catalog::IsRemote(*source)) {
    return Status::NotFound("'" + name + "' resolves to " + model->entry.id +
                            ", whose files belong at " + store.FolderFor(model->entry) +
                            ", which does not exist (bash scripts/setup.sh puts the default "
                            "model there)");
  }
  Result<std::string> path = store.Pull(model->entry, options);
  if (!path.ok()) return path.status();
  model->path = *path;
  return model->path;
}

catalog::PullOptions TerminalPullOptions() {
  catalog::PullOptions options;
  options.out = stderr;
  options.style = catalog::PullProgress::StyleFor(stderr);
  return options;
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
    Result<catalog::Catalog> installed = InstalledCatalog();
    if (!installed.ok()) {
      std::cerr << installed.status().message() << "\n";
      *exit_code = 1;
      return;
    }
    const catalog::Catalog& c = *installed;
    const catalog::ResolveContext ctx = Context(c, "auto");
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

  auto file = std::make_shared<std::string>();
  CLI::App* add = cmd->add_subcommand(
      "add", "Add a catalog file; its entries override earlier ones with the same id");
  add->add_option("file", *file,
                  "A catalog JSON file (docs/catalog-format.md), or an http(s):// URL of one")
      ->required();
  add->callback([file, exit_code] {
    *exit_code = kExitFailure;
    std::string text;
    std::string name = fs::path(*file).stem().string();
    if (file->rfind("https://", 0) == 0 || file->rfind("http://", 0) == 0) {
      Result<catalog::HttpReply> reply = catalog::HttpGet(*file, {}, 64 << 20);
      if (!reply.ok()) {
        std::cerr << reply.status().message() << "\n";
        return;
      }
      if (reply->status != 200) {
        std::cerr << *file << ": HTTP " << reply->status << "\n";
        *exit_code = reply->status == 404 ? kExitModelNotFound : kExitFailure;
        return;
      }
      text = std::move(reply->body);
      name = fs::path(file->substr(0, file->find_first_of("?#"))).stem().string();
      if (name.empty()) name = "catalog";
    } else {
      std::ifstream in(*file, std::ios::binary);
      if (!in) {
        std::cerr << *file << ": cannot be read\n";
        *exit_code = kExitModelNotFound;
        return;
      }
      text.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      std::cerr << *file << ": not JSON\n";
      return;
    }
    Result<catalog::Catalog> parsed = catalog::Catalog::Parse(doc, *file);
    if (!parsed.ok()) {
      std::cerr << parsed.status().message() << "\n";
      return;
    }
    // Numbered in the order added, written whole then renamed: a reader never sees half a file.
    std::error_code ec;
    fs::create_directories(CatalogsDir(), ec);
    size_t n = 0;
    for (const auto& f : fs::directory_iterator(CatalogsDir(), ec)) {
      if (f.path().extension() == ".json") ++n;
    }
    char prefix[16];
    std::snprintf(prefix, sizeof(prefix), "%04zu-", n + 1);
    const fs::path target = CatalogsDir() / (prefix + name + ".json");
    const fs::path temp = target.string() + ".tmp";
    {
      std::ofstream out(temp, std::ios::binary);
      out << text;
      if (!out) {
        std::cerr << temp.string() << ": cannot be written\n";
        return;
      }
    }
    fs::rename(temp, target, ec);
    if (ec) {
      std::cerr << target.string() << ": " << ec.message() << "\n";
      return;
    }
    std::cout << "added " << parsed->entries().size() << " entries from " << *file << " as "
              << target.string() << "\n";
    *exit_code = 0;
  });
}

}  // namespace kiln::cli
