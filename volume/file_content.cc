#include "volume/file_content.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>

#include "base/posix_io.h"
#include "volume/buffer_pool.h"

namespace wardfs::volume {

namespace {

using crypto::ByteView;

// Plaintext of the old final chunk while a write moves the end of file past it: one
// chunk per thread at most, swapped with the file's tail cache.
std::vector<std::uint8_t>& scratch_old_tail() {
  thread_local std::vector<std::uint8_t> buf;
  return buf;
}

// A real sealed chunk ending in this many zero bytes has probability 2^-256.
constexpr std::size_t kTornTailSlack = 32;

}  // namespace

FileContent::FileContent(const Volume& volume) : volume_(volume), layout_(volume.layout()) {}

void FileContent::report(std::uint64_t chunk, std::string_view reason) const {
  if (reporter_) reporter_(chunk, reason);
}

void FileContent::drop_tail_cache() {
  std::unique_lock lock(io_mutex_);
  tail_index_.reset();
  std::vector<std::uint8_t>().swap(tail_plain_);
}

bool FileContent::loaded() const {
  std::shared_lock lock(io_mutex_);
  return loaded_;
}

std::uint64_t FileContent::size() const {
  std::shared_lock lock(io_mutex_);
  return size_;
}

std::size_t FileContent::chunk_plain_len(std::uint64_t index, std::uint64_t file_size) const {
  const std::uint64_t start = index * layout_.chunk_size();
  if (file_size <= start) return 0;
  return static_cast<std::size_t>(std::min<std::uint64_t>(layout_.chunk_size(), file_size - start));
}

bool FileContent::newer_than_known(std::uint32_t generation) const {
  return volume_.follows_config() && generation > volume_.keys().active_generation();
}

std::shared_ptr<const crypto::FileKeys> FileContent::keys_for(std::uint32_t generation) {
  std::lock_guard lock(keys_mutex_);
  // A retired generation must stop opening chunks at once, even in open files.
  if (const auto epoch = volume_.keys().removal_epoch(); epoch != keys_epoch_) {
    keys_.clear();
    keys_epoch_ = epoch;
  }
  for (const auto& [g, keys] : keys_) {
    if (g == generation) return keys;
  }
  auto keys = volume_.keys().file_keys(generation, header_.file_id);
  if (keys) keys_.emplace_back(generation, keys);
  return keys;
}

bool FileContent::recover_torn_tail(const crypto::FileKeys& keys, std::uint64_t index,
                                    ByteView sealed, std::span<std::uint8_t> out) {
  // A crash between "write the new tail" and "re-seal the old tail" leaves the old,
  // shorter, final chunk mid-file with zeros after it. Find its real length.
  std::size_t end = sealed.size();
  while (end > 0 && sealed[end - 1] == 0) --end;
  if (end == sealed.size()) return false;
  const std::size_t limit = std::min(sealed.size(), end + kTornTailSlack);
  for (std::size_t len = std::max(end, layout_.overhead()); len < limit; ++len) {
    const std::size_t plain_len = len - layout_.overhead();
    if (crypto::open_chunk(layout_, keys.content(), {header_.file_id, index, true},
                           sealed.first(len), out.first(plain_len))) {
      std::fill(out.begin() + static_cast<std::ptrdiff_t>(plain_len), out.end(), 0);
      return true;
    }
  }
  return false;
}

int FileContent::open_sealed(std::uint64_t index, ByteView sealed, std::uint64_t final_index,
                             std::span<std::uint8_t> out, bool* hole) {
  const bool is_final = index == final_index;
  if (hole != nullptr) *hole = false;
  if (crypto::is_all_zero(sealed)) {
    if (header_.has_holes() && !is_final) {
      std::fill(out.begin(), out.end(), 0);
      if (hole != nullptr) *hole = true;
      return 0;
    }
    report(index, "chunk is all zeros in a file without holes (zeroed or never written)");
    return -EIO;
  }
  const std::uint32_t generation = crypto::chunk_generation(sealed);
  const auto keys = keys_for(generation);
  if (!keys && newer_than_known(generation)) return -ENOKEY;
  if (!keys) {
    report(index, "chunk is sealed under key generation " + std::to_string(generation) +
                      ", which this volume no longer has");
    return -EIO;
  }
  if (crypto::open_chunk(layout_, keys->content(), {header_.file_id, index, is_final}, sealed,
                         out)) {
    return 0;
  }
  if (!is_final) {
    if (crypto::open_chunk(layout_, keys->content(), {header_.file_id, index, true}, sealed, out) ||
        recover_torn_tail(*keys, index, sealed, out)) {
      return 0;
    }
  } else if (crypto::open_chunk(layout_, keys->content(), {header_.file_id, index, false}, sealed,
                                out)) {
    std::fill(out.begin(), out.end(), 0);
    report(index, "file was cut short: its last chunk lacks the end-of-file mark");
    return -EIO;
  }
  report(index, "chunk failed authentication (modified, moved or from another file)");
  return -EIO;
}

int FileContent::read_chunk(int fd, std::uint64_t index, std::uint64_t file_size,
                            std::span<std::uint8_t> out) {
  const std::size_t plain_len = chunk_plain_len(index, file_size);
  if (index != layout_.final_index(file_size) && plain_len == 0) return -EIO;
  const ScratchBuffer scratch(plain_len + layout_.overhead());
  const auto sealed = scratch.span();
  const ssize_t n =
      pread_full(fd, sealed.data(), sealed.size(), static_cast<off_t>(layout_.slot_offset(index)));
  if (n < 0) return static_cast<int>(n);
  if (static_cast<std::size_t>(n) != sealed.size()) {
    report(index, "chunk is shorter on disk than the file size says");
    return -EIO;
  }
  return open_sealed(index, sealed, layout_.final_index(file_size), out.first(plain_len));
}

ssize_t FileContent::read(int fd, std::span<std::uint8_t> out, std::uint64_t offset) {
  std::shared_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  const std::uint64_t file_size = size_;
  if (offset >= file_size || out.empty()) return 0;
  const std::uint64_t end = std::min<std::uint64_t>(file_size, offset + out.size());
  const std::uint32_t cs = layout_.chunk_size();
  const std::uint64_t final_index = layout_.final_index(file_size);
  const std::uint64_t per_batch = std::max<std::uint64_t>(1, kBatchBytes / cs);
  std::uint64_t index = offset / cs;
  const std::uint64_t last = (end - 1) / cs;
  // With has-holes, the chunks this read authenticates count as known sealed (one insert
  // per run, not per chunk); a hole breaks the run.
  const bool track_sealed = header_.has_holes();
  std::uint64_t run_first = index;
  std::uint64_t run_end = index;
  bool hole = false;
  while (index <= last) {
    const std::uint64_t batch_last = std::min(last, index + per_batch - 1);
    const std::size_t batch_len =
        static_cast<std::size_t>((batch_last - index) * layout_.slot_size()) +
        chunk_plain_len(batch_last, file_size) + layout_.overhead();
    const ScratchBuffer scratch(batch_len);
    const auto sealed = scratch.span();
    const ssize_t n =
        pread_full(fd, sealed.data(), batch_len, static_cast<off_t>(layout_.slot_offset(index)));
    if (n < 0) return n;
    if (static_cast<std::size_t>(n) != batch_len) {
      report(index, "backing file is shorter than its size says");
      return -EIO;
    }
    for (std::uint64_t i = index; i <= batch_last; ++i) {
      const std::size_t plain_len = chunk_plain_len(i, file_size);
      const auto chunk =
          ByteView(sealed).subspan(static_cast<std::size_t>((i - index) * layout_.slot_size()),
                                   plain_len + layout_.overhead());
      const std::uint64_t chunk_start = i * cs;
      const std::uint64_t copy_from = std::max(offset, chunk_start);
      const std::uint64_t copy_to = std::min(end, chunk_start + plain_len);
      std::uint8_t* dest = out.data() + (copy_from - offset);
      if (copy_from == chunk_start && copy_to == chunk_start + plain_len) {
        // Whole chunk wanted: decrypt straight into the caller's buffer.
        if (const int rc = open_sealed(i, chunk, final_index, {dest, plain_len}, &hole); rc != 0)
          return rc;
      } else {
        const ScratchBuffer plain_scratch(plain_len);
        const auto plain = plain_scratch.span();
        if (const int rc = open_sealed(i, chunk, final_index, plain, &hole); rc != 0) return rc;
        std::memcpy(dest, plain.data() + (copy_from - chunk_start), copy_to - copy_from);
      }
      if (track_sealed && hole) {
        note_sealed(run_first, run_end);
        run_first = i + 1;
      }
      run_end = i + 1;
    }
    index = batch_last + 1;
  }
  if (track_sealed) note_sealed(run_first, run_end);
  return static_cast<ssize_t>(end - offset);
}

int FileContent::seal_and_write(
    int fd, std::uint64_t first, std::size_t count, std::uint64_t final_index,
    const std::function<ssize_t(std::uint64_t, std::span<std::uint8_t>)>& fill) {
  const std::size_t per_batch = std::max<std::size_t>(1, kBatchBytes / layout_.chunk_size());
  const std::uint32_t generation = volume_.keys().active_generation();
  const auto keys = keys_for(generation);
  if (!keys) return -EIO;
  const ScratchBuffer plain_scratch(layout_.chunk_size());
  const auto plain = plain_scratch.span();
  const ScratchBuffer sealed_scratch(std::min(per_batch, count) * layout_.slot_size());
  std::size_t done = 0;
  while (done < count) {
    const std::size_t batch = std::min(per_batch, count - done);
    const auto sealed = sealed_scratch.span().first(batch * layout_.slot_size());
    std::size_t used = 0;
    for (std::size_t k = 0; k < batch; ++k) {
      const std::uint64_t index = first + done + k;
      const ssize_t filled = fill(index, plain);
      if (filled < 0) return static_cast<int>(filled);  // nothing of this batch is written
      const auto len = static_cast<std::size_t>(filled);
      if (len > layout_.chunk_size()) return -EIO;
      used = k * layout_.slot_size() + len + layout_.overhead();
      crypto::seal_chunk(layout_, keys->content(), generation,
                         {header_.file_id, index, index == final_index}, ByteView(plain).first(len),
                         sealed.subspan(k * layout_.slot_size(), len + layout_.overhead()));
    }
    const ssize_t n =
        pwrite_full(fd, sealed.data(), used, static_cast<off_t>(layout_.slot_offset(first + done)));
    if (n < 0) return static_cast<int>(n);
    done += batch;
  }
  return 0;
}

int FileContent::mark_has_holes(int fd, std::uint64_t sealed_end) {
  if (header_.has_holes()) return 0;
  crypto::FileHeader updated = header_;
  updated.flags |= crypto::kHeaderHasHoles;
  const auto keys = keys_for(updated.generation);
  if (!keys) return -EIO;
  const auto raw = crypto::encode_header(updated, *keys);
  const ssize_t n = pwrite_full(fd, raw.data(), raw.size(), 0);
  if (n < 0) return static_cast<int>(n);
  header_ = updated;
  // Without the flag every chunk up to the old tail had to be sealed: all known.
  reset_sealed(sealed_end);
  return 0;
}

void FileContent::note_sealed(std::uint64_t first, std::uint64_t end) {
  if (first >= end) return;
  std::lock_guard lock(sealed_mutex_);
  sealed_.insert(first, end);
}

void FileContent::reset_sealed(std::uint64_t known_end) {
  std::lock_guard lock(sealed_mutex_);
  sealed_.clear();
  sealed_.insert(0, known_end);
}

void FileContent::clear_has_holes_if_filled(int fd) {
  // Holding io_mutex_ exclusively, after the chunk writes that may have filled the last
  // hole: the header goes after them, never before (FORMAT.md §10).
  if (!header_.has_holes()) return;
  {
    std::lock_guard lock(sealed_mutex_);
    if (!sealed_.covers_prefix(layout_.final_index(size_))) return;
  }
  const auto keys = keys_for(header_.generation);
  if (!keys) return;
  // Another writer of the same backing file (another mount) may have moved its end or
  // set the flag anew: then what this daemon knows is stale, and the flag stays.
  crypto::RawHeader on_disk{};
  struct stat st {};
  const bool unchanged =
      pread_full(fd, on_disk.data(), on_disk.size(), 0) == static_cast<ssize_t>(on_disk.size()) &&
      on_disk == crypto::encode_header(header_, *keys) && ::fstat(fd, &st) == 0 &&
      static_cast<std::uint64_t>(st.st_size) == layout_.backing_size(size_);
  if (unchanged) {
    crypto::FileHeader updated = header_;
    updated.flags &= static_cast<std::uint16_t>(~crypto::kHeaderHasHoles);
    const auto raw = crypto::encode_header(updated, *keys);
    // A failed write keeps the flag, which is never wrong; the next write tries again.
    if (pwrite_full(fd, raw.data(), raw.size(), 0) != static_cast<ssize_t>(raw.size())) return;
    header_ = updated;
  }
  reset_sealed(0);
}

int FileContent::reserve_slots(int fd, std::uint64_t first, std::uint64_t last,
                               std::uint64_t new_size) {
  // A write that runs out of space part way leaves a chunk half new, half old: EIO. So the
  // slots it will write are allocated up front (without changing the size; holes elsewhere
  // stay sparse), and a full disk is ENOSPC before anything is written. Where the backing
  // file system cannot preallocate, the write goes ahead as before.
  const std::uint64_t from = layout_.slot_offset(first);
  const std::uint64_t to = std::min(layout_.slot_offset(last + 1), layout_.backing_size(new_size));
  if (to <= from) return 0;
  if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                  static_cast<off_t>(to - from)) == 0)
    return 0;
  // EFBIG: past the file system's (or the caller's RLIMIT_FSIZE) largest file, which the
  // write itself would hit part way.
  return errno == ENOSPC || errno == EDQUOT || errno == EFBIG ? -errno : 0;
}

