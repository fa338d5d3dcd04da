// copy_file_range inside one volume: the plaintext moves through the daemon in large
// blocks, never through the kernel's page cache, and never leaves the engine unsealed.
//
// Each block is one read() of the source and then one write() of the destination, so the
// destination's header, has-holes flag, final-chunk marks, size, tail cache and key
// generation follow the one write path there is. Only one file's lock is held at a time
// (the source's shared lock for the read, then the destination's exclusive lock for the
// write), so copies A->B and B->A running at once cannot deadlock, and a concurrent writer
// of either file waits at most one block. A block is therefore exactly as atomic as a
// read() followed by a write(): what the kernel's own fallback copy would give, and what
// local filesystems give for copy_file_range too. Holes in the source are written as
// sealed zeros in the destination.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

#include "volume/buffer_pool.h"
#include "volume/file_content.h"

namespace wardfs::volume {

ssize_t FileContent::copy_to(int fd, std::uint64_t offset, FileContent& dest, int dest_fd,
                             std::uint64_t dest_offset, std::uint64_t len) {
  const std::uint64_t size_now = size();
  if (offset >= size_now || len == 0) return 0;
  const std::uint64_t want =
      std::min<std::uint64_t>({len, size_now - offset, static_cast<std::uint64_t>(SSIZE_MAX)});
  // The kernel refuses overlapping ranges in one file before asking; a block written
  // over source bytes not yet read would copy the copy.
  if (&dest == this && offset < dest_offset + want && dest_offset < offset + want) return -EINVAL;
  if (dest_offset > kMaxPlainSize || want > kMaxPlainSize - dest_offset) return -EFBIG;

  // Blocks end on the destination's chunk boundaries, so only the first and last chunks
  // of the whole range are read back and re-sealed there, not two per block.
  const std::uint64_t cs = layout_.chunk_size();
  const std::uint64_t per_block = std::max<std::uint64_t>(1, kBatchBytes / cs);
  const ScratchBuffer buf(static_cast<std::size_t>(std::min<std::uint64_t>(want, per_block * cs)));
  std::uint64_t done = 0;
  while (done < want) {
    const std::uint64_t to = dest_offset + done;
    const auto block =
        static_cast<std::size_t>(std::min(want - done, (to / cs + per_block) * cs - to));
    const ssize_t got = read(fd, {buf.data(), block}, offset + done);
    if (got <= 0) {  // an error, or the source was cut short meanwhile
      if (got < 0 && done == 0) return got;
      break;
    }
    const ssize_t put = dest.write(dest_fd, {buf.data(), static_cast<std::size_t>(got)}, to);
    if (put < 0) {
      if (done == 0) return put;
      break;
    }
    done += static_cast<std::uint64_t>(put);
    if (put < got) break;
  }
  return static_cast<ssize_t>(done);
}

}  // namespace wardfs::volume
