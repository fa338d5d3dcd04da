// The whole-file check behind fsck: every chunk through the same open_sealed() a read
// uses, so fsck accepts exactly what a reader accepts (torn tails, holes, final flags).
#include <algorithm>
#include <cerrno>
#include <utility>

#include "base/posix_io.h"
#include "volume/file_content.h"

namespace wardfs::volume {

int FileContent::check_all(int fd, ContentCheck& out, bool clear_unneeded_holes,
                           const IntegrityReporter& sink) {
  std::unique_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  // Readers use reporter_ holding the lock shared; no one does while this holds it.
  IntegrityReporter own = std::exchange(reporter_, sink);
  struct Restore {
    IntegrityReporter& slot;
    IntegrityReporter& saved;
    ~Restore() { slot = std::move(saved); }
  } restore{reporter_, own};
  out.plain_size = size_;
  out.had_holes_flag = header_.has_holes();
  const std::uint64_t final_index = layout_.final_index(size_);
  const std::uint64_t per_batch = std::max<std::uint64_t>(1, kBatchBytes / layout_.slot_size());
  std::vector<std::uint8_t> sealed;
  std::vector<std::uint8_t> plain(layout_.chunk_size());
  for (std::uint64_t index = 0; index <= final_index; index += per_batch) {
    const std::uint64_t last = std::min(final_index, index + per_batch - 1);
    const std::size_t len = static_cast<std::size_t>((last - index) * layout_.slot_size()) +
                            chunk_plain_len(last, size_) + layout_.overhead();
    sealed.resize(len);
    const ssize_t n =
        pread_full(fd, sealed.data(), len, static_cast<off_t>(layout_.slot_offset(index)));
    if (n < 0) return static_cast<int>(n);
    if (static_cast<std::size_t>(n) != len) {
      report(index, "backing file is shorter than its size says");
      ++out.failures;
      return 0;
    }
    for (std::uint64_t i = index; i <= last; ++i) {
      const std::size_t plain_len = chunk_plain_len(i, size_);
      const auto chunk = crypto::ByteView(sealed).subspan(
          static_cast<std::size_t>((i - index) * layout_.slot_size()),
          plain_len + layout_.overhead());
      bool hole = false;
      const int rc = open_sealed(i, chunk, final_index, std::span(plain).first(plain_len), &hole);
      if (rc == -ENOKEY) {
        report(i, "chunk is sealed under a key generation newer than this mount has followed");
      }
      if (rc != 0) {
        ++out.failures;
      } else if (hole) {
        ++out.holes;
      } else {
        ++out.chunks;
      }
    }
  }
  if (clear_unneeded_holes && out.had_holes_flag && out.holes == 0 && out.failures == 0) {
    // Every slot before the final chunk just authenticated as a sealed chunk: exactly the
    // set a writer needs before it drops the flag.
    note_sealed(0, final_index);
    clear_has_holes_if_filled(fd);
    out.cleared_holes_flag = !header_.has_holes();
  }
  return 0;
}

}  // namespace wardfs::volume
