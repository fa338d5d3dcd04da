// The daemon's view of backing inodes: one Inode per (device, inode number) the kernel
// knows about, with its lookup count, per-file engine state and an O_PATH fd, which a
// regular file opens only when an operation needs it (InodeTable::fd_of).
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

// A directory's O_PATH fd, shared by the directory's Inode and the regular files last
// found in it, so a file can open its own fd after the kernel forgot the directory.
using SharedFd = std::shared_ptr<const UniqueFd>;

// Where a regular file's inode was last found: the directory and the backing name in it.
struct BackingPlace {
  SharedFd dir;
  std::string name;
};

// Lock order (docs/ARCHITECTURE.md): a directory's entries_mutex (parent before child;
// two directories only through std::lock), then InodeTable::mutex_, then the
// FileContent's locks, and state_mutex last: nothing is locked while holding it.
struct Inode {
  // The O_PATH | O_NOFOLLOW fd, or -1. Directories and symlinks have theirs from the start
  // (their entries and targets are read through it); a regular file opens its own on
  // first use (InodeTable::fd_of), so a LOOKUP or READDIRPLUS of a file costs one fstatat
  // and a tree of any size pins no fd per file. Set once, kept until the inode is freed.
  int fd() const { return fd_.load(std::memory_order_acquire); }
  // A directory's fd as its files keep it. Set before the inode is published, never
  // changed: no lock needed.
  const SharedFd& dir_fd_shared() const { return fd_owner_; }
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
  // The lowest offset of a page-cache write that could not land (the backing disk was
  // full and the writeback reserve spent): the kernel still believes in the size that
  // write gave the file, so reads from here on are EIO rather than zeros, until a
  // truncate to at most this offset. UINT64_MAX: none.
  std::atomic<std::uint64_t> unlanded_from{UINT64_MAX};
  // Held by a page-cache WRITE across its check of unlanded_from, the write and, when it
  // cannot land, the cut there: no later WRITE lands past a cut while it is made.
  // Taken before the FileContent's locks.
  std::mutex landing_mutex;

  // Guards dir_id, content creation, display_path, link_dir, place and the opening of
  // the fd.
  std::mutex state_mutex;
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

  BackingPlace place;  // regular files until their fd is open: where to open it

  // Directories: entries of listings sent without attributes not yet looked up, up to a
  // bound (-o readdirplus=adaptive counts those lookups).
  std::atomic<std::uint32_t> listed_bare{0};
  bool take_listed_bare() {
    std::uint32_t n = listed_bare.load(std::memory_order_relaxed);
    while (n > 0 && !listed_bare.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
    }
    return n > 0;
  }

  std::string path() {
    std::lock_guard lock(state_mutex);
    return display_path;
  }
  void set_path(std::string p) {
    std::lock_guard lock(state_mutex);
    display_path = std::move(p);
  }

 private:
  friend class InodeTable;
  void set_fd(UniqueFd fd) {  // once; the table's mutex or state_mutex held
    fd_owner_ = std::make_shared<const UniqueFd>(std::move(fd));
    fd_.store(fd_owner_->get(), std::memory_order_release);
  }
  SharedFd fd_owner_;
  std::atomic<int> fd_{-1};
};

class InodeTable {
 public:
  // Returns the inode for (st_dev, st_ino), creating it around `fd` (taking ownership)
  // when new, and adds one lookup. A known inode keeps its fd (`fd` is closed) or, if it
  // has none yet, takes `fd`. `fd` may be empty for a regular file only, which then
  // opens it from `place` when needed. `parent` and `name` say where the kernel looked
  // it up (null for the daemon's own walks); they make it the most recently used.
  Inode& acquire(UniqueFd fd, const struct stat& st, const std::string& display_path,
                 const Inode* parent = nullptr, std::string_view name = {},
                 BackingPlace place = {});
  // The inode's O_PATH fd, opened from its place on first use: the fd, or -ESTALE when
  // the name no longer holds this inode (renamed or replaced by another mount, or by a
  // rekey; the kernel then looks the name up again), or another -errno. Files opened or
  // changed through the mount have their fd before any of their names can go; what
  // cannot recover is an fstat through an O_PATH fd of the caller's whose every name
  // the daemon has not seen is gone (ESTALE, where gocryptfs answers ENOENT).
  int fd_of(Inode& inode);
  // Gives `inode` the fd `fd` (opened from one of its names) if it has none yet.
  void adopt_fd(Inode& inode, UniqueFd fd);
  // Where a regular file without an fd now lives (rename).
  void move_place(Inode& inode, const SharedFd& dir, std::string_view backing);
  std::size_t fds_held() const { return fds_held_.load(std::memory_order_relaxed); }
  // The entry the kernel now knows under another name (rename).
  void relocate(Inode& inode, const Inode* parent, std::string_view name);
  std::size_t size();
  // (parent, name) of up to n least recently looked-up inodes that hold an fd, which
  // become the most recent ones so the next call offers others.
  std::vector<std::pair<const Inode*, std::string>> coldest(std::size_t n);
  Inode* find(dev_t dev, ino_t ino);
  // Drops n lookups; frees the inode when none remain (never the root).
  void forget(Inode& inode, std::uint64_t n);
  void set_root(std::unique_ptr<Inode> root, UniqueFd fd) {
    root->set_fd(std::move(fd));
    root_ = std::move(root);
  }
  Inode& root() { return *root_; }

 private:
  std::mutex mutex_;
  void touch(Inode& inode, const Inode* parent, std::string_view name);  // mutex_ held
  // The one way an inode gets its fd (but the root): counts it, drops the place. The
  // inode's state_mutex held, or mutex_ for an inode not yet published.
  void give_fd(Inode& inode, UniqueFd fd);

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
  std::atomic<std::size_t> fds_held_{0};  // inodes with an open fd, the root aside
};

}  // namespace wardfs::fuse
