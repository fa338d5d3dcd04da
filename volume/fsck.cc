#include "volume/fsck.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "base/errors.h"
#include "volume/config_file.h"
#include "volume/file_content.h"
#include "volume/names.h"
#include "volume/rekey.h"
#include "volume/rename_intent.h"

namespace wardfs::volume {

namespace {

// Past this many chunk problems in one file, the rest are summed up in one line.
constexpr std::uint64_t kMaxChunkProblemsPerFile = 8;
constexpr std::string_view kConfigTmpName = "wardfs.conf.tmp";
constexpr std::string_view kRootFiles[] = {"wardfs.conf",   "wardfs.lock",  "wardfs.lease",
                                           "wardfs.mounts", "wardfs.rekey", "wardfs.reserve"};

// The entry names of a directory, sorted so reports come in a stable order.
int list_names(int dir_fd, std::vector<std::string>& out) {
  const int rc = for_each_dir_entry(
      dir_fd, [&](std::string_view name, ino_t, unsigned char) { out.emplace_back(name); });
  if (rc != 0) return rc;
  std::sort(out.begin(), out.end());
  return 0;
}

std::string join(const std::string& parent, std::string_view name) {
  if (parent.empty()) return std::string(name);
  return parent + (parent.ends_with('/') ? "" : "/") + std::string(name);
}

std::string content_kind(std::uint64_t chunk, std::string_view reason) {
  if (reason.find("cut") != std::string_view::npos ||
      reason.find("shorter") != std::string_view::npos)
    return "file_cut";
  if (reason.find("all zeros") != std::string_view::npos) return "chunk_zeroed";
  if (reason.find("no longer has") != std::string_view::npos) return "generation_missing";
  return chunk == kHeaderChunk ? "file_header" : "chunk_auth";
}

bool is_long_name_sidecar(std::string_view name) { return crypto::is_long_name_sidecar(name); }

std::string sidecar_of(std::string_view long_entry) {
  return std::string(long_entry) + std::string(crypto::kLongNameSidecarSuffix);
}

class Checker {
 public:
  Checker(const Volume& volume, const FsckOptions& options)
      : volume_(volume), names_(volume), options_(options) {}

