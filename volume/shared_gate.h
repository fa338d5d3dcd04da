// -o shared: the lock on a backing file that other mounts honour, shared by the threads
// of this daemon. An OFD lock belongs to an open file description, not to a thread: a
// second thread's lock call on the same description replaces the first's, and either's
// unlock drops both; and two descriptions of one daemon exclude each other. So the
// threads of a daemon meet here first (readers together, a writer alone), and only the
// first reader in and the last reader out, or the writer, touch the OFD lock, always on
// one descriptor kept for the purpose.
#pragma once

#include <mutex>
#include <shared_mutex>

#include "base/posix_io.h"

namespace wardfs::volume {

class SharedFileGate {
 public:
  // Held while a read or a read-modify-write runs; let go before replying to the kernel,
  // which may release the handle (and close its fd) once it has the reply.
  class Pass {
   public:
    Pass() = default;
    ~Pass() { release(); }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    void release();

   private:
    friend class SharedFileGate;
    SharedFileGate* gate_ = nullptr;
    bool exclusive_ = false;
  };

  // Waits for this daemon's other users of the file, then for other mounts'. `fd` is an
  // open descriptor of the backing file (read-write for `exclusive`); the gate keeps a
  // duplicate of one. 0 or -errno.
  int enter(int fd, bool exclusive, Pass& pass);

 private:
  void leave(bool exclusive);
  int lock_fd_for(int fd, bool exclusive);

  // Lock order: threads_, then state_. Either is held while waiting for another mount.
  std::shared_mutex threads_;  // shared: readers of this daemon; exclusive: one writer
  std::mutex state_;           // guards lock_fd_ and readers_
  UniqueFd lock_fd_;
  unsigned readers_ = 0;
};

}  // namespace wardfs::volume
