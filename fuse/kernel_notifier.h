// What the daemon tells the kernel on its own initiative, over the FUSE session: the
// inode limit (directories, symlinks and files once used pin an fd in the daemon while
// the kernel knows them, so past a budget a thread asks the kernel to forget the least
// recently looked-up of those, as memory pressure would) and attribute invalidations (another mount
// changed a file).
//
// One stop path: quiesce() (before the session's fd closes, i.e. before
// fuse_session_unmount) stops every notification; stop() also ends the thread. Both are
// safe to call twice; the destructor calls stop().
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "fuse/inode_table.h"

namespace wardfs::fuse {

class KernelNotifier {
 public:
  // `released` counts the entries the kernel was asked to forget.
  KernelNotifier(InodeTable& inodes, std::atomic<std::uint64_t>& released)
      : inodes_(inodes), released_(released) {}
  ~KernelNotifier() { stop(); }
  KernelNotifier(const KernelNotifier&) = delete;
  KernelNotifier& operator=(const KernelNotifier&) = delete;

  // Starts the pruning thread for at most `max_inodes` inodes with an fd.
  void start(fuse_session* session, std::size_t max_inodes);
  void quiesce();  // waits up to 2 s for a notification in flight
  void stop();     // quiesce, then join the thread

  void note_inode_count();  // wakes the pruner when over the limit
  // The kernel's attributes of `ino` are stale (another mount changed the file).
  void invalidate_attrs(fuse_ino_t ino);

 private:
  void prune_loop();
  fuse_ino_t ino_of_address(const Inode* inode);

  InodeTable& inodes_;
  std::atomic<std::uint64_t>& released_;
  // Lock order: notify_mutex_ (shared while a notification is in the kernel) is taken
  // without mutex_ held; mutex_ guards session_ and the pruner's wait.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stopping_{true};  // the one stop flag: no session, or stopping
  std::shared_timed_mutex notify_mutex_;
  fuse_session* session_ = nullptr;
  std::atomic<std::size_t> high_{0};
  std::size_t low_ = 0;  // the pruner's, set before it starts
  std::thread pruner_;
};

}  // namespace wardfs::fuse
