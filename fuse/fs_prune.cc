// What the daemon tells the kernel on its own: the inode limit (keeps the number of
// inodes the kernel holds, each pinning an fd in the daemon, under the fd budget) and
// attribute invalidations.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "fuse/filesystem.h"

namespace wardfs::fs {

void WardFs::start_inode_limit(fuse_session* session, std::size_t max_inodes) {
  stop_inode_limit();
  std::lock_guard lock(prune_mutex_);
  prune_session_ = session;
  prune_stop_ = false;
  stopping_.store(false, std::memory_order_release);
  // Down to 3/4 at a time: one pass frees a batch rather than an entry per lookup.
  prune_low_ = max_inodes - max_inodes / 4;
  prune_high_.store(max_inodes, std::memory_order_relaxed);
  pruner_ = std::thread([this] { prune_loop(); });
}

void WardFs::quiesce_inode_limit() {
  stopping_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(prune_mutex_);
    prune_stop_ = true;
    prune_high_.store(SIZE_MAX, std::memory_order_relaxed);
  }
  prune_cv_.notify_all();
  // A notification in flight can wait in the kernel for a directory lock that a request
  // nobody serves any more holds; unmounting ends that request, so do not wait forever.
  std::unique_lock in_flight(notify_mutex_, std::defer_lock);
  if (!in_flight.try_lock_for(std::chrono::seconds(2))) {
    spdlog::warn("an entry invalidation is still in the kernel; unmounting anyway");
  }
}

void WardFs::stop_inode_limit() {
  if (!pruner_.joinable()) return;
  quiesce_inode_limit();
  pruner_.join();
}

void WardFs::note_inode_count() {
  const std::size_t high = prune_high_.load(std::memory_order_relaxed);
  if (high != SIZE_MAX && inodes_.size() > high) prune_cv_.notify_one();
}

void WardFs::invalidate_cached_attrs(fuse_ino_t ino) {
  fuse_session* session = nullptr;
  {
    std::lock_guard lock(prune_mutex_);
    session = prune_session_;
  }
  if (session == nullptr) return;
  std::shared_lock in_flight(notify_mutex_);
  if (stopping_.load(std::memory_order_acquire)) return;
  // Attributes only (negative offset): the open that asks replies without keep_cache,
  // which drops the pages. Safe inside that open: it takes no lock the open holds.
  fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
}

fuse_ino_t WardFs::ino_of_address(const Inode* inode) {
  return inode == &inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
}

void WardFs::prune_loop() {
  using namespace std::chrono_literals;
  bool reported = false;
  std::unique_lock lock(prune_mutex_);
  for (;;) {
    const std::size_t high = prune_high_.load(std::memory_order_relaxed);
    prune_cv_.wait_for(lock, 1s, [&] { return prune_stop_ || inodes_.size() > high; });
    if (prune_stop_) break;
    const std::size_t held = inodes_.size();
    if (held <= high) continue;
    const auto victims = inodes_.coldest(held - prune_low_);
    if (!reported) {
      spdlog::info(
          "the kernel holds {} inodes, over this mount's limit of {} (one fd each, "
          "RLIMIT_NOFILE): asking it to forget the least recently used",
          held, high);
      reported = true;
    }
    fuse_session* session = prune_session_;
    lock.unlock();
    for (const auto& [parent, name] : victims) {
      // Checked under the lock quiesce_inode_limit() takes, so once it returns nothing
      // more is written to the session's fd, which the unmount then closes.
      std::shared_lock in_flight(notify_mutex_);
      if (stopping_.load(std::memory_order_acquire)) break;
      if (parent == nullptr) continue;
      // Fails harmlessly (ENOENT) for a directory the kernel has already forgotten.
      fuse_lowlevel_notify_inval_entry(session, ino_of_address(parent), name.data(), name.size());
    }
    counters_.entries_released.fetch_add(victims.size(), std::memory_order_relaxed);
    lock.lock();
    // Let the FORGETs arrive before counting again, but not for long: a fast reader
    // may look up thousands of files a second.
    prune_cv_.wait_for(lock, 5ms, [&] { return prune_stop_ || inodes_.size() <= high; });
  }
}

}  // namespace wardfs::fs
