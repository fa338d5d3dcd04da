// Where an audit log lives and how its pieces are named: the live file, the segments
// rotated out of it, the checkpoint that pins the latest record, and the lock that
// serialises writers (the daemon and the CLI may both append).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/record.h"
#include "crypto/bytes.h"

namespace wardfs::audit {

// $WARDFS_AUDIT_DIR, else /var/log/wardfs as root, else $XDG_STATE_HOME/wardfs
// (~/.local/state/wardfs); the file is <volume id>.audit.jsonl.
std::filesystem::path default_log_path(std::string_view volume_id);

std::filesystem::path checkpoint_path(const std::filesystem::path& live);
std::filesystem::path lock_path(const std::filesystem::path& live);
// Rotated segments <live>.000001, .000002 ... oldest first, then the live file if present.
std::vector<std::filesystem::path> log_segments(const std::filesystem::path& live);
std::filesystem::path next_segment_path(const std::filesystem::path& live);

// The latest record a writer put down, signed so it cannot be rolled back unnoticed
// without the audit key: verify compares the log's tail with it to detect truncation.
struct Checkpoint {
  std::uint64_t seq = 0;
  Mac mac{};
  std::string time;
};
std::string seal_checkpoint(const Checkpoint& checkpoint, crypto::ByteView key);
// nullopt with `why` set when the text is malformed or its MAC does not match.
std::optional<Checkpoint> open_checkpoint(std::string_view text, crypto::ByteView key,
                                          std::string& why);

// A MAC written as 64 hex digits; false when `hex` is anything else.
bool hex_to_mac(std::string_view hex, Mac& out);

struct Tail {
  std::string last_line;      // the last complete non-empty line, without its newline
  std::uint64_t torn_at = 0;  // offset just past the last newline
  bool torn = false;          // bytes follow the last newline (a write cut short)
  std::string fragment;       // those bytes, when torn
};
// Reads the end of an open log file. 0 or -errno.
int read_tail(int fd, Tail& out);

// Whole-file helpers for the CLI and the verifier. Throw WardError(io).
std::string read_text_file(const std::filesystem::path& path);
// temp file beside it, fsync, rename over; the file gets `mode` whatever the umask.
void write_file_atomic(const std::filesystem::path& path, std::string_view text,
                       mode_t mode = 0600);

}  // namespace wardfs::audit
