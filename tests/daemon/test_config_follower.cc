// ConfigFollower: polls wardfs.conf's identity and, asked by a request that met an
// unknown key generation, follows at once instead of at the next interval.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "daemon/config_follower.h"

using namespace std::chrono_literals;

namespace {
struct TempConfig {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("wardfs-follower-" + std::to_string(::getpid()));
  TempConfig() {
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "wardfs.conf") << "{}";
  }
  ~TempConfig() { std::filesystem::remove_all(dir); }
};
}  // namespace

TEST_CASE("follow_now runs the change callback at once and waits for it", "[follower]") {
  TempConfig tmp;
  std::atomic<int> changes{0};
  wardfs::daemon::ConfigFollower follower(tmp.dir / "wardfs.conf", 60s, [&] { ++changes; });
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(follower.follow_now(5s));
  CHECK(changes == 1);
  REQUIRE(follower.follow_now(5s));
  CHECK(changes == 2);
  // Far sooner than the 60 s interval.
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("a changed config is followed within one interval", "[follower]") {
  TempConfig tmp;
  std::atomic<int> changes{0};
  std::atomic<int> ticks{0};
  wardfs::daemon::ConfigFollower follower(
      tmp.dir / "wardfs.conf", 50ms, [&] { ++changes; }, [&] { ++ticks; });
  // The first look adopts whatever is there; then nothing until the file is replaced.
  for (int i = 0; i < 100 && changes < 1; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(changes == 1);
  std::this_thread::sleep_for(200ms);
  CHECK(changes == 1);
  CHECK(ticks >= 2);
  std::ofstream(tmp.dir / "wardfs.conf.new") << "{\"changed\": true}";
  std::filesystem::rename(tmp.dir / "wardfs.conf.new", tmp.dir / "wardfs.conf");
  for (int i = 0; i < 100 && changes < 2; ++i) std::this_thread::sleep_for(10ms);
  CHECK(changes == 2);
}
