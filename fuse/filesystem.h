// The FUSE low-level filesystem: translates kernel requests into the volume engine
// (names, chunked contents) over the backing directory. Nothing here does crypto itself.
#pragma once

#include <fcntl.h>
#include <fuse_lowlevel.h>

#include <atomic>
#include <cerrno>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "audit/log.h"
#include "fuse/fs_audit.h"
#include "fuse/inode_table.h"
#include "fuse/kernel_notifier.h"
#include "fuse/listing_attrs.h"
#include "fuse/op_stats.h"
#include "fuse/writeback_space.h"
#include "volume/backing_tree.h"
#include "volume/names.h"
#include "volume/rekey.h"
#include "volume/volume.h"

namespace wardfs::fuse {

// The largest WRITE the kernel sends (FUSE_INIT's max_write): the 1 MiB libfuse starts
// with, which its receive buffers and each io_uring ring entry's payload buffer are sized to.
inline constexpr unsigned kMaxWriteBytes = 1U << 20;

struct FsOptions {
  bool read_only = false;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  // Let the kernel cache writes and send them in batches (FUSE_CAP_WRITEBACK_CACHE), with
  // this reserve of backing space (the mount's, outliving the filesystem) keeping a full
  // disk failing write() (fuse/writeback_space.h). Null: every write() reaches the daemon.
  volume::SpaceReserve* writeback_reserve = nullptr;
  // -o shared: other read-write mounts of the volume write the same backing files. Each
  // data operation then locks the backing file and starts from its state on disk, and
  // opens re-validate what the kernel cached (close-to-open). No writeback cache.
  bool shared = false;
  // -o readdirplus=: which batches of a listing come with the entries' attributes
  // (fuse/listing_attrs.h). kernel_auto: the first only, and the kernel looks up each
  // later entry a caller stats, a round trip each; always: every batch, and a listing
  // nobody stats (os.listdir of a dataset) costs an fstatat per entry more; adaptive:
  // the first, and the others while this mount's callers stat what they list.
  ReaddirPlus readdirplus = ReaddirPlus::adaptive;
  audit::AuditLog* audit = nullptr;  // outlives the filesystem; null = no audit log
};

struct FsCounters {
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<std::uint64_t> bytes_written{0};
  std::atomic<std::uint64_t> integrity_failures{0};
  // copy_file_range requests served in the daemon, and the bytes they copied (counted
  // here, not in bytes_read / bytes_written).
  std::atomic<std::uint64_t> copy_ranges{0};
  std::atomic<std::uint64_t> bytes_copied{0};
  // For `wardfs mount --idle`: when the last request came (steady clock, ns) and how many
  // files and directories the kernel holds open.
  std::atomic<std::int64_t> last_request_ns{0};
  std::atomic<std::int64_t> open_handles{0};
  // Kernel entries the daemon asked the kernel to forget, to stay within its fd budget.
  std::atomic<std::uint64_t> entries_released{0};
  // Entries of listings sent with their attributes (READDIRPLUS, an fstatat each) and
  // without (plain READDIR, or READDIRPLUS as -o readdirplus=adaptive chose).
  std::atomic<std::uint64_t> listed_with_attrs{0};
  std::atomic<std::uint64_t> listed_bare{0};
  OpStats ops;  // requests by kind, latency of the timed ones (for the metrics)
};

struct FileHandle {
  UniqueFd fd;  // the backing file, opened for this handle
  // Or, for a file this handle created, the inode's own descriptor (read-write, as
  // created), which outlives the handle: the kernel forgets an inode only after its last
  // release. Saves a dup and a close per file created.
  int borrowed_fd = -1;
  int backing() const { return borrowed_fd >= 0 ? borrowed_fd : fd.get(); }
  bool append = false;
  // Opened for writing through the kernel's page cache (writeback cache, not direct I/O):
  // counted in WardFs::cached_writers_ while open.
  bool cached_writer = false;
  // The open's O_ACCMODE: the backing fd is read-write even for O_WRONLY opens (partial
  // chunks are read back), so copy_file_range checks the caller's mode here.
  int access = O_RDWR;
  bool readable() const { return access != O_WRONLY; }
  bool writable() const { return access != O_RDONLY; }
};

struct DirHandle {
  std::vector<volume::DirEntry> entries;
  UniqueFd fd;
  ino_t dot_ino = 0;     // the backing directory's inode number, for "."
  ino_t dotdot_ino = 0;  // its parent's (the root's own at the mount root), for ".."
};

class WardFs {
 public:
  WardFs(const volume::Volume& volume, FsOptions options);
  ~WardFs() = default;  // notifier_ stops first: it is declared last
  WardFs(const WardFs&) = delete;
  WardFs& operator=(const WardFs&) = delete;
  // Opens the backing root and reads its directory id. 0 or -errno.
  int open_root();
  static const fuse_lowlevel_ops& operations();
  // Directories, symlinks and files once used cost the daemon an fd while the kernel
  // knows them. Past `max_inodes` of those, a thread asks the kernel (through `session`)
  // to forget the least recently looked-up, as memory pressure would, so a tree of any
  // size fits in RLIMIT_NOFILE. Entries in use
  // (open files, working directories) stay; the kernel simply looks the others up again.
  void start_inode_limit(fuse_session* session, std::size_t max_inodes) {
    notifier_.start(session, max_inodes);
  }
  // Sends nothing more to the session (waits up to 2 s for a notification in flight):
  // call before its fd closes, i.e. before fuse_session_unmount().
  void quiesce_inode_limit() { notifier_.quiesce(); }
  void stop_inode_limit() { notifier_.stop(); }  // quiesce, then end the thread
  std::size_t inodes_held() { return inodes_.size(); }
  std::size_t fds_held() const { return inodes_.fds_held(); }
  const FsCounters& counters() const { return counters_; }
  bool writeback_active() const { return writeback_active_.load(std::memory_order_relaxed); }
  const WritebackSpace& writeback_space() const { return writeback_space_; }
  ReaddirPlus readdirplus() const { return options_.readdirplus; }
  // How the kernel hands requests over: "io_uring" once one request has come over the ring
  // (the kernel may send the first few over /dev/fuse while the ring starts), else
  // "/dev/fuse".
  std::string_view transport() const {
    return served_over_uring_.load(std::memory_order_relaxed) ? "io_uring" : "/dev/fuse";
  }
  // Called for every request: one relaxed load once the ring is seen.
  void note_transport(fuse_req_t req) {
    if (!served_over_uring_.load(std::memory_order_relaxed) && fuse_req_is_uring(req))
      served_over_uring_.store(true, std::memory_order_relaxed);
  }
  // A request arrived: remembers when (for --idle) and returns that time (steady, ns).
  std::int64_t note_request();
  // The request that arrived at `start_ns` is answered: counted, and timed if it is one of
  // the operations with a latency histogram.
  void note_done(Op op, std::int64_t start_ns);
  // Whether the backing directory still answers: a lookup of "." through the root's fd
  // (a network file system revalidates it). 0 or -errno.
  int check_backing_root();
  void note_open(int delta) { counters_.open_handles.fetch_add(delta, std::memory_order_relaxed); }
  const volume::NameMapper& names() const { return names_; }
  // How to follow wardfs.conf at once, when a file is sealed under a generation newer
  // than this mount knows (another mount rotated): true once the config was read again.
  // Set before requests are served.
  void set_config_follow(std::function<bool()> follow) { follow_config_ = std::move(follow); }
  // Lets whole-volume walks (rekey, scan) share this filesystem's inodes and locks.
  volume::TreeAccess& tree_access() { return tree_access_; }

