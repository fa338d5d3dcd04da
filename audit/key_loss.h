// A volume whose audit key is gone from wardfs.conf while its audit log is still there:
// making a new key would start a new history in silence, and the old records would then
// fail verification as forged. The config lives in the untrusted backing directory, so
// the log (outside it) is the evidence that a key existed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/record.h"

namespace wardfs::audit {

// refuse (the default): no read-write mount, no offline key command, until the config
// is restored; recreate: set the old log aside and start a new audit key, on record.
enum class MissingKey { refuse, recreate };
std::optional<MissingKey> missing_key_from_name(std::string_view name);
std::string_view missing_key_name(MissingKey policy);

// True when the log at `live` has any trace: the live file, a rotated segment or the
// checkpoint.
bool has_history(const std::filesystem::path& live);

// The WardError(corrupt_volume) to throw when `cipher_dir` has no audit key but `live`
// has history; `fix` says what the caller's command can do about it.
[[noreturn]] void refuse_lost_key(const std::filesystem::path& cipher_dir,
                                  const std::filesystem::path& live, const std::string& fix);

// What recreate did with the old log.
struct SetAside {
  std::vector<std::string> moved;         // the new names
  std::optional<std::uint64_t> last_seq;  // the old log's last record, as written (unverified)
};
// Renames the live file, its segments and its checkpoint to <name>.lost-key-<UTC time>,
// under the log's lock, so a new chain can start at record 1. Throws WardError(io).
SetAside set_aside_history(const std::filesystem::path& live);

}  // namespace wardfs::audit
