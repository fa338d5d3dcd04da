// FileContent's rotation support: counting generations and re-sealing old chunks.
#include <algorithm>
#include <cerrno>

#include "base/posix_io.h"
#include "volume/file_content.h"

namespace wardfs::volume {

namespace {
constexpr std::size_t kRekeyBatchBytes = 256 * 1024;

std::vector<std::uint8_t>& rekey_buffer() {
  thread_local std::vector<std::uint8_t> buf;
  return buf;
}
}  // namespace

void GenerationCounts::add(const GenerationCounts& other) {
  for (const auto& [g, n] : other.chunks) chunks[g] += n;
  for (const auto& [g, n] : other.headers) headers[g] += n;
  holes += other.holes;
}

int FileContent::scan(int fd, GenerationCounts& out) {
  std::shared_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  out.headers[header_.generation]++;
  const std::uint64_t final_index = layout_.final_index(size_);
  const std::uint64_t per_batch =
      std::max<std::uint64_t>(1, kRekeyBatchBytes / layout_.slot_size());
  auto& buf = rekey_buffer();
  for (std::uint64_t index = 0; index <= final_index; index += per_batch) {
    const std::uint64_t last = std::min(final_index, index + per_batch - 1);
    const std::size_t len = static_cast<std::size_t>((last - index) * layout_.slot_size()) +
                            chunk_plain_len(last, size_) + layout_.overhead();
    if (buf.size() < len) buf.resize(len);
    const ssize_t n =
        pread_full(fd, buf.data(), len, static_cast<off_t>(layout_.slot_offset(index)));
    if (n < 0) return static_cast<int>(n);
    if (static_cast<std::size_t>(n) != len) return -EIO;
    for (std::uint64_t i = index; i <= last; ++i) {
      const auto slot =
          crypto::ByteView(buf).subspan(static_cast<std::size_t>((i - index) * layout_.slot_size()),
                                        chunk_plain_len(i, size_) + layout_.overhead());
      if (crypto::is_all_zero(slot)) {
        out.holes++;
      } else {
        out.chunks[crypto::chunk_generation(slot)]++;
      }
    }
  }
  return 0;
}

int FileContent::rekey(int fd, const std::function<void(std::uint64_t)>& on_batch) {
  const std::uint64_t per_batch =
      std::max<std::uint64_t>(1, kRekeyBatchBytes / layout_.slot_size());
  std::vector<std::uint8_t> plain(layout_.chunk_size());
  for (std::uint64_t index = 0;; index += per_batch) {
    std::uint64_t covered = 0;
    {
      std::unique_lock lock(io_mutex_);
      if (!loaded_) return -EIO;
      const std::uint32_t target = volume_.keys().active_generation();
      const auto keys = keys_for(target);
      if (!keys) return -EIO;
      const std::uint64_t final_index = layout_.final_index(size_);
      if (index > final_index) {
        if (header_.generation == target) return 0;
        crypto::FileHeader updated = header_;
        updated.generation = target;
        const auto raw = crypto::encode_header(updated, *keys);
        const ssize_t n = pwrite_full(fd, raw.data(), raw.size(), 0);
        if (n < 0) return static_cast<int>(n);
        header_ = updated;
        return 0;
      }
      const std::uint64_t last = std::min(final_index, index + per_batch - 1);
      const std::size_t len = static_cast<std::size_t>((last - index) * layout_.slot_size()) +
                              chunk_plain_len(last, size_) + layout_.overhead();
      auto& buf = rekey_buffer();
      if (buf.size() < len) buf.resize(len);
      const ssize_t n =
          pread_full(fd, buf.data(), len, static_cast<off_t>(layout_.slot_offset(index)));
      if (n < 0) return static_cast<int>(n);
      if (static_cast<std::size_t>(n) != len) return -EIO;
      for (std::uint64_t i = index; i <= last; ++i) {
        const std::size_t plain_len = chunk_plain_len(i, size_);
        const std::span<std::uint8_t> slot(buf.data() + (i - index) * layout_.slot_size(),
                                           plain_len + layout_.overhead());
        if (crypto::is_all_zero(slot) || crypto::chunk_generation(slot) == target) continue;
        if (const int rc = open_sealed(i, slot, final_index, {plain.data(), plain_len}); rc != 0)
          return rc;
        crypto::seal_chunk(layout_, keys->content(), target, {header_.file_id, i, i == final_index},
                           crypto::ByteView(plain).first(plain_len), slot);
        // Chunk by chunk, never the whole batch: rewriting a hole's zeros would fill it.
        const ssize_t w =
            pwrite_full(fd, slot.data(), slot.size(), static_cast<off_t>(layout_.slot_offset(i)));
        if (w < 0) return static_cast<int>(w);
      }
      covered = len;
    }
    if (on_batch) on_batch(covered);
  }
}

}  // namespace wardfs::volume
