// How a file's content becomes known: a new file is formatted, an existing one is loaded
// (header authenticated, size learned from the backing size), and loaded again when
// another mount may have changed it.
#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <string>

#include "base/posix_io.h"
#include "volume/file_content.h"

namespace wardfs::volume {

int FileContent::create(int fd) {
  std::unique_lock lock(io_mutex_);
  header_ = {};
  header_.file_id = crypto::random_file_id();
  header_.generation = volume_.keys().active_generation();
  keys_.clear();
  const auto keys = keys_for(header_.generation);
  // Header and empty chunk in one write (write_empty_chunk seals the same chunk alone).
  std::vector<std::uint8_t> buf(crypto::kHeaderSize + layout_.overhead());
  const auto raw = crypto::encode_header(header_, *keys);
  std::copy(raw.begin(), raw.end(), buf.begin());
  crypto::seal_chunk(layout_, keys->content(), header_.generation, {header_.file_id, 0, true}, {},
                     std::span(buf).subspan(crypto::kHeaderSize));
  const ssize_t n = pwrite_full(fd, buf.data(), buf.size(), 0);
  if (n < 0) return static_cast<int>(n);
  size_ = 0;
  tail_index_ = 0;
  tail_plain_.clear();
  reset_sealed(0);
  loaded_ = true;
  return 0;
}

namespace {
std::array<std::int64_t, 5> stamp_of(const struct stat& st) {
  return {st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

// The backing file's size and times as the server has them now, not as this machine's
// client cached them: a network file system behind FUSE (GlusterFS) or NFS keeps
// attributes for a while, and another machine's write would read short. FORCE_SYNC costs
// a round trip there and nothing on a local disk.
int fresh_stat(int fd, struct stat& st) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_SIZE | STATX_MTIME | STATX_CTIME,
              &stx) != 0) {
    return ::fstat(fd, &st) == 0 ? 0 : -errno;
  }
  st = {};
  st.st_size = static_cast<off_t>(stx.stx_size);
  st.st_mtim = {stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec};
  st.st_ctim = {stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec};
  return 0;
}

// The header read alone makes the kernel read ahead only a few pages, and the first READ
// of a small file then waits for a second disk read. Asking for a small file whole makes
// it one disk read, as for a plain file read from the start; a larger file is left to the
// kernel's readahead, which a writer that never reads would otherwise pay for.
void prefetch_small_file(int fd, off_t size) {
  constexpr off_t kSmallFileBytes = 256 * 1024;
  if (size > 0 && size <= kSmallFileBytes) (void)::posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED);
}
}  // namespace

int FileContent::load(int fd) {
  std::unique_lock lock(io_mutex_);
  if (loaded_) return 0;
  return load_locked(fd);
}

int FileContent::reload_if_changed(int fd) {
  std::unique_lock lock(io_mutex_);
  struct stat st {};
  if (const int rc = fresh_stat(fd, st); rc != 0) return rc;
  if (loaded_ && stamp_of(st) == loaded_stamp_) return 0;
  loaded_ = false;
  // The stat just taken serves the load too: on a network file system it is a round trip.
  const int rc = load_locked(fd, st);
  return rc == 0 ? 1 : rc;
}

int FileContent::reload(int fd) {
  std::unique_lock lock(io_mutex_);
  loaded_ = false;
  return load_locked(fd);
}

int FileContent::load_locked(int fd) {
  struct stat st {};
  if (const int rc = fresh_stat(fd, st); rc != 0) return rc;
  return load_locked(fd, st);
}

int FileContent::load_locked(int fd, const struct stat& st) {
  prefetch_small_file(fd, st.st_size);
  crypto::RawHeader raw{};
  const ssize_t n = pread_full(fd, raw.data(), raw.size(), 0);
  if (n < 0) return static_cast<int>(n);
  if (static_cast<std::size_t>(n) < raw.size()) {
    report(kHeaderChunk, "backing file is shorter than a header (cut or never written)");
    return -EIO;
  }
  crypto::FileHeader header;
  if (crypto::parse_header(raw, header) != crypto::HeaderStatus::ok) {
    report(kHeaderChunk, "file header is malformed or has an unknown version");
    return -EIO;
  }
  header_ = header;
  keys_.clear();
  const auto keys = keys_for(header.generation);
  if (!keys && newer_than_known(header.generation)) return -ENOKEY;
  if (!keys) {
    report(kHeaderChunk, "file header names key generation " + std::to_string(header.generation) +
                             ", which this volume no longer has");
    return -EIO;
  }
  if (!crypto::verify_header_tag(raw, *keys)) {
    report(kHeaderChunk, "file header failed authentication");
    return -EIO;
  }
  const auto plain = layout_.plaintext_size(static_cast<std::uint64_t>(st.st_size));
  if (!plain) {
    report(kHeaderChunk, "backing file size " + std::to_string(st.st_size) +
                             " is not a whole number of chunks (cut mid-chunk)");
    return -EIO;
  }
  if (*plain == 0) {
    // An empty file still holds one sealed, final, empty chunk: a file cut down to
    // exactly that size must not pass for an empty one.
    std::array<std::uint8_t, crypto::kGenerationSize + 24 + crypto::kAeadTagSize> sealed{};
    const auto slot = std::span(sealed).first(layout_.overhead());
    const ssize_t got =
        pread_full(fd, slot.data(), slot.size(), static_cast<off_t>(layout_.slot_offset(0)));
    if (got < 0) return static_cast<int>(got);
    if (static_cast<std::size_t>(got) != slot.size() || open_sealed(0, slot, 0, {}) != 0) {
      report(0,
             "the empty file's end-of-file chunk is missing or fails authentication (cut short?)");
      return -EIO;
    }
  }
  size_ = *plain;
  tail_index_.reset();
  reset_sealed(0);  // nothing is known of a file's chunks until they are written or read
  loaded_stamp_ = stamp_of(st);
  loaded_ = true;
  return 0;
}

}  // namespace wardfs::volume
