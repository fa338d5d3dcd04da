#include "fuse/kernel_notifier.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace wardfs::fuse {

void KernelNotifier::start(fuse_session* session, std::size_t max_inodes) {
  stop();
  std::lock_guard lock(mutex_);
  session_ = session;
  // Down to 3/4 at a time: one pass frees a batch rather than an entry per lookup.
  low_ = max_inodes - max_inodes / 4;
  high_.store(max_inodes, std::memory_order_relaxed);
  stopping_.store(false, std::memory_order_release);
  pruner_ = std::thread([this] { prune_loop(); });
}

void KernelNotifier::quiesce() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  // A notification in flight can wait in the kernel for a directory lock that a request
  // nobody serves any more holds; unmounting ends that request, so do not wait forever.
  std::unique_lock in_flight(notify_mutex_, std::defer_lock);
  if (!in_flight.try_lock_for(std::chrono::seconds(2))) {
    spdlog::warn("an entry invalidation is still in the kernel; unmounting anyway");
  }
}

void KernelNotifier::stop() {
  quiesce();
  if (pruner_.joinable()) pruner_.join();
}

void KernelNotifier::note_inode_count() {
  if (!stopping_.load(std::memory_order_acquire) &&
      inodes_.fds_held() > high_.load(std::memory_order_relaxed))
    wake_.notify_one();
}

void KernelNotifier::invalidate_attrs(fuse_ino_t ino) {
  fuse_session* session = nullptr;
  {
    std::lock_guard lock(mutex_);
    session = session_;
  }
  if (session == nullptr) return;
  std::shared_lock in_flight(notify_mutex_);
  if (stopping_.load(std::memory_order_acquire)) return;
  // Attributes only (negative offset): the open that asks replies without keep_cache,
  // which drops the pages. Safe inside that open: it takes no lock the open holds.
  fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
}

fuse_ino_t KernelNotifier::ino_of_address(const Inode* inode) {
  return inode == &inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
}

void KernelNotifier::prune_loop() {
  using namespace std::chrono_literals;
  const auto stopping = [this] { return stopping_.load(std::memory_order_acquire); };
  const std::size_t high = high_.load(std::memory_order_relaxed);
  bool reported = false;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, 1s, [&] { return stopping() || inodes_.fds_held() > high; });
    if (stopping()) break;
    const std::size_t held = inodes_.fds_held();
    if (held <= high) continue;
    const auto victims = inodes_.coldest(held - low_);
    if (!reported) {
      spdlog::info(
          "the daemon holds {} fds for inodes the kernel knows, over this mount's limit of {} "
          "(max_inodes, from RLIMIT_NOFILE): asking the kernel to forget the least recently "
          "used",
          held, high);
      reported = true;
    }
    fuse_session* session = session_;
    lock.unlock();
    for (const auto& [parent, name] : victims) {
      // Checked under the lock quiesce() takes, so once it returns nothing more is
      // written to the session's fd, which the unmount then closes.
      std::shared_lock in_flight(notify_mutex_);
      if (stopping()) break;
      if (parent == nullptr) continue;
      // Fails harmlessly (ENOENT) for a directory the kernel has already forgotten.
      fuse_lowlevel_notify_inval_entry(session, ino_of_address(parent), name.data(), name.size());
    }
    released_.fetch_add(victims.size(), std::memory_order_relaxed);
    lock.lock();
    // Let the FORGETs arrive before counting again, but not for long: a fast reader
    // may look up thousands of files a second.
    wake_.wait_for(lock, 5ms, [&] { return stopping() || inodes_.fds_held() <= high; });
  }
}

}  // namespace wardfs::fuse
