// base::PeriodicTask: the thread behind every background duty of a mount.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <thread>

#include "base/periodic_task.h"

using wardfs::base::PeriodicTask;
using namespace std::chrono_literals;

namespace {
// Polls `done` for up to 10 s: long enough for a loaded CI machine.
template <typename Pred>
bool eventually(Pred done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(10ms);
  return done();
}
}  // namespace

TEST_CASE("a periodic task runs its job every interval until destroyed", "[periodic]") {
  std::atomic<int> runs{0};
  {
    PeriodicTask task(5ms, [&](bool asked) {
      CHECK_FALSE(asked);
      ++runs;
      return true;
    });
    REQUIRE(eventually([&] { return runs.load() >= 3; }));
  }
  const int after = runs.load();
  std::this_thread::sleep_for(50ms);
  CHECK(runs.load() == after);  // nothing runs once the task is gone
}

TEST_CASE("run_now runs the job at once and says so", "[periodic]") {
  std::atomic<int> asked_runs{0};
  PeriodicTask task(std::chrono::hours(1), [&](bool asked) {
    if (asked) ++asked_runs;
    return true;
  });
  CHECK(task.run_now(10s));
  CHECK(asked_runs.load() == 1);
  CHECK(task.run_now(10s));
  CHECK(asked_runs.load() == 2);
}

TEST_CASE("a job that returns false ends the task", "[periodic]") {
  std::atomic<int> runs{0};
  PeriodicTask task(
      std::chrono::hours(1),
      [&](bool) {
        ++runs;
        return false;
      },
      PeriodicTask::FirstRun::at_once);
  REQUIRE(eventually([&] { return runs.load() == 1; }));
  CHECK_FALSE(task.run_now(1s));
  CHECK(runs.load() == 1);
}

TEST_CASE("destroying a task interrupts the job's pause and the interval", "[periodic]") {
  std::atomic<bool> paused{false};
  std::atomic<bool> pause_result{true};
  const auto start = std::chrono::steady_clock::now();
  {
    std::optional<PeriodicTask> task;
    task.emplace(std::chrono::hours(1), [&](bool) {
      paused = true;
      pause_result = task->pause(std::chrono::hours(1));
      return true;
    });
    // Asked only once `task` holds the task, which the job reads.
    CHECK_FALSE(task->run_now(0ms));
    REQUIRE(eventually([&] { return paused.load(); }));
  }
  CHECK_FALSE(pause_result.load());
  CHECK(std::chrono::steady_clock::now() - start < 1min);
}
