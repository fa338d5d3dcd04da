#include "volume/shared_gate.h"

#include <fcntl.h>

#include <cerrno>

namespace wardfs::volume {

namespace {

int set_whole_file_lock(int fd, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;  // l_start 0, l_len 0: the whole file, however long it grows
  while (::fcntl(fd, type == F_UNLCK ? F_OFD_SETLK : F_OFD_SETLKW, &fl) != 0) {
    if (errno != EINTR) return -errno;
  }
  // Another machine may have written the file since this kernel cached its pages (a
  // FUSE client such as GlusterFS's keeps them while a file is open; NFS revalidates on
  // locking by itself): what this lock now protects is read from the server.
  if (type != F_UNLCK) (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  return 0;
}

bool writable(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_ACCMODE) != O_RDONLY;
}

}  // namespace

void SharedFileGate::Pass::release() {
  if (gate_ == nullptr) return;
  gate_->leave(exclusive_);
  gate_ = nullptr;
}

// Under state_. A writer needs a writable descriptor: it replaces a read-only one, which
// no reader can be using then (the writer holds threads_ exclusively).
int SharedFileGate::lock_fd_for(int fd, bool exclusive) {
  if (lock_fd_ && (!exclusive || writable(lock_fd_.get()))) return lock_fd_.get();
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup) return -errno;
  lock_fd_ = std::move(dup);
  return lock_fd_.get();
}

int SharedFileGate::enter(int fd, bool exclusive, Pass& pass) {
  pass.release();
  if (exclusive) {
    std::unique_lock threads(threads_);
    int rc = 0;
    {
      std::lock_guard state(state_);
      rc = lock_fd_for(fd, true);
    }
    if (rc >= 0) rc = set_whole_file_lock(rc, F_WRLCK);
    if (rc < 0) return rc;
    threads.release();
  } else {
    std::shared_lock threads(threads_);
    std::lock_guard state(state_);
    if (readers_ == 0) {
      int rc = lock_fd_for(fd, false);
      if (rc >= 0) rc = set_whole_file_lock(rc, F_RDLCK);
      if (rc < 0) return rc;
    }
    ++readers_;
    threads.release();
  }
  pass.gate_ = this;
  pass.exclusive_ = exclusive;
  return 0;
}

void SharedFileGate::leave(bool exclusive) {
  if (exclusive) {
    (void)set_whole_file_lock(lock_fd_.get(), F_UNLCK);
    threads_.unlock();
    return;
  }
  {
    std::lock_guard state(state_);
    if (--readers_ == 0) (void)set_whole_file_lock(lock_fd_.get(), F_UNLCK);
  }
  threads_.unlock_shared();
}

}  // namespace wardfs::volume
