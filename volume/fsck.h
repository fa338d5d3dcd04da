// fsck: checks a whole backing tree against docs/FORMAT.md with an unlocked volume, and
// with `repair` does only what is safe. Used by `wardfs fsck` offline; it takes no locks
// of its own, so a caller that repairs holds the volume's offline lease (volume/lease.h).
//
// The backing tree is untrusted: the walk goes through directory fds, never follows a
// symlink (O_NOFOLLOW everywhere), opens files non-blocking, and decides what an entry
// is only through the same functions the filesystem uses (NameMapper, FileContent,
// read_dir_id), so fsck accepts exactly what a reader accepts.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "volume/volume.h"

namespace wardfs::volume {

// The plaintext directory at the volume's root that --repair moves undecryptable
// entries into (under their backing names, which no longer decrypt there either).
inline constexpr std::string_view kLostAndFound = "lost+found";

enum class FsckSeverity {
  leftover,  // wardfs's own debris after a crash: harmless, --repair removes it
  warning,   // not wardfs's (an unknown entry): left alone, worth a look
  damage,    // data or metadata that does not authenticate: something is lost
};
std::string_view severity_name(FsckSeverity severity);

struct FsckProblem {
  FsckSeverity severity = FsckSeverity::damage;
  std::string kind;     // stable machine name: "chunk_auth", "temp_leftover", ...
  std::string path;     // plaintext path ("/a/b"), empty when the name is unknown
  std::string backing;  // path relative to the backing directory
  std::string detail;   // what is wrong
  std::string fix;      // what to do about it, or what --repair did
  bool repaired = false;
};

struct FsckCounts {
  std::uint64_t directories = 0;
  std::uint64_t files = 0;
  std::uint64_t symlinks = 0;
  std::uint64_t specials = 0;  // FIFOs, sockets, device nodes
  std::uint64_t bytes = 0;     // plaintext bytes of the files checked
  std::uint64_t chunks = 0;
  std::uint64_t holes = 0;
  std::uint64_t xattrs = 0;
  std::uint64_t leftovers = 0;
  std::uint64_t warnings = 0;
  std::uint64_t damaged = 0;
  std::uint64_t repaired = 0;
  std::uint64_t quarantined = 0;  // entries already in lost+found
};

class TreeAccess;

struct FsckOptions {
  bool repair = false;
  // A live filesystem's locks (volume/rekey.h): a mounted volume's daemon passes its own,
  // so fsck sees no directory or file half-changed by its writers. Null offline.
  TreeAccess* access = nullptr;
  std::function<void(const FsckProblem&)> on_problem;
  // After each entry, for a progress display.
  std::function<void(const FsckCounts&)> on_progress;
};

// Walks the whole backing tree of `volume`. Throws WardError only when the backing root
// cannot be opened; everything else is a problem reported through on_problem.
FsckCounts check_volume(const Volume& volume, const FsckOptions& options);

}  // namespace wardfs::volume
