// What `wardfs fsck` prints: one line per problem (or one JSON object with --json), a
// progress line on a terminal, a summary; and the exit code by the worst problem found.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "volume/fsck.h"

namespace wardfs::cli {

// Beyond the README's table (0 … 5): fsck found no damage, but leftovers or unknown
// entries remain. Damage is 3 (corrupt volume), as everywhere.
inline constexpr int kFsckExitLeftovers = 6;

class FsckReporter {
 public:
  FsckReporter(bool json, std::string what);
  void problem(const volume::FsckProblem& p);
  // Problems the daemon found but left out of its reply (its size is bounded).
  void count_unlisted(volume::FsckSeverity severity, std::uint64_t n);
  // Rewrites the progress line on stderr, at most every 100 ms; only on a terminal.
  void progress(const volume::FsckCounts& counts);
  // Prints the summary and returns the exit code.
  int finish(const volume::FsckCounts& counts);

 private:
  void clear_progress();

  bool json_;
  bool tty_;
  std::string what_;
  bool progress_shown_ = false;
  std::chrono::steady_clock::time_point last_progress_{};
  std::uint64_t leftovers_ = 0;  // not repaired
  std::uint64_t warnings_ = 0;
  std::uint64_t damaged_ = 0;
  std::uint64_t repaired_ = 0;
  std::uint64_t unlisted_ = 0;
};

// --scrub: reads everything under `mount_point` at `rate` bytes per second.
int run_scrub(const std::filesystem::path& mount_point, std::uint64_t rate, bool json);

}  // namespace wardfs::cli
