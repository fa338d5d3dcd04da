// For fuzz_audit: a valid audit chain built with the real sealing code, written into a
// temp dir as the files a writer leaves (the live file, one rotated segment, the signed
// checkpoint), and the log read back the way verify_log sees it, so the fuzz target can
// tell whether a damaged log still holds the authentic records.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "audit/record.h"
#include "crypto/bytes.h"

namespace wardfs::fuzz {

// The audit MAC key every fuzz_audit log is sealed under (any fixed 32 bytes will do).
const crypto::Bytes& audit_key();

// One authenticated record as verify sees it: the MACed text and the MAC.
struct Link {
  std::string text;
  audit::Mac mac{};
  bool operator==(const Link&) const = default;
};

// The files of one log, by role. A role missing from the map has no file.
enum class Role { segment, live, checkpoint };
using LogFiles = std::map<Role, std::string>;

// `records` records, the first `split` of them (0: none) in a rotated segment, the rest
// in the live file starting with a log_continued record as a writer leaves them, and a
// checkpoint pinning the last one.
struct Chain {
  std::vector<Link> links;
  std::size_t split = 0;
  LogFiles files;
};
const Chain& chain(std::size_t records, std::size_t split);

// A private temp dir for one log; removed with everything in it at destruction.
class LogDir {
 public:
  LogDir();
  ~LogDir();
  LogDir(const LogDir&) = delete;
  LogDir& operator=(const LogDir&) = delete;

  std::filesystem::path live() const { return dir_ / "audit.jsonl"; }
  std::filesystem::path path(Role role) const;
  // Replaces whatever the dir holds with exactly these files.
  void put(const LogFiles& files) const;

 private:
  std::filesystem::path dir_;
};

// What verify_log reads: every line of every segment (oldest first) the way getline
// splits them, the empty ones dropped.
struct LogView {
  std::vector<std::string> lines;
  std::optional<std::vector<Link>> links;  // nullopt when a line is not a record
};
LogView read_view(const std::filesystem::path& live);

// The checkpoint's (seq, mac) if it opens under audit_key(), else nullopt.
std::optional<std::pair<std::uint64_t, audit::Mac>> authentic_checkpoint(
    const std::filesystem::path& live);

// True when `links` is exactly the chain, or exactly the part of it in the live file (a
// rotated segment may be shipped away: verify then says so in a note).
bool is_chain(const std::vector<Link>& links, const Chain& chain);

// True when `links` begins with the whole chain, or with the part of it in the live file
// (a rotated segment may be shipped away: verify then says so in a note).
bool starts_with_chain(const std::vector<Link>& links, const Chain& chain);

}  // namespace wardfs::fuzz
