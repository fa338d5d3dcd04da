// Keeps write() failing with ENOSPC on a full backing disk while the kernel writeback
// cache is on (FUSE_CAP_WRITEBACK_CACHE, -o writeback_cache=1).
//
// The kernel accepts a cached write() without asking the daemon and sends the bytes
// later; a WRITE the backing disk then refuses would be lost, reported only by a later
// fsync() or close(). So:
// - the mount holds a reserve of backing space (volume/space_reserve.h) at least twice
//   what the kernel may hold dirty for it (the FUSE bdi is strictlimit'ed to its
//   max_ratio of the dirty threshold; twice, because a page may cost a whole block more
//   once sealed);
// - a page-cache WRITE that meets ENOSPC spends the reserve and lands, and the mount
//   turns *tight*: the kernel is told that the attributes of every file open for cached
//   writing are stale, so that file's next write() asks GETATTR with its file handle
//   first (fs/fuse/file.c, fuse_cache_write_iter), and the daemon answers that GETATTR
//   ENOSPC, which write() returns. New opens for writing get FOPEN_DIRECT_IO: their
//   writes reach the daemon and fail or succeed at once;
// - while tight, each such GETATTR and each open tries to take the whole reserve back
//   from the file system; once it can (space was freed), the mount is normal again.
//
// What remains, documented in README: a single write() call already past its GETATTR
// when the disk filled may put more than the reserve into the cache; what of it cannot
// land is reported by fsync()/close(), and reads of that part of the file fail with EIO
// instead of showing zeros.
#pragma once

#include <atomic>
#include <cstdint>

#include "volume/space_reserve.h"

namespace wardfs::fuse {

// The reserve a writeback mount holds, in whole MiB: twice the most bytes the kernel may
// hold dirty or under writeback for one FUSE mount on this machine, plus 8 MiB for the
// kernel's per-task overshoot of it (ratelimited checks). That most is the dirty
// threshold (vm.dirty_bytes, or vm.dirty_ratio of all memory, an upper bound of the
// kernel's "dirtyable" memory) times the 1 % max_ratio the kernel gives every FUSE bdi.
// 0 if /proc cannot say.
std::uint64_t writeback_reserve_bytes();

class WritebackSpace {
 public:
  // `reserve` (active, outliving this), or null when the mount has no writeback cache.
  explicit WritebackSpace(volume::SpaceReserve* reserve) : reserve_(reserve) {}
  bool enabled() const { return reserve_ != nullptr; }
  bool tight() const { return tight_.load(std::memory_order_acquire); }
  // A page-cache WRITE of `bytes` met ENOSPC. Gives back reserve for it (twice the bytes
  // and 1 MiB, so the next few fit too) and returns true, or false when the reserve is
  // spent. `became_tight` is set when this call turned the mount tight (the caller then
  // tells the kernel about the open files).
  bool make_room(std::uint64_t bytes, bool& became_tight);
  // While tight: tries to hold the whole reserve again; true when the mount is normal.
  bool try_recover();
  std::uint64_t held() const { return reserve_ ? reserve_->held() : 0; }
  std::uint64_t target() const { return reserve_ ? reserve_->target() : 0; }
  std::uint64_t times_tight() const { return times_tight_.load(std::memory_order_relaxed); }
  std::uint64_t writes_lost() const { return writes_lost_.load(std::memory_order_relaxed); }
  void note_write_lost() { writes_lost_.fetch_add(1, std::memory_order_relaxed); }

 private:
  volume::SpaceReserve* reserve_;
  std::atomic<bool> tight_{false};
  std::atomic<std::uint64_t> times_tight_{0};
  std::atomic<std::uint64_t> writes_lost_{0};
};

}  // namespace wardfs::fuse