int FileContent::reserve_for_write(int fd, std::uint64_t first, std::uint64_t last,
                                   std::uint64_t old_size, std::uint64_t new_size) {
  // Only a chunk overwritten in place can be torn by a full disk. Slots wholly past the
  // old end are cut away again by cut_back_failed_extend, and so is the empty file's
  // chunk, which it seals anew. In-place slots need no blocks unless the file has holes.
  // This saves a fallocate per write for new files, appends and most overwrites.
  const std::uint64_t from = layout_.slot_offset(first);
  const std::uint64_t to = std::min(layout_.slot_offset(last + 1), layout_.backing_size(new_size));
  const std::uint64_t old_end = layout_.backing_size(old_size);
  const bool only_new_space = from >= old_end || old_size == 0;
  const bool only_allocated = to <= old_end && !header_.has_holes();
  if (only_new_space || only_allocated) return 0;
  return reserve_slots(fd, first, last, new_size);
}

int FileContent::write_empty_chunk(int fd) {
  const auto keys = keys_for(header_.generation);
  std::vector<std::uint8_t> sealed(layout_.overhead());
  crypto::seal_chunk(layout_, keys->content(), header_.generation, {header_.file_id, 0, true}, {},
                     sealed);
  const ssize_t n = pwrite_full(fd, sealed.data(), sealed.size(), crypto::kHeaderSize);
  return n < 0 ? static_cast<int>(n) : 0;
}

