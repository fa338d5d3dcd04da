#include "base/periodic_task.h"

#include <utility>

namespace wardfs::base {

PeriodicTask::PeriodicTask(std::chrono::milliseconds interval, Job job, FirstRun first)
    : interval_(interval), job_(std::move(job)), thread_([this, first] { loop(first); }) {}

PeriodicTask::~PeriodicTask() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool PeriodicTask::run_now(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (stop_ || ended_) return false;
  const std::uint64_t ticket = ++asks_;
  wake_.notify_all();
  done_.wait_for(lock, timeout, [&] { return stop_ || ended_ || served_ >= ticket; });
  return served_ >= ticket;
}

bool PeriodicTask::pause(std::chrono::milliseconds duration) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, duration, [this] { return stop_; });
}

void PeriodicTask::loop(FirstRun first) {
  std::unique_lock lock(mutex_);
  bool waited = first == FirstRun::after_interval;
  for (;;) {
    if (waited) wake_.wait_for(lock, interval_, [this] { return stop_ || asks_ > served_; });
    waited = true;
    if (stop_) break;
    // Asks that come in while this run is under way are served by the next one: this one
    // may have looked before whatever prompted them.
    const std::uint64_t taking = asks_;
    const bool asked = taking > served_;
    lock.unlock();
    const bool go_on = job_(asked);
    lock.lock();
    served_ = taking;
    done_.notify_all();
    if (!go_on) break;
  }
  ended_ = true;
  done_.notify_all();
}

}  // namespace wardfs::base
