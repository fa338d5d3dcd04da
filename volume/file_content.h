// Chunked, authenticated file contents over a backing file descriptor: the engine
// behind read, write and truncate. One FileContent exists per backing inode, so hard
// links and concurrent opens share its lock, header and tail cache.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string_view>
#include <vector>

#include "crypto/file_format.h"
#include "volume/chunk_intervals.h"
#include "volume/rw_lock.h"
#include "volume/shared_gate.h"
#include "volume/volume.h"

namespace wardfs::volume {

// Called on every integrity failure with the chunk index (kHeaderChunk for the
// header or the file's size) and a reason; the FUSE layer adds the plaintext path.
inline constexpr std::uint64_t kHeaderChunk = UINT64_MAX;
// Passed as the offset of write(): append at the current end of file, atomically.
inline constexpr std::uint64_t kAppendOffset = UINT64_MAX;
// Reads and writes move at most this much backing data per pread/pwrite.
inline constexpr std::size_t kBatchBytes = 1 << 20;
inline constexpr std::uint64_t kMaxPlainSize = std::uint64_t{1} << 60;
using IntegrityReporter = std::function<void(std::uint64_t chunk, std::string_view reason)>;

// How many chunks (and headers) of a file each key generation sealed.
struct GenerationCounts {
  std::map<std::uint32_t, std::uint64_t> chunks;
  std::map<std::uint32_t, std::uint64_t> headers;
  std::uint64_t holes = 0;
  void add(const GenerationCounts& other);
};

// What FileContent::check_all found in one file.
struct ContentCheck {
  std::uint64_t plain_size = 0;
  std::uint64_t chunks = 0;    // sealed chunks that authenticated
  std::uint64_t holes = 0;     // all-zero slots read as holes (has-holes files only)
  std::uint64_t failures = 0;  // chunks that did not authenticate
  bool had_holes_flag = false;
  bool cleared_holes_flag = false;
};

class FileContent {
 public:
  explicit FileContent(const Volume& volume);

  // Formats a new, empty backing file: header and one sealed empty final chunk.
  int create(int fd);
  // Reads and authenticates the header and learns the size; cheap once loaded.
  int load(int fd);
  bool loaded() const;
  // For a mount that never writes (read-only, beside a writer elsewhere): loads the file
  // again when its backing file changed since it was loaded, so each open sees what
  // another mount last closed (close-to-open). 1 when it reloaded, 0 when unchanged,
  // else -errno as load().
  int reload_if_changed(int fd);
  // Forgets what it knew of the file and loads it again (-o shared: another mount may
  // have written it since). 0 or -errno as load().
  int reload(int fd);
  // -o shared: where this daemon's threads meet other mounts' lock on the file. Taken
  // before any of FileContent's own locks.
  SharedFileGate& shared_gate() { return shared_gate_; }
  // Frees the cached plaintext of the final chunk (a handle closed): kept for every file
  // the kernel still knows, 20,000 small files written and closed held 80 MiB of it.
  void drop_tail_cache();

  // All return bytes transferred or -errno. Reads stop at end of file.
  ssize_t read(int fd, std::span<std::uint8_t> out, std::uint64_t offset);
  ssize_t write(int fd, crypto::ByteView data, std::uint64_t offset);
  int truncate(int fd, std::uint64_t size);
  // fallocate(PUNCH_HOLE | KEEP_SIZE): [offset, offset + len) within the file reads as
  // zeros; whole chunk slots before the final chunk become holes and free their blocks
  // (FORMAT.md §4.6.2). The size never changes.
  int punch_hole(int fd, std::uint64_t offset, std::uint64_t len);
  // fallocate(ZERO_RANGE): as punch_hole, but whole slots stay allocated; without
  // keep_size a range past the end grows the file as a truncate up would.
  int zero_range(int fd, std::uint64_t offset, std::uint64_t len, bool keep_size);
  std::uint64_t size() const;
  // copy_file_range: copies plaintext [offset, offset + len) of this file to `dest` at
  // dest_offset (file_copy.cc). Returns bytes copied, short at this file's end (0 at or
  // past it), or -errno; an error after some blocks were copied returns their count, as a
  // read() would. The same file with overlapping ranges is -EINVAL.
  ssize_t copy_to(int fd, std::uint64_t offset, FileContent& dest, int dest_fd,
                  std::uint64_t dest_offset, std::uint64_t len);

  // Counts the generations in use, reading slot headers only (no decryption).
  int scan(int fd, GenerationCounts& out);
  // Re-seals every chunk (and the header) still under an older generation with the
  // active one. Works a batch at a time under the write lock, so concurrent writers
  // wait at most one batch; after each batch, outside the lock, on_batch gets the
  // backing bytes it covered (for progress and throttling). Idempotent and resumable.
  int rekey(int fd, const std::function<void(std::uint64_t)>& on_batch);

