// The daemon's view of backing inodes: one Inode per (device, inode number) the kernel
// knows about, holding an O_PATH fd, the lookup count and per-file engine state.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/posix_io.h"
#include "crypto/name_codec.h"
#include "volume/file_content.h"

namespace wardfs::fuse {

// Lock order (docs/ARCHITECTURE.md): a directory's entries_mutex (parent before child;
// two directories only through std::lock), then InodeTable::mutex_, then the
// FileContent's locks, and state_mutex last: nothing is locked while holding it.
struct Inode {
  UniqueFd fd;  // O_PATH | O_NOFOLLOW
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  std::atomic<std::uint64_t> nlookup{0};
  // Writes skip the fstat that looks for setuid and setgid bits to drop while the file
  // was last seen without them, on a mount where every mode change comes through this
  // daemon. setattr counts its mode and owner changes after making them; a look counts
  // only if no change was counted since it began (unprivileged_as_of == mode_changes).
  std::atomic<std::uint64_t> mode_changes{0};
  std::atomic<std::uint64_t> unprivileged_as_of{UINT64_MAX};

  std::mutex state_mutex;  // guards dir_id, content creation, display_path and link_dir
  std::optional<crypto::DirId> dir_id;
  std::unique_ptr<volume::FileContent> content;
  std::string display_path;  // last known plaintext path, for log lines only
  // Symlinks: the backing directory the kernel last found the link in (an O_PATH fd),
  // where the sidecar of a long target lives (docs/FORMAT.md §7.1).
  UniqueFd link_dir;

  // Serialises changes to the entries of this directory (create, unlink, rename, rmdir
  // of it), so an rmdir never races a create inside it.
  std::mutex entries_mutex;

  // Where the kernel last found this inode (directory and plaintext name), so the daemon
  // can ask it to forget the entry when fds run short. The parent pointer is an address
  // only, never followed: the kernel ignores or harmlessly misapplies a stale one.
  // Guarded by the table's mutex.
  const Inode* parent = nullptr;
  std::string name;
  std::list<Inode*>::iterator lru_pos;
  bool in_lru = false;

  std::string path() {
    std::lock_guard lock(state_mutex);
    return display_path;
  }
  void set_path(std::string p) {
    std::lock_guard lock(state_mutex);
    display_path = std::move(p);
  }
};

class InodeTable {
 public:
  // Returns the inode for (st_dev, st_ino), creating it around `fd` (taking ownership)
  // when new, and adds one lookup. A known inode keeps its fd; `fd` is closed.
  // `parent` and `name` say where the kernel looked it up (null for the daemon's own
  // walks); they make it the most recently used.
  Inode& acquire(UniqueFd fd, const struct stat& st, const std::string& display_path,
                 const Inode* parent = nullptr, std::string_view name = {});
  // The entry the kernel now knows under another name (rename).
  void relocate(Inode& inode, const Inode* parent, std::string_view name);
  std::size_t size();
  // (parent, name) of up to n least recently looked-up inodes, which become the most
  // recent ones so the next call offers others.
  std::vector<std::pair<const Inode*, std::string>> coldest(std::size_t n);
  Inode* find(dev_t dev, ino_t ino);
  // Drops n lookups; frees the inode when none remain (never the root).
  void forget(Inode& inode, std::uint64_t n);
  void set_root(std::unique_ptr<Inode> root) { root_ = std::move(root); }
  Inode& root() { return *root_; }

 private:
  std::mutex mutex_;
  void touch(Inode& inode, const Inode* parent, std::string_view name);  // mutex_ held

  struct InodeKeyHash {
    std::size_t operator()(const std::pair<dev_t, ino_t>& key) const noexcept {
      return std::hash<ino_t>()(key.second) ^
             (std::hash<dev_t>()(key.first) * 0x9E3779B97F4A7C15ULL);
    }
  };
  // Hashed, not ordered: a tree walk of pointer-chasing cache misses per LOOKUP showed
  // as the daemon's top symbol in a find over 10,000 entries.
  std::unordered_map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>, InodeKeyHash> inodes_;
  std::list<Inode*> lru_;  // least recently looked up first
  std::unique_ptr<Inode> root_;
};

}  // namespace wardfs::fuse
