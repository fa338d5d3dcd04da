#include "cli/fsck_report.h"

#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "daemon/monitor.h"
#include "daemon/online_fsck.h"

namespace wardfs::cli {

FsckReporter::FsckReporter(bool json, std::string what)
    : json_(json), tty_(::isatty(STDERR_FILENO) != 0), what_(std::move(what)) {}

void FsckReporter::clear_progress() {
  if (!progress_shown_) return;
  std::cerr << "\r\033[K" << std::flush;
  progress_shown_ = false;
}

void FsckReporter::problem(const volume::FsckProblem& p) {
  switch (p.severity) {
    case volume::FsckSeverity::leftover:
      p.repaired ? ++repaired_ : ++leftovers_;
      break;
    case volume::FsckSeverity::warning:
      ++warnings_;
      break;
    case volume::FsckSeverity::damage:
      ++damaged_;
      if (p.repaired) ++repaired_;
      break;
  }
  clear_progress();
  if (json_) {
    std::cout << daemon::fsck_problem_to_json(p).dump(-1, ' ', false,
                                                      nlohmann::json::error_handler_t::replace)
              << "\n"
              << std::flush;
    return;
  }
  std::cout << volume::severity_name(p.severity) << " " << p.kind << ": "
            << (p.path.empty() ? "backing " + p.backing : p.path + " (backing " + p.backing + ")")
            << ": " << p.detail << (p.repaired ? "; repaired: " : "; fix: ") << p.fix << "\n"
            << std::flush;
}

void FsckReporter::count_unlisted(volume::FsckSeverity severity, std::uint64_t n) {
  switch (severity) {
    case volume::FsckSeverity::leftover:
      leftovers_ += n;
      break;
    case volume::FsckSeverity::warning:
      warnings_ += n;
      break;
    case volume::FsckSeverity::damage:
      damaged_ += n;
      break;
  }
  unlisted_ += n;
}

void FsckReporter::progress(const volume::FsckCounts& c) {
  if (!tty_ || json_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_progress_ < std::chrono::milliseconds(100)) return;
  last_progress_ = now;
  std::cerr << "\r\033[Kfsck: " << c.directories << " directories, " << c.files << " files, "
            << daemon::human_bytes(c.bytes) << " checked" << std::flush;
  progress_shown_ = true;
}

int FsckReporter::finish(const volume::FsckCounts& c) {
  clear_progress();
  const int code = damaged_ > 0                      ? static_cast<int>(ErrorKind::corrupt_volume)
                   : leftovers_ > 0 || warnings_ > 0 ? kFsckExitLeftovers
                                                     : 0;
  const char* result = damaged_ > 0 ? "damage" : code != 0 ? "leftovers" : "clean";
  if (json_) {
    nlohmann::json j{{"summary", what_},        {"result", result},
                     {"exit_code", code},       {"directories", c.directories},
                     {"files", c.files},        {"symlinks", c.symlinks},
                     {"specials", c.specials},  {"bytes", c.bytes},
                     {"chunks", c.chunks},      {"holes", c.holes},
                     {"xattrs", c.xattrs},      {"damaged", damaged_},
                     {"leftovers", leftovers_}, {"warnings", warnings_},
                     {"repaired", repaired_},   {"quarantined", c.quarantined}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return code;
  }
  std::cout << what_ << ": " << c.directories << " directories, " << c.files << " files, "
            << c.symlinks << " symbolic links, " << daemon::human_bytes(c.bytes) << " in "
            << c.chunks << " chunks (" << c.holes << " holes), " << c.xattrs
            << " extended attributes\n";
  if (unlisted_ > 0)
    std::cout << unlisted_ << " more problems not listed: run fsck offline for all of them\n";
  if (c.quarantined > 0)
    std::cout << c.quarantined << " entries kept in /lost+found from an earlier repair\n";
  std::cout << (code == 0 ? "clean" : result) << ": " << damaged_ << " damaged, " << leftovers_
            << " leftovers, " << warnings_ << " warnings, " << repaired_ << " repaired\n";
  return code;
}

}  // namespace wardfs::cli
