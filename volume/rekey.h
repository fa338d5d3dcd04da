// Walks a whole volume to count which key generations are in use (scan) or to re-seal
// everything under the active generation (rekey), sharing per-file and per-directory
// locks with a live filesystem through TreeAccess, so it can run while mounted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "volume/file_content.h"
#include "volume/names.h"
#include "volume/volume.h"

namespace wardfs::volume {

class TreeAccess {
 public:
  virtual ~TreeAccess() = default;
  // Runs fn with the FileContent every user of this backing file shares, loaded, and
  // a read-write fd to it. Returns fn's result or -errno.
  virtual int with_file(int dir_fd, const std::string& backing, const std::string& path,
                        const std::function<int(FileContent&, int)>& fn) = 0;
  // Runs fn while holding the lock that guards this directory's entries.
  virtual int with_dir(int dir_fd, const std::string& path, const std::function<int()>& fn) = 0;
};

// For a volume nobody has mounted: private FileContent objects and no locking.
class OfflineTreeAccess final : public TreeAccess {
 public:
  explicit OfflineTreeAccess(const Volume& volume) : volume_(volume) {}
  int with_file(int dir_fd, const std::string& backing, const std::string& path,
                const std::function<int(FileContent&, int)>& fn) override;
  int with_dir(int, const std::string&, const std::function<int()>& fn) override { return fn(); }

 private:
  const Volume& volume_;
};

struct VolumeUsage {
  GenerationCounts content;
  std::map<std::uint32_t, std::uint64_t> names;
  std::map<std::uint32_t, std::uint64_t> symlinks;
  std::map<std::uint32_t, std::uint64_t> xattrs;
  std::uint64_t files = 0;
  std::uint64_t backing_bytes = 0;
  std::uint64_t unreadable = 0;  // entries that failed authentication
  // Everything sealed under `generation`: chunks, headers, names, targets, xattrs.
  std::uint64_t uses(std::uint32_t generation) const;
};

struct RekeyProgress {
  std::atomic<std::uint64_t> bytes_total{0};
  std::atomic<std::uint64_t> bytes_done{0};
  std::atomic<std::uint64_t> files_done{0};
  std::atomic<std::uint64_t> names_done{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> running{false};
  std::atomic<bool> cancel{false};
  std::atomic<std::uint32_t> target_generation{0};
  std::mutex error_mutex;
  std::string last_error;
  // Called by the rekeying thread after each file; set before the rekey starts.
  std::function<void()> on_file_done;
};

class Rekeyer {
 public:
  Rekeyer(Volume& volume, TreeAccess& access, const NameMapper& names)
      : volume_(volume), access_(access), names_(names) {}
  // Counts what every generation seals, the root directory's own xattrs included.
  // 0, or -errno when part of the tree could not be walked (the counts are then short).
  int scan(VolumeUsage& out);
  // Re-seals every chunk, header, name, symlink target and xattr under an older
  // generation. rate_bytes_per_sec 0 = unthrottled. Safe to interrupt and rerun.
  int rekey(RekeyProgress& progress, double rate_bytes_per_sec);
  // What retiring `generation` would shred, from a full scan. Unless `force`, throws
  // WardError when the scan could not walk the whole tree: a short count could miss data
  // the generation still seals, which retiring would destroy.
  std::uint64_t uses_before_retire(std::uint32_t generation, bool force);

 private:
  struct Visitor;
  int walk(int dir_fd, const std::string& path, Visitor& visitor);
  int rekey_names(int dir_fd, const crypto::DirId& dir_id, const std::string& path,
                  RekeyProgress& progress);
  int rekey_symlink(int dir_fd, const std::string& backing, RekeyProgress& progress);
  int rekey_xattrs(int dir_fd, const std::string& backing, RekeyProgress& progress);

  Volume& volume_;
  TreeAccess& access_;
  const NameMapper& names_;
};

}  // namespace wardfs::volume
