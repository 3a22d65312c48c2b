// `kiln run <model>`: pulls the model if it is not in the store, loads it on the runtime it
// needs (or talks to a running server with --url) and chats in the terminal: replies streamed as
// they are generated, the conversation kept between turns, /commands to clear it, change
// settings or show tokens per second. Ctrl-C during a reply stops the reply, not the program.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterRunCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