int FileContent::cut_back_failed_extend(int fd, std::uint64_t old_size, int rc) {
  // A write past the end that failed part way (ENOSPC, EIO) can leave some of its new slots
  // on disk, and with them a backing size that is invalid or ends in an unflagged chunk: the
  // whole file would read as EIO from its next open. Cutting the backing file back to the
  // old size keeps it what it was (a chunk the write overwrote in place may still be lost,
  // but never the empty file's, which is sealed again: its blocks are the header's).
  const auto want = static_cast<off_t>(layout_.backing_size(old_size));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > want) (void)::ftruncate(fd, want);
  if (old_size == 0) (void)write_empty_chunk(fd);
  return rc;
}

int FileContent::fill_gap(int fd, std::uint64_t first, std::uint64_t end) {
  // Chunks [first, end) lie wholly inside a gap the caller is about to create.
  if (first >= end) return 0;
  if (volume_.holes_allowed()) return mark_has_holes(fd, first);
  struct statvfs vfs {};
  if (::fstatvfs(fd, &vfs) == 0) {
    const long double need = static_cast<long double>(end - first) * layout_.slot_size();
    if (need > static_cast<long double>(vfs.f_bavail) * vfs.f_frsize) return -ENOSPC;
  }
  return seal_and_write(fd, first, static_cast<std::size_t>(end - first), UINT64_MAX,
                        [&](std::uint64_t, std::span<std::uint8_t> plain) -> ssize_t {
                          std::fill(plain.begin(), plain.end(), 0);
                          return static_cast<ssize_t>(plain.size());
                        });
}