  FsckCounts run() {
    root_fd_.reset(
        ::open(volume_.cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root_fd_) {
      throw WardError(ErrorKind::io, "cannot open backing directory " +
                                         volume_.cipher_dir().string() + ": " +
                                         std::strerror(errno));
    }
    check_directory(root_fd_.get(), "/", "", /*is_root=*/true, /*quarantine=*/false);
    // After the walk: the target of a move may be in a directory walked later.
    for (const auto& pending : intents_) check_intent(pending);
    return counts_;
  }

 private:
  struct Listing {
    std::set<std::string> entries;          // every name present
    std::set<std::string> name_sidecars;    // L.<hash>.n
    std::set<std::string> target_sidecars;  // T.<hash>
    std::set<std::string> targets_used;     // T.<hash> named by a link here
    // Checked after the directory's lock is released: a file's check takes the file's
    // own lock, and holding a parent's lock while taking a child's could deadlock.
    struct Deferred {
      std::string name, plain, bpath;
      struct stat st;
      bool lost_and_found;
    };
    std::vector<Deferred> deferred;
  };

  // Runs fn holding the lock a live filesystem takes to change this directory's entries.
  void in_directory(int dir_fd, const std::string& plain, const std::function<void()>& fn) {
    if (options_.access == nullptr) return fn();
    const int rc = options_.access->with_dir(dir_fd, plain, [&] {
      fn();
      return 0;
    });
    if (rc != 0) io_problem(plain, "", "cannot lock the directory", rc);
  }

  void problem(FsckProblem p) {
    switch (p.severity) {
      case FsckSeverity::leftover:
        ++counts_.leftovers;
        break;
      case FsckSeverity::warning:
        ++counts_.warnings;
        break;
      case FsckSeverity::damage:
        ++counts_.damaged;
        break;
    }
    if (p.repaired) ++counts_.repaired;
    if (options_.on_problem) options_.on_problem(p);
  }

  void progress() {
    if (options_.on_progress) options_.on_progress(counts_);
  }

  void check_directory(int dir_fd, const std::string& plain, const std::string& backing,
                       bool is_root, bool quarantine) {
    ++counts_.directories;
    Listing listing;
    in_directory(dir_fd, plain, [&] {
      crypto::DirId id{};
      if (const int rc = read_dir_id(dir_fd, id); rc != 0) {
        if (removed(dir_fd)) {  // a live rmdir got there first: nothing to check
          --counts_.directories;
          return;
        }
        problem({FsckSeverity::damage, "dir_id_missing", plain, join(backing, kDirIdFileName),
                 std::string("directory id file is missing or unreadable (") + std::strerror(-rc) +
                     "): none of the directory's entry names can be decrypted",
                 "restore " + std::string(kDirIdFileName) +
                     " of this directory from a backup of the backing directory",
                 false});
        return;
      }
      if (is_root) root_id_ = id;
      dir_paths_[crypto::hex_encode(id)] = backing;
      check_xattrs(dir_fd, plain, backing.empty() ? "." : backing);
      std::vector<std::string> all;
      if (const int rc = list_names(dir_fd, all); rc != 0) {
        io_problem(plain, backing, "cannot list the directory", rc);
        return;
      }
      listing.entries.insert(all.begin(), all.end());
      for (const auto& name : all)
        check_name(dir_fd, id, plain, backing, name, is_root, quarantine, listing);
      if (!quarantine) check_orphans(dir_fd, plain, backing, listing);
    });
    for (const auto& d : listing.deferred) {
      if (S_ISREG(d.st.st_mode)) {
        check_file(dir_fd, d.plain, d.bpath, d.name, d.st);
      } else {
        UniqueFd sub(
            ::openat(dir_fd, d.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) {
          // Gone since the listing: a live filesystem's rmdir or rename.
          if (errno != ENOENT) io_problem(d.plain, d.bpath, "cannot open the directory", -errno);
          continue;
        }
        check_directory(sub.get(), d.plain, d.bpath, false, d.lost_and_found);
      }
      progress();
    }
  }

  void check_name(int dir_fd, const crypto::DirId& id, const std::string& plain,
                  const std::string& backing, const std::string& name, bool is_root,
                  bool quarantine, Listing& listing) {
    const std::string bpath = join(backing, name);
    if (name == kDirIdFileName) return;
    if (is_root &&
        std::find(std::begin(kRootFiles), std::end(kRootFiles), name) != std::end(kRootFiles))
      return;
    RenameIntent intent;
    if (is_rename_intent_name(name) && read_rename_intent(dir_fd, name, intent) == 0) {
      intents_.push_back({plain, backing, name, std::move(intent)});
      return;
    }
    if (name.starts_with(kTempPrefix) || (is_root && name == kConfigTmpName)) {
      temp_leftover(dir_fd, plain, bpath, name);
      return;
    }
    if (is_long_name_sidecar(name)) {
      listing.name_sidecars.insert(name);
      return;
    }
    if (crypto::is_target_sidecar_name(name)) {
      listing.target_sidecars.insert(name);
      return;
    }
    if (is_metadata_entry(name)) {
      problem({FsckSeverity::warning, "unknown_entry", plain, bpath,
               "not an entry wardfs makes (a dotted name that is not wardfs metadata)",
               "inspect it and remove it from the backing directory if nobody needs it", false});
      return;
    }
    const auto plain_name = names_.decrypt_entry(dir_fd, id, name);
    if (!plain_name) {
      if (quarantine) {
        ++counts_.quarantined;
        return;
      }
      undecryptable(dir_fd, plain, bpath, name, listing);
      return;
    }
    check_entry(dir_fd, join(plain, *plain_name), bpath, name,
                is_root && *plain_name == kLostAndFound, listing);
  }

  void check_entry(int dir_fd, const std::string& plain, const std::string& bpath,
                   const std::string& name, bool lost_and_found, Listing& listing) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      io_problem(plain, bpath, "cannot stat the entry", -errno);
      return;
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR:
      case S_IFREG:
        listing.deferred.push_back({name, plain, bpath, st, lost_and_found});
        return;
      case S_IFLNK:
        check_symlink(dir_fd, plain, bpath, name, listing);
        return;
      default:
        ++counts_.specials;
        return;
    }
  }

