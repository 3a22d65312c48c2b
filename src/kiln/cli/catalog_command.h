// `kiln catalog list`: the models the catalog knows, with the runtime each runs on; `kiln catalog
// add <file>`: a catalog file kept in the model store ($KILN_HOME/catalogs), its entries over
// earlier ones with the same id; and the resolution `kiln serve` uses for a model given by alias
// or id.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kiln/base/status.h"
#include "kiln/catalog/catalog.h"
#include "kiln/catalog/model_store.h"

namespace kiln::cli {

void RegisterCatalogCommand(CLI::App& app, int* exit_code);

// The model store: $KILN_HOME, else ~/.kiln.
std::string KilnHome();

// The built-in catalog with the added ones over it, in the order they were added. InvalidArgument
// naming the file, entry and field for an added file that no longer parses.
Result<catalog::Catalog> InstalledCatalog();

// A model named by catalog alias or id, or by a source URI (hf://, https://, oci://: a
// bring-your-own model without a catalog entry): its entry and the path of its files in the
// model store ("" while they are not there). NotFound / InvalidArgument as catalog::Resolve says.
struct ResolvedModel {
  catalog::Entry entry;
  std::string path;
};
Result<ResolvedModel> ResolveModel(const std::string& name, const std::string& device);
// Whether `name` is a source URI rather than a catalog name.
bool IsSourceUri(const std::string& name);
// The resolved model's files, pulled into the store first when they are not there (progress on
// stderr). NotFound for a store path that does not exist.
Result<std::string> EnsureModelFiles(const std::string& name, ResolvedModel* model,
                                     const catalog::PullOptions& options);
// The pull options for this terminal: a progress bar when stderr is one, plain lines otherwise.
catalog::PullOptions TerminalPullOptions();

}  // namespace kiln::cli
