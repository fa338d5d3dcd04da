// Hole punching and zeroing (fallocate PUNCH_HOLE and ZERO_RANGE) on top of the hole
// design, FORMAT.md §4.6.2: whole chunk slots before the final chunk become holes under
// the has-holes flag; partial chunks at the edges, and the final chunk, are re-sealed
// with zeros, so what a punch leaves is as authentic as any other write.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "volume/file_content.h"

namespace wardfs::volume {

int FileContent::punch_hole(int fd, std::uint64_t offset, std::uint64_t len) {
  std::unique_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  // No overflow: both come from non-negative off_t values.
  return zero_locked(fd, offset, std::min(size_, offset + len),
                     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
}

int FileContent::zero_range(int fd, std::uint64_t offset, std::uint64_t len, bool keep_size) {
  std::unique_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  const std::uint64_t end = offset + len;
  if (!keep_size && end > kMaxPlainSize) return -EFBIG;
  const std::uint64_t old_size = size_;
  const int rc =
      zero_locked(fd, offset, std::min(end, old_size), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
  if (rc != 0) return rc;
  // Past the end there is no plaintext to zero: growing the file is a truncate up, whose
  // new bytes read as zeros already.
  if (!keep_size && end > old_size) return truncate_locked(fd, end);
  return 0;
}

int FileContent::zero_locked(int fd, std::uint64_t from, std::uint64_t to, int backing_mode) {
  if (from >= to) return 0;
  const std::uint64_t cs = layout_.chunk_size();
  // Chunks wholly inside the range, but never the final one: it carries the end-of-file
  // mark, so it stays sealed (FORMAT.md §4.3).
  const std::uint64_t whole_first = (from + cs - 1) / cs;
  const std::uint64_t whole_end = std::min(to / cs, layout_.final_index(size_));
  if (whole_first >= whole_end || !volume_.holes_allowed()) {
    // Everything re-sealed as zeros; blocks first, so a full disk fails before any write.
    if (const int rc = reserve_slots(fd, from / cs, (to - 1) / cs, size_); rc != 0) return rc;
    return write_zeros(fd, from, to);
  }
  if (const int rc = release_slots(fd, whole_first, whole_end, backing_mode); rc != 0) return rc;
  if (const int rc = write_zeros(fd, from, whole_first * cs); rc != 0) return rc;
  return write_zeros(fd, whole_end * cs, to);
}

int FileContent::write_zeros(int fd, std::uint64_t from, std::uint64_t to) {
  if (from >= to) return 0;
  const std::uint64_t cs = layout_.chunk_size();
  const std::uint64_t per_piece = std::max<std::uint64_t>(1, kBatchBytes / cs);
  const std::vector<std::uint8_t> zeros(
      static_cast<std::size_t>(std::min<std::uint64_t>(to - from, per_piece * cs)), 0);
  while (from < to) {
    // Pieces end on chunk boundaries, so only the range's two edge chunks are read back.
    const std::uint64_t next = std::min(to, (from / cs + per_piece) * cs);
    const ssize_t n = write_locked(
        fd, crypto::ByteView(zeros).first(static_cast<std::size_t>(next - from)), from);
    if (n < 0) return static_cast<int>(n);
    from = next;
  }
  return 0;
}

int FileContent::release_slots(int fd, std::uint64_t first, std::uint64_t end, int backing_mode) {
  // The header says "holes" before any slot reads as zeros (FORMAT.md §10). Without the
  // flag, every chunk up to the final one was sealed.
  if (const int rc = mark_has_holes(fd, layout_.final_index(size_) + 1); rc != 0) return rc;
  const auto at = static_cast<off_t>(layout_.slot_offset(first));
  const auto len = static_cast<off_t>(layout_.slot_offset(end)) - at;
  if (::fallocate(fd, backing_mode, at, len) != 0) {
    if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    // The backing file system cannot: sealed zero chunks read the same (and stay known).
    if (const int rc = reserve_slots(fd, first, end - 1, size_); rc != 0) return rc;
    return write_zeros(fd, first * layout_.chunk_size(), end * layout_.chunk_size());
  }
  std::lock_guard lock(sealed_mutex_);
  sealed_.erase(first, end);  // holes again: has-holes stays until they are written
  return 0;
}

}  // namespace wardfs::volume