  void check_file(int dir_fd, const std::string& plain, const std::string& bpath,
                  const std::string& name, const struct stat& st) {
    ++counts_.files;
    if (st.st_nlink > 1 && !seen_inodes_.emplace(st.st_dev, st.st_ino).second) return;
    constexpr int kFlags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    UniqueFd fd;
    if (options_.repair) fd.reset(::openat(dir_fd, name.c_str(), O_RDWR | kFlags));
    if (!fd) fd.reset(::openat(dir_fd, name.c_str(), O_RDONLY | kFlags));
    if (!fd && errno == ENOENT) {  // gone since the listing: a live unlink or rename
      --counts_.files;
      return;
    }
    struct stat opened {};
    if (!fd || ::fstat(fd.get(), &opened) != 0 || !S_ISREG(opened.st_mode)) {
      io_problem(plain, bpath, "cannot open the file", fd ? -EIO : -errno);
      return;
    }
    check_xattrs(fd.get(), plain, bpath);
    std::vector<std::pair<std::uint64_t, std::string>> reports;
    const IntegrityReporter sink = [&reports](std::uint64_t chunk, std::string_view reason) {
      reports.emplace_back(chunk, std::string(reason));
    };
    ContentCheck result;
    const bool clear = options_.repair && fd_writable(fd.get());
    int rc = check_content(dir_fd, name, plain, fd.get(), clear, sink, result);
    if (options_.access != nullptr && (rc != 0 || !reports.empty())) {
      // A file being created is empty until its header is written, under its directory's
      // lock: ask again holding it (a directory before a file, as the filesystem locks).
      reports.clear();
      result = {};
      const std::string parent = plain.substr(0, std::max<std::size_t>(1, plain.rfind('/')));
      in_directory(dir_fd, parent,
                   [&] { rc = check_content(dir_fd, name, plain, fd.get(), clear, sink, result); });
    }
    if (rc == -ENOENT && reports.empty()) return;  // unlinked meanwhile
    if (rc != 0 && reports.empty()) {
      io_problem(plain, bpath, "cannot read the file", rc);
      return;
    }
    counts_.bytes += result.plain_size;
    counts_.chunks += result.chunks;
    counts_.holes += result.holes;
    report_content(plain, bpath, reports);
    if (result.had_holes_flag && result.holes == 0 && reports.empty()) {
      problem({FsckSeverity::leftover, "has_holes_unneeded", plain, bpath,
               "the header's has-holes flag is set but the file has no hole left, so a "
               "zeroed chunk would read as zeros instead of failing",
               result.cleared_holes_flag ? "cleared the flag"
                                         : "run wardfs fsck --repair to clear the flag",
               result.cleared_holes_flag});
    }
  }

  int check_content(int dir_fd, const std::string& name, const std::string& plain, int fd,
                    bool clear, const IntegrityReporter& sink, ContentCheck& result) {
    if (options_.access != nullptr) {
      bool checked = false;
      // The live filesystem's own FileContent, so its writers wait for the check.
      const int rc =
          options_.access->with_file(dir_fd, name, plain, [&](FileContent& shared, int live_fd) {
            checked = true;
            return shared.check_all(live_fd, result, clear, sink);
          });
      // Not loaded: its header fails, so no writer can have it open; check it privately.
      if (checked) return rc;
    }
    FileContent content(volume_);
    content.set_reporter(sink);
    int rc = content.load(fd);
    if (rc == 0) rc = content.check_all(fd, result, clear, sink);
    return rc;
  }

  static bool removed(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && st.st_nlink == 0;
  }