ssize_t FileContent::write(int fd, ByteView data, std::uint64_t offset) {
  std::unique_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  return write_locked(fd, data, offset == kAppendOffset ? size_ : offset);
}

ssize_t FileContent::write_locked(int fd, ByteView data, std::uint64_t offset) {
  if (data.empty()) return 0;
  if (offset > kMaxPlainSize || data.size() > kMaxPlainSize - offset) return -EFBIG;
  const std::uint32_t cs = layout_.chunk_size();
  const std::uint64_t old_size = size_;
  const std::uint64_t end = offset + data.size();
  const std::uint64_t new_size = std::max(old_size, end);
  const std::uint64_t old_final = layout_.final_index(old_size);
  const std::uint64_t new_final = layout_.final_index(new_size);
  const std::uint64_t first = offset / cs;
  const std::uint64_t last = (end - 1) / cs;

  // Blocks first, so a full disk fails the write before it has torn a chunk.
  if (const int rc = reserve_for_write(fd, first, last, old_size, new_size); rc != 0) return rc;
  if (new_final > old_final && old_final < first) {  // the old tail is re-sealed in full
    if (const int rc = reserve_for_write(fd, old_final, old_final, old_size, new_size); rc != 0)
      return rc;
  }
  // Holes are announced in the header before the gap exists (or filled, if not allowed).
  if (const int rc = fill_gap(fd, old_final + 1, first); rc != 0)
    return cut_back_failed_extend(fd, old_size, rc);

  // An append past the old final chunk re-seals it below. Its plaintext is usually in
  // the tail cache, which fill() is about to overwrite: keep it, and skip a pread and
  // a decryption per appending write (measured: docs/PERFORMANCE.md).
  const bool reseal_old_final = new_final > old_final && old_final < first;
  auto& old_tail = scratch_old_tail();
  const bool old_tail_cached = reseal_old_final && tail_index_ == old_final &&
                               tail_plain_.size() == chunk_plain_len(old_final, old_size);
  if (old_tail_cached) old_tail.swap(tail_plain_);

  auto fill = [&](std::uint64_t index, std::span<std::uint8_t> plain) -> ssize_t {
    const std::size_t len = chunk_plain_len(index, new_size);
    const std::uint64_t chunk_start = index * cs;
    const std::uint64_t from = std::max(offset, chunk_start);
    const std::uint64_t to = std::min(end, chunk_start + len);
    const bool covered = from == chunk_start && to == chunk_start + len;
    const std::size_t old_len = chunk_plain_len(index, old_size);
    if (!covered && old_len > 0) {
      if (tail_index_ == index && tail_plain_.size() == old_len) {
        std::memcpy(plain.data(), tail_plain_.data(), old_len);
      } else if (const int rc = read_chunk(fd, index, old_size, plain); rc != 0) {
        return rc;
      }
    }
    if (!covered)
      std::fill(plain.begin() + static_cast<std::ptrdiff_t>(old_len), plain.begin() + len, 0);
    std::memcpy(plain.data() + (from - chunk_start), data.data() + (from - offset), to - from);
    if (index == new_final)
      tail_plain_.assign(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(len));
    return static_cast<ssize_t>(len);
  };
  int rc = seal_and_write(fd, first, static_cast<std::size_t>(last - first + 1), new_final, fill);
  if (rc != 0) {
    tail_index_.reset();
    return cut_back_failed_extend(fd, old_size, rc);
  }
  // fill() refreshed tail_plain_ when this write reached the final chunk.
  if (last == new_final) tail_index_ = new_final;

  // The old final chunk now sits mid-file: pad it and drop its end-of-file mark, after
  // the new tail is on disk, so a crash in between never looks like a truncation.
  if (reseal_old_final) {
    rc = seal_and_write(fd, old_final, 1, new_final,
                        [&](std::uint64_t index, std::span<std::uint8_t> plain) -> ssize_t {
                          const std::size_t old_len = chunk_plain_len(index, old_size);
                          if (old_tail_cached) {
                            // An empty cached tail has no storage: memcpy wants non-null even for
                            // 0.
                            if (old_len > 0) std::memcpy(plain.data(), old_tail.data(), old_len);
                          } else if (old_len > 0) {
                            if (const int r = read_chunk(fd, index, old_size, plain); r != 0)
                              return r;
                          }
                          std::fill(plain.begin() + static_cast<std::ptrdiff_t>(old_len),
                                    plain.end(), 0);
                          return static_cast<ssize_t>(plain.size());
                        });
    if (rc != 0) {
      tail_index_.reset();
      return cut_back_failed_extend(fd, old_size, rc);
    }
  }
  size_ = new_size;
  if (header_.has_holes()) {
    note_sealed(first, last + 1);
    if (reseal_old_final) note_sealed(old_final, old_final + 1);
    clear_has_holes_if_filled(fd);
  }
  return static_cast<ssize_t>(data.size());
}

