// The daemon's --log-file: it names files and extended attributes in plaintext, so it
// is private to its owner like the audit log.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "volume/posix_io.h"

namespace spdlog::sinks {
class sink;
}

namespace wardfs::daemon {

// Opens `path` for appending: created 0600 (missing parents 0700), never through a
// symlink. An existing file must be a regular file of this user (or root's, for root);
// a wider mode is tightened to 0600. Throws WardError(usage) naming the file and the fix.
volume::UniqueFd open_private_log_file(const std::filesystem::path& path);

// A sink that appends each formatted line to `fd` with one write(): the file is never
// opened again by path, so it stays the one open_private_log_file() checked.
std::shared_ptr<spdlog::sinks::sink> fd_sink(volume::UniqueFd fd);

}  // namespace wardfs::daemon
