// `kiln catalog list`: the models the catalog knows, with the runtime each runs on; `kiln catalog
// add <file>`: a catalog file kept in the model store ($KILN_HOME/catalogs), its entries over
// earlier ones with the same id; and the resolution `kiln serve` uses for a model given by alias
// or id.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kiln/base/status.h"
#include "kiln/catalog/catalog.h"

namespace kiln::cli {

void RegisterCatalogCommand(CLI::App& app, int* exit_code);

// The model store: $KILN_HOME, else ~/.kiln.
std::string KilnHome();

// The built-in catalog with the added ones over it, in the order they were added. InvalidArgument
// naming the file, entry and field for an added file that no longer parses.
Result<catalog::Catalog> InstalledCatalog();

// A model named by catalog alias or id: its entry and the path of its files in the model store
// ("" for an entry whose files are at a remote source). NotFound / InvalidArgument as
// catalog::Resolve says.
struct ResolvedModel {
  catalog::Entry entry;
  std::string path;
};
Result<ResolvedModel> ResolveModel(const std::string& name, const std::string& device);
// Whether the resolved model's files are in the store: Unsupported for a remote source (fetching
// is not built yet), NotFound for files that are not there.
Status CheckFiles(const std::string& name, const ResolvedModel& model);

}  // namespace kiln::cli
