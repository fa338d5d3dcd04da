// Name mapping between the plaintext tree and the backing directory: encrypted entry
// names (with the long-name sidecars), symlink targets and extended attributes.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/posix_io.h"
#include "crypto/name_codec.h"
#include "volume/volume.h"

namespace wardfs::volume {

inline constexpr std::size_t kMaxPlainNameLength = 255;

struct ResolvedName {
  std::string backing;  // the entry's name in the backing directory
  std::string encoded;  // full encoding (differs from backing for long names)
  bool exists = false;  // an entry under some live generation is there
  struct stat st {};    // its lstat when it exists
  bool is_long() const { return backing != encoded; }
};

struct DirEntry {
  std::string name;  // plaintext
  std::string backing;
  ino_t ino = 0;
  unsigned char type = 0;        // DT_*
  std::uint32_t generation = 0;  // the key generation that sealed the name
};

using NameReporter = std::function<void(std::string_view backing_name, std::string_view reason)>;

class NameMapper {
 public:
  explicit NameMapper(const Volume& volume) : volume_(volume) {}

  // Finds `name` in the directory under any live generation (active first); when
  // absent, fills in the active generation's encoding for creating it. 0 or -errno.
  int resolve(int dir_fd, const crypto::DirId& dir_id, std::string_view name,
              ResolvedName& out) const;
  // Finds `name` with one fstatat (symlinks not followed) per generation tried, in
  // resolve()'s order, filling in its backing name and stat, where resolve() would also
  // look for the other generations' names. 0, -ENOENT or another -errno.
  int stat_entry(int dir_fd, const crypto::DirId& dir_id, std::string_view name,
                 std::string& backing, struct stat& st) const;
  // The active generation's encoding of `name` without probing the directory, for a
  // create that relies on O_EXCL to find an existing entry (or an unlink on unlinkat's
  // ENOENT). Only sound while no older
  // generation can hold the name under another encoding, and only for short names (a
  // long one needs its sidecar first): returns false otherwise, and the caller must
  // resolve() instead.
  bool encode_for_create(const crypto::DirId& dir_id, std::string_view name,
                         ResolvedName& out) const;
  // Long names need their sidecar before the entry appears, so a crash leaves at worst
  // an orphan sidecar, never an entry without a name.
  int write_sidecar(int dir_fd, const ResolvedName& name) const;
  void remove_sidecar(int dir_fd, const ResolvedName& name) const;

  // The entries of `dir_fd` (O_PATH too), read through a descriptor of its own.
  int list(int dir_fd, const crypto::DirId& dir_id, std::vector<DirEntry>& out,
           const NameReporter& reporter) const;
  // The same over `open_dir_fd`, a directory freshly opened for the listing (opendir's),
  // read from where it stands: saves opening another.
  int list_open(int open_dir_fd, const crypto::DirId& dir_id, std::vector<DirEntry>& out,
                const NameReporter& reporter) const;
  // The plaintext name and the generation that sealed it.
  std::optional<std::string> decrypt_entry(int dir_fd, const crypto::DirId& dir_id,
                                           std::string_view backing,
                                           std::uint32_t* generation = nullptr) const;

  // The short form of a symlink target (docs/FORMAT.md §7): base64url of the blob, to be
  // the backing symlink's target. It fits there only for targets up to ~3000 bytes.
  std::string seal_symlink(std::string_view target) const;
  std::optional<std::string> open_symlink(std::string_view backing_target) const;

  // Either form (§7, §7.1), for a backing symlink in `dir_fd` (volume/symlink_targets.cc).
  // make_symlink_target writes the sidecar of a long target before returning its name,
  // so no crash leaves a link without its target. 0 or -errno (-ENAMETOOLONG past 4095).
  int make_symlink_target(int dir_fd, std::string_view target, std::string& backing_target) const;
  // nullopt when the blob or its sidecar is missing, swapped or fails authentication.
  std::optional<std::string> read_symlink_target(int dir_fd, std::string_view backing_target) const;
  // The sealed blob, without opening it (rekey and scan read its generation).
  std::optional<crypto::Bytes> symlink_blob(int dir_fd, std::string_view backing_target) const;
  // A long target's sidecar follows its link into another directory (link, rename): a
  // hard link of the sidecar there. No-op for short targets and within one directory.
  int share_target_sidecar(int from_dir, int to_dir, std::string_view backing_target) const;
  // Removes a long target's sidecar from `dir_fd` once no link in it uses it any more.
  void drop_target_sidecar(int dir_fd, std::string_view backing_target) const;
  std::optional<std::string> open_symlink_blob(crypto::ByteView blob) const;

  // xattrs: only the user. namespace is supported; names and values are encrypted.
  std::string xattr_backing_name(std::string_view plain_name, std::uint32_t generation) const;
  std::optional<std::string> xattr_plain_name(std::string_view backing_name) const;
  crypto::Bytes seal_xattr_value(std::string_view plain_name, crypto::ByteView value) const;
  std::optional<crypto::Bytes> open_xattr_value(std::string_view plain_name,
                                                crypto::ByteView blob) const;

 private:
  // Decrypts each entry of `dir_fd` into `out`, for list and list_open.
  DirEntryFn collector(int dir_fd, const crypto::DirId& dir_id, std::vector<DirEntry>& out,
                       const NameReporter& reporter) const;
  const Volume& volume_;
};

// True for backing entries that are wardfs metadata rather than encrypted names.
bool is_metadata_entry(std::string_view backing_name);

}  // namespace wardfs::volume
