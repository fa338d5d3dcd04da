#include "daemon/worker_pool.h"

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace wardfs::daemon {

namespace {

// Receive buffers libfuse allocated (malloc of its session's buffer size), shared by the
// workers. libfuse reads into a buffer it is handed at that size, so one allocated early
// must not be smaller than later: 3.14 keeps the size fixed; 3.18 sets it at INIT to
// max_write plus a header, and WardFs::init keeps max_write at the 1 MiB libfuse starts
// with (raising it would need buffers allocated after INIT, here and before).
constexpr std::size_t kSpareReceiveBuffers = 4;

// Interrupts a reader blocked in read() on /dev/fuse once the session is over. Unmounting
// normally ends those reads with ENODEV, but a lazily detached mount that a process still
// uses keeps the connection, and the reader would wait forever (the daemon never exits).
constexpr int kWakeSignal = SIGUSR2;

void ignore_wake(int) {}

// No SA_RESTART: the interrupted read() returns EINTR, and the worker sees the session
// has exited.
void install_wake_handler() {
  struct sigaction sa {};
  sa.sa_handler = ignore_wake;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ::sigaction(kWakeSignal, &sa, nullptr);
}

// A fixed pool of workers, each reading requests from /dev/fuse. libfuse 3.14's own
// multi-threaded loop started and ended a thread per request under a sequential load
// (8 clone() per small file created), which dominated the cost of small-file work.
class WorkerPool {
 public:
  explicit WorkerPool(fuse_session* session) : session_(session) {}
  ~WorkerPool() {
    for (void* mem : spare_buffers_) std::free(mem);
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void work() {
    int rc = 0;
    while (!fuse_session_exited(session_)) {
      fuse_buf buf{};
      if (!start_reading(buf)) break;
      rc = fuse_session_receive_buf(session_, &buf);
      stop_reading(rc > 0);
      if (rc == -EINTR) {
        give_back(buf);
        continue;
      }
      if (rc <= 0) {
        give_back(buf);
        break;
      }
      fuse_session_process_buf(session_, &buf);
      give_back(buf);
      rc = 0;
    }
    std::lock_guard lock(mutex_);
    if (rc < 0 && rc != -ENODEV && result_ == 0) result_ = rc;
    any_stopped_ = true;
    stopping_ = true;
    changed_.notify_all();
  }

  // Returns once a worker stopped or the session was told to exit (a signal may land on
  // a thread that is not reading /dev/fuse: then only the session's flag records it).
  void wait_until_stopping() {
    std::unique_lock lock(mutex_);
    while (!changed_.wait_for(lock, std::chrono::milliseconds(200), [&] { return any_stopped_; })) {
      if (fuse_session_exited(session_)) break;
    }
  }

  // Wakes the workers waiting for their turn to read, so they end.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }

  int result() {
    std::lock_guard lock(mutex_);
    return result_;
  }

  // Signals every worker still waiting in read(); false once none is. Only readers are
  // signalled: a worker serving a request finishes it undisturbed.
  bool interrupt_readers() {
    std::lock_guard lock(mutex_);
    for (const pthread_t t : reading_) ::pthread_kill(t, kWakeSignal);
    return !reading_.empty();
  }

 private:
  bool start_reading(fuse_buf& buf) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return stopping_ || reading_.size() < kMaxIdleReaders; });
    if (stopping_) return false;
    reading_.push_back(::pthread_self());
    if (!spare_buffers_.empty()) {
      buf.mem = spare_buffers_.back();  // the most recently used: already resident
      spare_buffers_.pop_back();
    }
    return true;
  }

  void stop_reading(bool got_request) {
    std::lock_guard lock(mutex_);
    std::erase(reading_, ::pthread_self());
    // This worker is about to serve a request: the next one needs a reader.
    if (got_request && reading_.empty()) changed_.notify_one();
  }

  void give_back(fuse_buf& buf) {
    if (buf.mem == nullptr) return;
    {
      std::lock_guard lock(mutex_);
      if (spare_buffers_.size() < kSpareReceiveBuffers) {
        spare_buffers_.push_back(buf.mem);
        buf.mem = nullptr;
      }
    }
    std::free(buf.mem);
    buf.mem = nullptr;
  }

  fuse_session* const session_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  bool any_stopped_ = false;
  int result_ = 0;
  std::vector<void*> spare_buffers_;
  std::vector<pthread_t> reading_;  // workers between start_reading and stop_reading
};

#ifdef WARDFS_LIBFUSE_URING
// libfuse's own loops stop its io_uring queue threads when they end (lib/fuse_uring_i.h,
// not in its public headers); ours must as well, before the session is destroyed.
extern "C" int fuse_uring_stop(struct fuse_session* se);
void stop_io_uring_threads(fuse_session* session) { fuse_uring_stop(session); }
#else
void stop_io_uring_threads(fuse_session*) {}
#endif

}  // namespace

int run_worker_pool(fuse_session* session, unsigned threads,
                    const std::function<void()>& before_unmount) {
  install_wake_handler();
  WorkerPool workers(session);
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < std::max(1U, threads); ++i) pool.emplace_back([&] { workers.work(); });
  workers.wait_until_stopping();
  // One worker saw a signal or the unmount; the readers still block in read(), which
  // unmounting turns into ENODEV, and the others wait for their turn to read.
  fuse_session_exit(session);
  workers.stop();
  before_unmount();
  fuse_session_unmount(session);
  // A read started just before its signal misses it: ask again until no reader is left.
  using namespace std::chrono_literals;
  for (int i = 0; i < 200 && workers.interrupt_readers(); ++i) std::this_thread::sleep_for(50ms);
  for (auto& t : pool) t.join();
  stop_io_uring_threads(session);
  return workers.result();
}

}  // namespace wardfs::daemon
