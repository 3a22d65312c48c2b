// The kiln command's exit statuses, the same for every subcommand, so scripts can tell a mistake
// in the command line from a model that is not there from a failure while running.
#pragma once

#include "kiln/base/status.h"

namespace kiln::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,        // the command ran and failed (a download, a model that cannot load)
  kExitUsage = 2,          // the command line is wrong (an unknown flag, a missing argument)
  kExitModelNotFound = 3,  // no such model in the catalog or the store, or no such source
};

inline int ExitCodeFor(const Status& status) {
  if (status.ok()) return kExitOk;
  return status.code() == StatusCode::kNotFound ? kExitModelNotFound : kExitFailure;
}

}  // namespace kiln::cli
