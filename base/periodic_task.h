// A thread that runs one job every interval until its owner goes away: the shape of each
// background duty of a mount (following the config, renewing the lease, the status line,
// the metrics file). Declare it as the owner's last member, so that it stops before
// anything its job reads is destroyed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace wardfs::base {

class PeriodicTask {
 public:
  // `asked` is true when the run serves run_now() calls made before it began. Returning
  // false ends the task: its thread exits and run_now() fails from then on.
  using Job = std::function<bool(bool asked)>;
  enum class FirstRun { after_interval, at_once };

  PeriodicTask(std::chrono::milliseconds interval, Job job,
               FirstRun first = FirstRun::after_interval);
  ~PeriodicTask();  // stops and joins; a run in progress completes first
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Runs the job now rather than at the end of the interval and waits, up to `timeout`,
  // for a run that began after this call. True when one completed.
  bool run_now(std::chrono::milliseconds timeout);

  // For the job itself: waits `duration` unless the task is being stopped (then false).
  bool pause(std::chrono::milliseconds duration);

 private:
  void loop(FirstRun first);

  const std::chrono::milliseconds interval_;
  const Job job_;
  std::mutex mutex_;  // guards the fields below; taken alone, never held across the job
  std::condition_variable wake_;
  std::condition_variable done_;
  bool stop_ = false;
  bool ended_ = false;
  std::uint64_t asks_ = 0;    // run_now() calls so far
  std::uint64_t served_ = 0;  // asks answered by a completed run
  std::thread thread_;        // last: starts once everything above exists
};

}  // namespace wardfs::base
