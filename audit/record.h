// One audit record: what happened, to what, by whom, chained to the record before it
// by an HMAC-SHA256 under the volume's audit key (docs/AUDIT.md).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/bytes.h"

namespace wardfs::audit {

// keys: key events only; access: also the first open of each file by each process;
// all: every open and every namespace change.
enum class Level { keys, access, all };
// What the daemon does when the log cannot be written.
enum class OnFailure { fail_open, fail_closed };

std::optional<Level> level_from_name(std::string_view name);
std::string_view level_name(Level level);
std::optional<OnFailure> on_failure_from_name(std::string_view name);
std::string_view on_failure_name(OnFailure policy);

struct Principal {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::string program;  // /proc/<pid>/comm, empty if the process is gone

  static Principal of_process(uid_t uid, gid_t gid, pid_t pid);
  static Principal self();
};

struct Event {
  std::string event;
  Principal principal = Principal::self();
  std::string path;  // plaintext, relative to the mount; empty when none applies
  std::optional<std::uint32_t> generation;
  std::string keystore;  // keystore identity; empty when none applies
  std::string result = "ok";
  nlohmann::json detail;  // null when there is nothing more to say
  std::string time;       // UTC; AuditLog::record stamps it when empty
};

// An event about the volume as a whole (path "/"): init, mount, key operations. `keystore`
// is the identity the volume was unlocked with, empty when none applies; the principal is
// this process, which a daemon acting for a peer replaces.
Event volume_event(std::string event, std::string keystore, std::optional<std::uint32_t> generation,
                   std::string result, nlohmann::json detail);

using Mac = std::array<std::uint8_t, 32>;

// HMAC-SHA256(key, prev || text): the link that makes edits, deletions and reordering
// visible.
Mac chain_mac(crypto::ByteView key, const Mac& prev, std::string_view text);

// The record as one JSON line (no newline): the fields, serialised with sorted keys,
// then "mac" appended last so the MACed text is exactly the line without it.
std::string seal_record(const Event& event, std::uint64_t seq, std::string_view volume_id,
                        const Mac& prev, crypto::ByteView key, Mac& mac_out);

struct RecordLine {
  std::string text;  // what the MAC covers
  Mac mac{};
  nlohmann::json fields;  // including "mac"
  std::uint64_t seq = 0;
};
// nullopt when the line is not a well-formed record (not JSON, no trailing mac, no seq).
std::optional<RecordLine> parse_record_line(std::string_view line);

std::string utc_time_micros();

}  // namespace wardfs::audit