  // fsck (volume/file_check.cc): authenticates every chunk up to the final one, reporting
  // each failure to `sink` (not to this object's reporter: a live filesystem's object is
  // shared) and going on with the next chunk. With clear_unneeded_holes, a has-holes flag
  // is cleared when every slot before the final chunk proved sealed (the writer's own
  // rule, FORMAT.md §4.6.1). Holds the write lock throughout, so a live filesystem's
  // writers never show fsck a half-written file. 0 or -errno (I/O only).
  int check_all(int fd, ContentCheck& out, bool clear_unneeded_holes,
                const IntegrityReporter& sink);

  void set_reporter(IntegrityReporter reporter) { reporter_ = std::move(reporter); }
  const crypto::FileHeader& header() const { return header_; }

 private:
  struct ChunkSpan {
    std::uint64_t index;
    std::size_t plain_len;
  };
  std::shared_ptr<const crypto::FileKeys> keys_for(std::uint32_t generation);
  // *hole (when given) tells a hole read as zeros from a chunk that authenticated.
  int open_sealed(std::uint64_t index, crypto::ByteView sealed, std::uint64_t final_index,
                  std::span<std::uint8_t> out, bool* hole = nullptr);
  bool recover_torn_tail(const crypto::FileKeys& keys, std::uint64_t index, crypto::ByteView sealed,
                         std::span<std::uint8_t> out);
  int read_chunk(int fd, std::uint64_t index, std::uint64_t file_size, std::span<std::uint8_t> out);
  ssize_t write_locked(int fd, crypto::ByteView data, std::uint64_t offset);
  int truncate_locked(int fd, std::uint64_t new_size);
  // Makes plaintext [from, to) (within the file) read as zeros; backing_mode is the
  // fallocate mode that turns whole slots into holes on the backing file.
  int zero_locked(int fd, std::uint64_t from, std::uint64_t to, int backing_mode);
  int write_zeros(int fd, std::uint64_t from, std::uint64_t to);
  int release_slots(int fd, std::uint64_t first, std::uint64_t end, int backing_mode);
  int fill_gap(int fd, std::uint64_t first, std::uint64_t end);
  int seal_and_write(int fd, std::uint64_t first, std::size_t count, std::uint64_t final_index,
                     const std::function<ssize_t(std::uint64_t, std::span<std::uint8_t>)>& fill);
  int mark_has_holes(int fd, std::uint64_t sealed_end);
  void note_sealed(std::uint64_t first, std::uint64_t end);
  void reset_sealed(std::uint64_t known_end);
  void clear_has_holes_if_filled(int fd);
  int cut_back_failed_extend(int fd, std::uint64_t old_size, int rc);
  int reserve_slots(int fd, std::uint64_t first, std::uint64_t last, std::uint64_t new_size);
  // reserve_slots where a write growing the file from old_size could tear a chunk.
  int reserve_for_write(int fd, std::uint64_t first, std::uint64_t last, std::uint64_t old_size,
                        std::uint64_t new_size);
  // The empty file's one chunk (sealed, empty, final) at its place after the header.
  int write_empty_chunk(int fd);
  void report(std::uint64_t chunk, std::string_view reason) const;
  // A generation above the active one: another mount rotated and sealed under it before
  // this one followed wardfs.conf. Reads then fail with -ENOKEY, not reported as damage,
  // so the caller can follow the config and try again.
  bool newer_than_known(std::uint32_t generation) const;
  std::size_t chunk_plain_len(std::uint64_t index, std::uint64_t file_size) const;

  const Volume& volume_;
  const crypto::ChunkLayout& layout_;
  IntegrityReporter reporter_;

  mutable WriterPreferringRwLock io_mutex_;  // shared: read; exclusive: write, truncate, load
  int load_locked(int fd);
  int load_locked(int fd, const struct stat& st);  // `st`: fresh_stat of fd, taken just before
  SharedFileGate shared_gate_;
  bool loaded_ = false;
  // The backing file as it was when loaded: size, modification and change times.
  std::array<std::int64_t, 5> loaded_stamp_{};
  crypto::FileHeader header_;
  std::uint64_t size_ = 0;

  std::mutex keys_mutex_;  // readers share io_mutex_, so the key cache needs its own
  std::vector<std::pair<std::uint32_t, std::shared_ptr<const crypto::FileKeys>>> keys_;
  std::uint64_t keys_epoch_ = 0;  // VolumeKeys::removal_epoch() when keys_ was filled

  // While the header has has-holes: the chunks known to hold a sealed chunk, so the flag
  // can go once no hole is left (FORMAT.md §4.6.1). Writers change it holding io_mutex_
  // exclusively; readers, holding it shared, add what they authenticated.
  std::mutex sealed_mutex_;
  ChunkIntervals sealed_;

  // Plaintext of the final chunk, so small appends need not re-read and re-open it.
  std::optional<std::uint64_t> tail_index_;
  std::vector<std::uint8_t> tail_plain_;
};

}  // namespace wardfs::volume
