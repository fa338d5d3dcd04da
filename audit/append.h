// Appends by commands that run without a mount (init, rewrap, the offline key commands):
// they write to the volume's default log, the one its mounts use unless told otherwise,
// and must see their records on disk before they exit.
#pragma once

#include <filesystem>
#include <vector>

#include "audit/log.h"
#include "audit/record.h"
#include "crypto/bytes.h"
#include "crypto/secret.h"

namespace wardfs::audit {

// Options of the default log of the volume with this (raw) id.
LogOptions default_log_options(crypto::ByteView volume_id);

// Writes `events` to the volume's default log, chained under `mac_key`, and waits for
// them. False, after a warning on stderr, when they did not reach the disk: the
// command's own work is done by then and stands, so this is no error of the command.
bool append_now(crypto::ByteView volume_id, crypto::SecretBytes mac_key, std::vector<Event> events);

// What a command prints when its records did not reach `log`.
void warn_unwritten(const std::filesystem::path& log);

}  // namespace wardfs::audit