int FileContent::truncate(int fd, std::uint64_t new_size) {
  std::unique_lock lock(io_mutex_);
  if (!loaded_) return -EIO;
  return truncate_locked(fd, new_size);
}

int FileContent::truncate_locked(int fd, std::uint64_t new_size) {
  if (new_size > kMaxPlainSize) return -EFBIG;
  const std::uint64_t old_size = size_;
  if (new_size == old_size) return 0;
  const std::uint64_t new_final = layout_.final_index(new_size);
  const std::uint64_t cs = layout_.chunk_size();
  if (new_size > old_size) {
    // Zero-fill only the new final chunk's part; everything before it is a gap.
    const std::uint64_t from = std::max(old_size, new_final * cs);
    const std::vector<std::uint8_t> zeros(static_cast<std::size_t>(new_size - from), 0);
    const ssize_t n = write_locked(fd, zeros, from);
    return n < 0 ? static_cast<int>(n) : 0;
  }
  const std::size_t keep = chunk_plain_len(new_final, new_size);
  std::vector<std::uint8_t> plain(cs);
  if (chunk_plain_len(new_final, old_size) > 0) {
    if (const int rc = read_chunk(fd, new_final, old_size, plain); rc != 0) return rc;
  }
  tail_index_.reset();
  const std::uint64_t slot = layout_.slot_offset(new_final);
  const int rc = seal_and_write(fd, new_final, 1, new_final,
                                [&](std::uint64_t, std::span<std::uint8_t> out) -> ssize_t {
                                  std::memcpy(out.data(), plain.data(), keep);
                                  return static_cast<ssize_t>(keep);
                                });
  if (rc != 0) return rc;
  // Zero the rest of the old slot before cutting the file: if a crash lands between
  // the two, the shortened chunk reads back as a torn tail instead of failing.
  const std::uint64_t sealed_end = slot + keep + layout_.overhead();
  const std::uint64_t old_end =
      std::min(layout_.backing_size(old_size), slot + layout_.slot_size());
  if (layout_.final_index(old_size) != new_final && old_end > sealed_end) {
    const std::vector<std::uint8_t> zeros(static_cast<std::size_t>(old_end - sealed_end), 0);
    const ssize_t n = pwrite_full(fd, zeros.data(), zeros.size(), static_cast<off_t>(sealed_end));
    if (n < 0) return static_cast<int>(n);
  }
  if (::ftruncate(fd, static_cast<off_t>(layout_.backing_size(new_size))) != 0) return -errno;
  size_ = new_size;
  tail_plain_.assign(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(keep));
  tail_index_ = new_final;
  if (header_.has_holes()) {
    {
      // The slots past the new tail are gone; the tail itself was just re-sealed.
      std::lock_guard sealed_lock(sealed_mutex_);
      sealed_.trim(new_final);
      sealed_.insert(new_final, new_final + 1);
    }
    clear_has_holes_if_filled(fd);
  }
  return 0;
}

}  // namespace wardfs::volume
