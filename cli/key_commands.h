// wardfs rotate / rekey / retire: key generations, online through the control socket
// when the target is a mount point, offline on a backing directory otherwise.
#pragma once

#include "cli/commands.h"

namespace wardfs::cli {
void add_key_commands(CLI::App& app, Runner& run);
}  // namespace wardfs::cli
