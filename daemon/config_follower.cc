#include "daemon/config_follower.h"

#include <sys/stat.h>

#include <optional>
#include <tuple>
#include <utility>

namespace wardfs::daemon {

namespace {

using FileIdentity = std::tuple<dev_t, ino_t, off_t, std::int64_t, long>;

// Nullopt while the file cannot be stated (a rename in flight on a network file system).
std::optional<FileIdentity> identity_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{st.st_dev, st.st_ino, st.st_size, st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

}  // namespace

ConfigFollower::ConfigFollower(std::filesystem::path config_path,
                               std::chrono::milliseconds interval, std::function<void()> on_change,
                               std::function<void()> on_tick)
    : config_path_(std::move(config_path)),
      interval_(interval),
      on_change_(std::move(on_change)),
      on_tick_(std::move(on_tick)),
      thread_([this] { run(); }) {}

ConfigFollower::~ConfigFollower() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool ConfigFollower::follow_now(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const std::uint64_t ticket = ++asks_;
  wake_.notify_all();
  return done_.wait_for(lock, timeout, [&] { return stop_ || served_ >= ticket; }) && !stop_;
}

void ConfigFollower::run() {
  // Nothing seen yet: the first look adopts whatever changed since the mount unlocked.
  std::optional<FileIdentity> seen;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, interval_, [this] { return stop_ || asks_ > served_; });
    if (stop_) break;
    // Asks that come in while this round runs are served by the next one, which may
    // otherwise read the config before it changed.
    const std::uint64_t taking = asks_;
    const bool asked = taking > served_;
    lock.unlock();
    const auto now = identity_of(config_path_);
    const bool changed = now && now != seen;
    if (changed) seen = now;
    if (changed || asked) on_change_();
    if (on_tick_) on_tick_();
    lock.lock();
    served_ = taking;
    done_.notify_all();
  }
  done_.notify_all();
}

}  // namespace wardfs::daemon