  static bool fd_writable(int fd) { return (::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR; }

  void report_content(const std::string& plain, const std::string& bpath,
                      const std::vector<std::pair<std::uint64_t, std::string>>& reports) {
    std::uint64_t shown = 0;
    for (const auto& [chunk, reason] : reports) {
      if (++shown > kMaxChunkProblemsPerFile) break;
      const std::string where =
          chunk == kHeaderChunk ? std::string("file: ") : "chunk " + std::to_string(chunk) + ": ";
      problem({FsckSeverity::damage, content_kind(chunk, reason), plain, bpath, where + reason,
               "restore " + plain + " from a backup (reads of the damaged part fail with EIO)",
               false});
    }
    if (reports.size() > kMaxChunkProblemsPerFile) {
      problem({FsckSeverity::damage, "chunk_auth", plain, bpath,
               std::to_string(reports.size() - kMaxChunkProblemsPerFile) +
                   " more chunks fail authentication",
               "restore " + plain + " from a backup", false});
    }
  }

  void check_symlink(int dir_fd, const std::string& plain, const std::string& bpath,
                     const std::string& name, Listing& listing) {
    ++counts_.symlinks;
    std::string target(crypto::kMaxBackingTargetLength + 1, '\0');
    const ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (n < 0) {
      io_problem(plain, bpath, "cannot read the symbolic link", -errno);
      return;
    }
    target.resize(static_cast<std::size_t>(n));
    const bool long_form = crypto::is_target_sidecar_name(target);
    if (long_form) listing.targets_used.insert(target);
    if (names_.read_symlink_target(dir_fd, target)) return;
    const bool sidecar_missing = long_form && !listing.entries.contains(target);
    problem({FsckSeverity::damage, sidecar_missing ? "symlink_sidecar_missing" : "symlink_target",
             plain, bpath,
             sidecar_missing ? "the long target's sidecar " + target + " is missing"
                             : "the symbolic link's target fails authentication (edited, "
                               "swapped or from another link)",
             "recreate the link " + plain + " (readlink fails with EIO)", false});
  }

  void check_xattrs(int fd, const std::string& plain, const std::string& bpath) {
    std::string list(65536, '\0');
    const ssize_t n = ::flistxattr(fd, list.data(), list.size());
    if (n <= 0) return;  // none, or no xattr support: nothing sealed to check
    list.resize(static_cast<std::size_t>(n));
    for (std::size_t at = 0; at < list.size();) {
      const std::string bname = list.c_str() + at;
      at += bname.size() + 1;
      if (!bname.starts_with("user.")) continue;
      ++counts_.xattrs;
      const auto pname = names_.xattr_plain_name(bname);
      if (!pname) {
        problem({FsckSeverity::damage, "xattr_name", plain, bpath,
                 "extended attribute " + bname + ": its name fails authentication",
                 "remove it from the backing entry (setfattr -x) and set it again", false});
        continue;
      }
      crypto::Bytes value(65536);
      const ssize_t len = ::fgetxattr(fd, bname.c_str(), value.data(), value.size());
      if (len >= 0) value.resize(static_cast<std::size_t>(len));
      if (len < 0 || !names_.open_xattr_value(*pname, value)) {
        problem({FsckSeverity::damage, "xattr_value", plain, bpath,
                 "extended attribute " + *pname + ": its value fails authentication",
                 "set " + *pname + " of " + plain + " again", false});
      }
    }
  }

  void temp_leftover(int dir_fd, const std::string& plain, const std::string& bpath,
                     const std::string& name) {
    bool removed = false;
    if (options_.repair) {
      // A config being replaced is wardfs.conf.tmp only while its writer holds the config
      // lock: holding it too, what is left is a crash's.
      std::optional<volume::ConfigLock> config_lock;
      if (name == kConfigTmpName) config_lock.emplace(volume_.cipher_dir());
      if (::unlinkat(dir_fd, name.c_str(), 0) == 0) {
        removed = true;
      } else if (errno == EISDIR) {
        // A crashed mkdir leaves a directory holding at most its id.
        remove_leftover_dir(dir_fd, name);
        struct stat st {};
        removed = ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0;
      }
    }
    problem({FsckSeverity::leftover, "temp_leftover", plain, bpath,
             "a temporary entry left by an interrupted operation (crash)",
             removed           ? "removed it"
             : options_.repair ? "could not remove it (a directory with content?): "
                                 "inspect and remove it by hand"
                               : "run wardfs fsck --repair to remove it",
             removed});
  }

  struct PendingIntent {
    std::string plain;    // the directory holding it
    std::string backing;  // ditto, relative to the backing root
    std::string name;
    RenameIntent intent;
  };

  // A directory of the tree walked, opened again without following symlinks.
  UniqueFd open_walked_dir(const std::string& backing) const {
    UniqueFd fd(::openat(root_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (std::size_t at = 0; fd && at < backing.size();) {
      std::size_t end = backing.find('/', at);
      if (end == std::string::npos) end = backing.size();
      const std::string part = backing.substr(at, end - at);
      fd.reset(::openat(fd.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      at = end + 1;
    }
    return fd;
  }

  // A link + unlink move (no RENAME_NOREPLACE, volume/rename_intent.h) a crash cut short.
  void check_intent(const PendingIntent& p) {
    const std::string bpath = join(p.backing, p.name);
    UniqueFd from_dir = open_walked_dir(p.backing);
    if (!from_dir) return;  // removed meanwhile (a live rmdir)
    UniqueFd to_dir;
    if (p.intent.to_dir_id == ".") {
      to_dir.reset(::dup(from_dir.get()));
    } else if (const auto it = dir_paths_.find(p.intent.to_dir_id); it != dir_paths_.end()) {
      to_dir = open_walked_dir(it->second);
    }
    // Under the directory's lock, so this daemon's own renames there are whole.
    in_directory(from_dir.get(), p.plain, [&] {
      const IntentState state = intent_state(from_dir.get(), to_dir ? to_dir.get() : -1, p.intent);
      if (state != IntentState::both_names)
        return temp_leftover(from_dir.get(), p.plain, bpath, p.name);
      const bool finished = options_.repair && finish_rename(from_dir.get(), p.name, p.intent) == 0;
      problem(
          {FsckSeverity::leftover, "rename_unfinished", p.plain, join(p.backing, p.intent.from),
           "a rename was cut short (crash between link and unlink, on a backing file system "
           "without RENAME_NOREPLACE): the entry has its old name and its new one",
           finished ? "removed the old name" : "run wardfs fsck --repair to remove the old name",
           finished});
    });
  }

  void check_orphans(int dir_fd, const std::string& plain, const std::string& backing,
                     const Listing& listing) {
    for (const auto& sidecar : listing.name_sidecars) {
      const std::string entry =
          sidecar.substr(0, sidecar.size() - crypto::kLongNameSidecarSuffix.size());
      if (listing.entries.contains(entry) || moved_.contains(join(backing, entry))) continue;
      orphan(dir_fd, plain, join(backing, sidecar), sidecar, "orphan_name_sidecar",
             "a long-name sidecar whose entry is gone (a crash between the two)");
    }
    for (const auto& sidecar : listing.target_sidecars) {
      if (listing.targets_used.contains(sidecar)) continue;
      orphan(dir_fd, plain, join(backing, sidecar), sidecar, "orphan_target_sidecar",
             "a long symlink target's sidecar that no link here names (a crash, or an "
             "older wardfs)");
    }
  }

  void orphan(int dir_fd, const std::string& plain, const std::string& bpath,
              const std::string& name, const char* kind, const char* detail) {
    const bool removed = options_.repair && ::unlinkat(dir_fd, name.c_str(), 0) == 0;
    problem({FsckSeverity::leftover, kind, plain, bpath, detail,
             removed ? "removed it" : "run wardfs fsck --repair to remove it", removed});
  }

  void undecryptable(int dir_fd, const std::string& plain, const std::string& bpath,
                     const std::string& name, Listing& listing) {
    std::string kind = "name_undecryptable";
    std::string detail =
        "entry name fails authentication (edited, planted, or moved from another directory)";
    if (crypto::is_long_name(name)) {
      if (!listing.entries.contains(sidecar_of(name))) {
        kind = "name_sidecar_missing";
        detail = "long name's sidecar " + sidecar_of(name) + " is missing";
      } else {
        kind = "name_sidecar_mismatch";
        detail = "long name's sidecar does not match the entry or fails authentication";
      }
    }
    std::string fix = "run wardfs fsck --repair to move it to /" + std::string(kLostAndFound);
    bool moved = false;
    if (options_.repair) {
      std::string err;
      moved = move_to_lost_found(dir_fd, name, listing, err);
      fix = moved ? "moved to /" + std::string(kLostAndFound) + " (backing name " + name +
                        "; it does not show through the mount)"
                  : "could not move it to /" + std::string(kLostAndFound) + ": " + err;
      if (moved) moved_.insert(bpath);
    }
    problem({FsckSeverity::damage, kind, "", bpath, "in directory " + plain + ": " + detail, fix,
             moved});
  }

  bool open_lost_found(std::string& err) {
    if (lost_found_) return true;
    ResolvedName rn;
    if (const int rc = names_.resolve(root_fd_.get(), root_id_, kLostAndFound, rn); rc != 0) {
      err = std::strerror(-rc);
      return false;
    }
    if (!rn.exists) {
      const int rc = make_directory(volume_.backing_features(), root_fd_.get(), rn.backing, 0700,
                                    Owner{}, lost_found_);
      if (rc != 0) err = std::strerror(-rc);
      return rc == 0;
    }
    lost_found_.reset(::openat(root_fd_.get(), rn.backing.c_str(),
                               O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!lost_found_) err = "/" + std::string(kLostAndFound) + " is not a directory";
    return static_cast<bool>(lost_found_);
  }

  bool move_to_lost_found(int dir_fd, const std::string& name, Listing& listing, std::string& err) {
    if (!open_lost_found(err)) return false;
    const int to = lost_found_.get();
    auto& features = volume_.backing_features();
    // A long target's sidecar goes with its link (a hard link: another link may share it;
    // the one left behind is then an orphan like any other).
    std::string target(crypto::kMaxBackingTargetLength + 1, '\0');
    const ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (n > 0) {
      target.resize(static_cast<std::size_t>(n));
      names_.share_target_sidecar(dir_fd, to, target);
    }
    if (const int rc = rename_no_replace(features, dir_fd, name, to, name); rc != 0) {
      err = std::strerror(-rc);
      return false;
    }
    if (crypto::is_long_name(name) && listing.entries.contains(sidecar_of(name))) {
      rename_no_replace(features, dir_fd, sidecar_of(name), to, sidecar_of(name));
    }
    return true;
  }

  void io_problem(const std::string& plain, const std::string& bpath, const std::string& what,
                  int rc) {
    problem({FsckSeverity::damage, "io_error", plain, bpath, what + ": " + std::strerror(-rc),
             "check the backing file system and permissions", false});
  }

  const Volume& volume_;
  NameMapper names_;
  const FsckOptions& options_;
  FsckCounts counts_;
  UniqueFd root_fd_;
  crypto::DirId root_id_{};
  UniqueFd lost_found_;
  std::set<std::pair<dev_t, ino_t>> seen_inodes_;
  std::set<std::string> moved_;                   // backing paths moved to lost+found by this run
  std::map<std::string, std::string> dir_paths_;  // hex directory id -> backing path
  std::vector<PendingIntent> intents_;
};

}  // namespace

std::string_view severity_name(FsckSeverity severity) {
  switch (severity) {
    case FsckSeverity::leftover:
      return "leftover";
    case FsckSeverity::warning:
      return "warning";
    case FsckSeverity::damage:
      return "damage";
  }
  return "damage";
}

FsckCounts check_volume(const Volume& volume, const FsckOptions& options) {
  return Checker(volume, options).run();
}

}  // namespace wardfs::volume
