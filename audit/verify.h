// Reading an audit log back: verification of the chain and the checkpoint, and the
// record listing behind `wardfs audit show`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/bytes.h"

namespace wardfs::audit {

struct VerifyReport {
  bool ok = false;
  std::uint64_t records = 0;
  std::uint64_t first_seq = 0;
  std::uint64_t last_seq = 0;
  std::uint64_t checkpoint_seq = 0;
  std::vector<std::string> segments;
  std::string problem;  // the first problem, naming the file, line and record
  std::string note;     // e.g. that older segments are gone but the chain is intact

  nlohmann::json to_json() const;
};

// Recomputes every link of the chain under `mac_key`, from the oldest segment present
// to the live file, and compares the tail with the signed checkpoint.
VerifyReport verify_log(const std::filesystem::path& live, crypto::ByteView mac_key);

struct LogRecords {
  std::vector<nlohmann::json> records;  // oldest first, each with its "mac"
  std::uint64_t malformed = 0;          // lines that are not records (shown by verify)
};
LogRecords read_log(const std::filesystem::path& live);

}  // namespace wardfs::audit
