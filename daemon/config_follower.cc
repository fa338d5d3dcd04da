#include "daemon/config_follower.h"

#include <sys/stat.h>

#include <optional>
#include <tuple>
#include <utility>

namespace wardfs::daemon {

// Nullopt while the file cannot be stated (a rename in flight on a network file system).
std::optional<ConfigFollower::FileIdentity> ConfigFollower::identity_of(
    const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{st.st_dev, st.st_ino, st.st_size, st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

ConfigFollower::ConfigFollower(std::filesystem::path config_path,
                               std::chrono::milliseconds interval, std::function<void()> on_change,
                               std::function<void()> on_tick)
    : config_path_(std::move(config_path)),
      on_change_(std::move(on_change)),
      on_tick_(std::move(on_tick)),
      task_(interval, [this](bool asked) { return poll(asked); }) {}

ConfigFollower::~ConfigFollower() = default;

bool ConfigFollower::follow_now(std::chrono::milliseconds timeout) {
  return task_.run_now(timeout);
}

bool ConfigFollower::poll(bool asked) {
  const auto now = identity_of(config_path_);
  const bool changed = now && now != seen_;
  if (changed) seen_ = now;
  if (changed || asked) on_change_();
  if (on_tick_) on_tick_();
  return true;
}

}  // namespace wardfs::daemon