  // ---- request handlers: each replies to req exactly once ----
  void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void forget(fuse_ino_t ino, std::uint64_t n);
  void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
  void readlink(fuse_req_t req, fuse_ino_t ino);
  void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name);
  void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags);
  void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  void write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi);
  void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                 fuse_file_info* fi);
  void copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                       fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                       int flags);
  void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
               bool plus);
  void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  void statfs(fuse_req_t req, fuse_ino_t ino);
  void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
  void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);
  void init(fuse_conn_info* conn);

 private:
  Inode& inode_of(fuse_ino_t ino);
  // Plaintext view of a backing stat: file sizes and symlink lengths. 0 or -errno.
  int plain_stat(Inode& inode, struct stat& st);
  int stat_inode(Inode& inode, struct stat& st);
  void reply_attr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  // Fills the rest of a new handle of `ino` from the open's flags (append, access; with
  // the writeback cache whether it writes through the page cache, fuse/writeback_space.h)
  // and hands it to the kernel in fi->fh.
  void hand_out(fuse_ino_t ino, std::unique_ptr<FileHandle> handle, fuse_file_info* fi);
  void drop_handle(fuse_ino_t ino, FileHandle* handle);
  // A page-cache WRITE (`write`, through backing `fd`) with the writeback reserve behind
  // it: on ENOSPC the reserve pays for it; what still cannot land is cut off and marked
  // (Inode::unlanded_from). The write's result.
  ssize_t land_cached_write(Inode& inode, int fd, const std::function<ssize_t()>& write,
                            std::uint64_t size, std::uint64_t offset);
  // The plaintext target of a symlink: 0, -EIO when it fails authentication, -ESTALE when
  // the link was replaced (a rekey re-sealed it) and the kernel should look it up again.
  int link_target(Inode& inode, std::string& out);
  void remember_link_dir(Inode& inode, Inode& dir);
  // Gives `to_dir` the sidecar of symlink `inode`'s long target, for a new name there.
  int share_link_target(Inode& inode, Inode& to_dir);
  // readlink of the backing symlink and, for a long target, a dup of the directory fd
  // where its sidecar lives (`dir` stays empty for a short one). 0 or -errno.
  int backing_link(Inode& inode, std::string& backing, UniqueFd& dir);
  int dir_id_of(Inode& dir, crypto::DirId& out);
  int lookup_entry(Inode& parent, std::string_view name, fuse_entry_param& e);
  // An entry of the parent's listing, looked up by the backing name the listing found.
  int lookup_listed_entry(Inode& parent, const volume::DirEntry& entry, fuse_entry_param& e);
  // A READDIR(PLUS) reply sent `with_attrs` entries with attributes and `bare` without.
  void note_listed(Inode& dir, bool plus, std::uint32_t with_attrs, std::uint32_t bare);
  // The entry `backing` of `parent`, whose fstatat gave `st`, into the inode table.
  int entry_at(Inode& parent, std::string_view name, const std::string& backing,
               const struct stat& st, fuse_entry_param& e);
  // Takes `fd` (the entry's O_PATH fd, or a dup of one just created) into the inode table.
  int entry_from_fd(Inode& parent, std::string_view name, UniqueFd fd, fuse_entry_param& e);
  int make_entry(Inode& parent, std::string_view name, UniqueFd fd, struct stat st,
                 BackingPlace place, fuse_entry_param& e);
  int resolve_in(Inode& parent, std::string_view name, volume::ResolvedName& out);
  void hold_before_unlink(const struct stat& st, UniqueFd fd);
  volume::FileContent& content_of(Inode& inode);
  int open_backing(Inode& inode, int flags, UniqueFd& out);
  // A root daemon makes entries as root: hand a new one (fd, lstat st) to the caller, as
  // a local filesystem would, changing only what differs. Updates st.
  void hand_to_caller(fuse_req_t req, Inode& parent, int fd, struct stat& st);
  // Who a new entry in `parent` belongs to; `made`, the new entry's stat if it exists,
  // saves a stat of the parent when the group already matches.
  volume::Owner owner_for(fuse_req_t req, Inode& parent, const struct stat* made = nullptr);
  // entry_from_fd for an entry just made (fd from its creation or open_fresh_entry),
  // then handed to the caller.
  int publish_new_entry(fuse_req_t req, Inode& parent, std::string_view name, UniqueFd fd,
                        fuse_entry_param& e);
  void create_existing(fuse_req_t req, Inode& parent, const char* name, fuse_file_info* fi);
  std::string child_path(Inode& parent, std::string_view name);
  void report_integrity(Inode& inode, std::uint64_t chunk, std::string_view reason);
  // Which backing name holds xattr `name` (any live generation). Fills `proc` (the
  // inode's proc_path) first, so it is set whenever the answer is 0 or -ENODATA.
  int xattr_find(Inode& inode, std::string_view name, std::string& proc, std::string& backing_name);
  // FUSE_CAP_HANDLE_KILLPRIV_V2 (fs_killpriv.cc): clears setuid/setgid as a local
  // filesystem would when `change` hits the file open as `fd`. For a write or an O_TRUNC
  // open the caller's capabilities decide; for a truncate the kernel said
  // (FATTR_KILL_SUIDGID). 0 or -errno.
  enum class PrivilegeChange { write, truncate_by_capable, truncate_by_other };
  int drop_privileges(fuse_req_t req, fuse_ino_t ino, int fd, PrivilegeChange change);
  bool caller_has_fsetid(fuse_req_t req);
  // `mode`, seen by a look that began after `changes_before_look` mode changes: writes
  // skip the look while it had no setuid or setgid bit and nothing changed since.
  void note_mode(Inode& inode, mode_t mode, std::uint64_t changes_before_look);
  // The inode's O_PATH fd, opened on first use (InodeTable::fd_of), or -errno.
  int fd_of(Inode& inode);
  // "/proc/self/fd/N" of that fd, to open or change the file through. 0 or -errno.
  int proc_path(Inode& inode, std::string& out);
  fuse_ino_t ino_of(Inode& inode);
  // Whether other mounts may change the backing files under this one: read-only mounts
  // (beside a writer elsewhere) and -o shared ones.
  bool follows_other_mounts() const { return options_.read_only || options_.shared; }
  // -o shared: enters the file's gate (exclusive when `modify`: this daemon's threads,
  // then other mounts, through the backing file's lock) and reloads `content` from disk,
  // so a read-modify-write never works from another mount's old state. Release `pass`
  // before replying. No-op unless shared. 0 or -errno.
  int begin_shared_access(volume::FileContent& content, int fd, bool modify,
                          volume::SharedFileGate::Pass& pass);
  // What open and a create of an existing name share: load the file's state (where
  // other mounts write: re-validate it, ESTALE for a replaced file), then truncate for
  // O_TRUNC. `changed_elsewhere`: the kernel's cached pages and attributes must go.
  // 0 or -errno.
  int load_for_open(volume::FileContent& content, int fd, bool truncate, bool& changed_elsewhere);
  // With the writeback cache the kernel resolves O_APPEND offsets itself and sends the
  // real ones; honouring the flag here as well would move its writes to the end again.
  bool engine_appends(int open_flags) const {
    return (open_flags & O_APPEND) != 0 && !writeback_active_.load(std::memory_order_relaxed);
  }

  // Runs `op`, an engine call that holds no lock once it returns. When it met a key
  // generation newer than this mount knows (-ENOKEY), follows wardfs.conf at once and
  // runs it again; an -ENOKEY left over is damage: reported, and -EIO.
  template <class Op>
  auto with_current_keys(Inode& inode, Op op) -> decltype(op()) {
    auto rc = op();
    if (rc == -ENOKEY && follow_config_ && follow_config_()) rc = op();
    if (rc == -ENOKEY) {
      report_integrity(inode, volume::kHeaderChunk,
                       "sealed under a key generation newer than this mount's, which "
                       "wardfs.conf does not list");
      rc = -EIO;
    }
    return rc;
  }

  // An open, for the audit log (level `access` and up).
  void audit_open(fuse_req_t req, Inode& inode, int flags, bool created) {
    audit_.open(req, inode.ino, inode.path(), flags, created);
  }

  class LiveTreeAccess final : public volume::TreeAccess {
   public:
    explicit LiveTreeAccess(WardFs& fs) : fs_(fs) {}
    int with_file(int dir_fd, const std::string& backing, const std::string& path,
                  const std::function<int(volume::FileContent&, int)>& fn) override;
    int with_dir(int dir_fd, const std::string& path, const std::function<int()>& fn) override;

   private:
    WardFs& fs_;
  };

  const volume::Volume& volume_;
  FsOptions options_;
  volume::NameMapper names_;
  InodeTable inodes_;
  FsCounters counters_;
  bool running_as_root_;
  LiveTreeAccess tree_access_{*this};
  FsAudit audit_{options_.audit};
  std::function<bool()> follow_config_;
  std::atomic<bool> writeback_active_{false};  // set in init() when the kernel agreed
  WritebackSpace writeback_space_{options_.writeback_reserve};
  // Files open for writing through the page cache, by inode: told their attributes are
  // stale when the mount turns tight. Lock order: a leaf (nothing is locked under it;
  // the notifications go out after it is released).
  std::mutex cached_writers_mutex_;
  std::unordered_map<fuse_ino_t, std::uint32_t> cached_writers_;
  std::atomic<bool> served_over_uring_{false};
  std::atomic<bool> killpriv_active_{false};  // set in init() when the kernel agreed
  ListingAttrPolicy listing_attrs_;           // -o readdirplus=adaptive
  KernelNotifier notifier_{inodes_, counters_.entries_released};
};

}  // namespace wardfs::fuse
