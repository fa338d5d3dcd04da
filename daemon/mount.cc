#include "daemon/mount.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "audit/log.h"
#include "base/errors.h"
#include "base/posix_io.h"
#include "crypto/secret.h"
#include "daemon/config_follower.h"
#include "daemon/control.h"
#include "daemon/logging.h"
#include "daemon/metrics.h"
#include "daemon/monitor.h"
#include "daemon/mount_table.h"
#include "daemon/notify.h"
#include "daemon/volume_service.h"
#include "daemon/worker_pool.h"
#include "fuse/filesystem.h"
#include "fuse/writeback_space.h"
#include "service/volume_session.h"
#include "volume/lease.h"
#include "volume/space_reserve.h"
#include "volume/volume.h"

namespace wardfs::daemon {

namespace stdfs = std::filesystem;

namespace {

// The child reports "ok" or "<exit code> <message>" to the waiting parent over a pipe.
class ReadinessPipe {
 public:
  void report(int code, const std::string& message) {
    if (!write_end_) return;
    const std::string line = std::to_string(code) + " " + message;
    (void)!::write(write_end_.get(), line.data(), line.size());
    write_end_.reset();
  }
  UniqueFd read_end_;
  UniqueFd write_end_;
};

std::string escape_option(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Why other users could change the backing tree under an allow_other mount, or nullopt.
// There the daemon hands each user their own backing entries, so a backing root others
// may enter lets them plant symlinks and swap entries while the daemon works on them.
std::optional<std::string> backing_open_to_others(const stdfs::path& cipher_dir) {
  struct stat st {};
  if (::stat(cipher_dir.c_str(), &st) != 0) return std::nullopt;  // reported later
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
  if (st.st_uid != ::geteuid())
    return "it belongs to uid " + std::to_string(st.st_uid) + ", not to the mounting user";
  if ((st.st_mode & 077) != 0)
    return std::string("its mode ") + mode + " lets other users into the backing tree";
  return std::nullopt;
}

void check_backing_privacy(const MountRequest& req) {
  if (!req.allow_other) return;
  const auto why = backing_open_to_others(req.cipher_dir);
  if (!why) return;
  const std::string message = "backing directory " + req.cipher_dir.string() + " is not private (" +
                              *why +
                              "): with allow_other, other users could swap backing entries "
                              "under the daemon; fix with: chmod 700 " +
                              req.cipher_dir.string();
  if (req.require_private_backing) throw WardError(ErrorKind::mount_failure, message);
  std::cerr << "wardfs: warning: " << message << "\n";
}

void check_mount_point(const MountRequest& req) {
  std::error_code ec;
  if (!stdfs::is_directory(req.cipher_dir, ec)) {
    throw WardError(ErrorKind::mount_failure, "backing directory " + req.cipher_dir.string() +
                                                  " does not exist or is not a directory");
  }
  if (!stdfs::is_directory(req.mount_point, ec)) {
    throw WardError(ErrorKind::mount_failure,
                    "mount point " + req.mount_point.string() +
                        " does not exist or is not a directory; create it with mkdir");
  }
  if (is_mount_point(req.mount_point)) {
    throw WardError(ErrorKind::mount_failure, "mount point " + req.mount_point.string() +
                                                  " is busy: something is already mounted there");
  }
  if (!req.nonempty && !stdfs::is_empty(req.mount_point, ec)) {
    throw WardError(ErrorKind::mount_failure, "mount point " + req.mount_point.string() +
                                                  " is not empty; empty it or pass -o nonempty");
  }
  check_backing_privacy(req);
}

// A job that does not check whether its mount failed or died writes its plaintext into
// the directory underneath. Mode 000 there stops every user but root; what users see
// while mounted is the volume's root, whose mode is the volume's own.
void protect_mount_point(const MountRequest& req) {
  if (!req.protect_mount_point) return;
  if (::geteuid() != 0) {
    throw WardError(ErrorKind::usage,
                    "--protect-mountpoint needs root: fusermount3 mounts only on a directory the "
                    "user may write to (as that user, keep the mount point's parent private "
                    "instead)");
  }
  if (::chmod(req.mount_point.c_str(), 0) != 0) {
    throw WardError(ErrorKind::mount_failure, "cannot make the mount point " +
                                                  req.mount_point.string() +
                                                  " mode 000: " + std::strerror(errno));
  }
}

// The kernel's per-process ceiling on open files (fs.nr_open); 0 if unreadable.
rlim_t kernel_open_file_ceiling() {
  return static_cast<rlim_t>(read_number_file("/proc/sys/fs/nr_open"));
}

void raise_open_file_limit() {
  // Every inode the kernel remembers holds an O_PATH fd, as in passthrough_hp, so a tree
  // of more files than RLIMIT_NOFILE would fail with EMFILE. Root may lift the hard limit
  // up to the kernel's ceiling; anyone may lift the soft limit to the hard one.
  struct rlimit files {};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return;
  const rlim_t ceiling = ::geteuid() == 0 ? kernel_open_file_ceiling() : 0;
  if (ceiling > files.rlim_max) {
    const struct rlimit lifted { ceiling, ceiling };
    if (::setrlimit(RLIMIT_NOFILE, &lifted) == 0) return;
  }
  if (files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
}

// How many inodes the kernel may hold before the daemon asks it to forget some: each
// pins an fd, and open files (including closed ones whose RELEASE is still queued in the
// kernel), directory handles, the audit log and the control socket need the rest of
// RLIMIT_NOFILE, as does the overshoot while the kernel forgets.
std::size_t inode_budget(std::size_t asked) {
  struct rlimit files {};
  std::size_t budget = 1U << 20;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
    budget = std::max<std::size_t>(
        64, files.rlim_cur -
                std::max<rlim_t>(files.rlim_cur / 4, std::min<rlim_t>(files.rlim_cur / 2, 1024)));
  return asked == 0 ? budget : std::min(asked, budget);
}

// Stops the inode limit's thread before the session it notifies is destroyed.
class InodeLimit {
 public:
  InodeLimit(fuse::WardFs& filesystem, fuse_session* session, std::size_t max_inodes)
      : filesystem_(filesystem) {
    filesystem_.start_inode_limit(session, max_inodes);
    spdlog::debug("the kernel may hold up to {} inodes", max_inodes);
  }
  ~InodeLimit() { filesystem_.stop_inode_limit(); }
  InodeLimit(const InodeLimit&) = delete;
  InodeLimit& operator=(const InodeLimit&) = delete;

 private:
  fuse::WardFs& filesystem_;
};

// glibc gives each thread that meets a locked heap an arena of its own, up to 8 per core:
// with 16 workers that was 16 heaps of about 2 MiB each, kept for good (with the
// daemon's memory locked, glibc cannot give their free pages back). Request buffers come
// from a shared pool (volume/buffer_pool.h) and large ones are mmap'ed, so a few arenas
// serve the small allocations as fast.
constexpr int kMallocArenas = 2;

// glibc returns freed memory at the top of a thread's heap once 128 KiB are free there
// and grows it again on the next request: under a small-file load that was an mprotect()
// (and page faults) per WRITE. Keep a few MiB per heap instead.
void tune_allocator() {
  ::mallopt(M_ARENA_MAX, kMallocArenas);
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
  ::mallopt(M_TOP_PAD, 1 << 20);
}

void harden_process() {
  // Keys live in this process: no core dumps, no ptrace by other users, exact modes.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const struct rlimit no_core { 0, 0 };
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::umask(0);
  raise_open_file_limit();
  if (!crypto::lock_process_memory())
    spdlog::info(
        "OpenSSL's AES key schedules are not in locked memory (needs root or an "
        "unlimited RLIMIT_MEMLOCK); use encrypted swap");
}

void detach_stdio() {
  ::setsid();
  if (::chdir("/") != 0) return;
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return;
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(null_fd, STDOUT_FILENO);
  ::dup2(null_fd, STDERR_FILENO);
  ::close(null_fd);
}

struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// An empty path is the volume's default log, which the session knows.
audit::LogOptions audit_options(const MountRequest& req) {
  audit::LogOptions o;
  if (req.audit_log) o.path = *req.audit_log;
  o.level = req.audit_level;
  o.on_failure = req.audit_on_failure;
  o.rotate_bytes = req.audit_rotate_bytes;
  o.anchor.argv = req.audit_anchor_argv;
  return o;
}

// Learns which rename flags the backing file system honours (network file systems lack
// some), so `wardfs status` shows the fallbacks from the start.
void probe_backing(const volume::Volume& volume) {
  const UniqueFd root(::open(volume.cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return;
  volume.backing_features().probe(root.get());
  for (const auto& f : volume.backing_features().fallbacks())
    spdlog::info("backing file system of {}: {}", volume.cipher_dir().string(), f);
}

// -o writeback_cache=1 needs a reserve of backing space that keeps a full disk failing
// write() (fuse/writeback_space.h). Without one the mount writes through, as the log
// says. True when `reserve` holds it.
bool make_writeback_reserve(const MountRequest& req, const volume::Volume& volume,
                            volume::SpaceReserve& reserve) {
  if (req.read_only || req.shared || !req.writeback_cache) return false;
  if (!volume.holes_allowed()) {
    // A cached write past the end would have its gap filled with sealed chunks only when
    // it lands: space no reserve can bound.
    spdlog::warn("writeback cache off: the volume's holes policy is \"never\"");
    return false;
  }
  const std::uint64_t bytes = fuse::writeback_reserve_bytes();
  const UniqueFd root(::open(volume.cipher_dir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  int rc = bytes == 0 ? -ENODATA : 0;
  if (rc == 0 && !root) rc = -errno;
  if (std::string fs_type; rc == 0 && !volume::is_local_file_system(root.get(), fs_type)) {
    spdlog::warn(
        "{} is not on a local file system (type {}): other clients take the same space, so "
        "the reserve there cannot promise that cached writes land on a full disk",
        volume.cipher_dir().string(), fs_type);
  }
  if (rc == 0) rc = reserve.create(root.get(), bytes);
  if (rc != 0) {
    spdlog::warn(
        "writeback cache off: cannot hold {} MiB of {} as the reserve that keeps a full disk "
        "failing write() ({}); every write() goes to the daemon. Free space there and mount "
        "again",
        bytes >> 20, volume.cipher_dir().string(), std::strerror(-rc));
    return false;
  }
  spdlog::info("writeback cache on, with {} MiB of {} reserved ({})", bytes >> 20,
               volume.cipher_dir().string(), volume::kReserveFileName);
  return true;
}

void record_mount(audit::AuditLog& log, const MountRequest& req, const volume::Volume& volume) {
  const auto config = volume.config();
  log.record(
      audit::volume_event("mount", volume.keystore_identity(), config.active_generation, "ok",
                          {{"cipher_dir", stdfs::absolute(req.cipher_dir).string()},
                           {"mount_point", stdfs::absolute(req.mount_point).string()},
                           {"read_only", req.read_only},
                           {"audit_level", audit::level_name(req.audit_level)},
                           {"audit_on_failure", audit::on_failure_name(req.audit_on_failure)}}));
}

void record_unmount(audit::AuditLog& log, const MountRequest& req, const fuse::FsCounters& c) {
  log.record(audit::volume_event("unmount", "", std::nullopt, "ok",
                                 {{"mount_point", stdfs::absolute(req.mount_point).string()},
                                  {"bytes_read", c.bytes_read.load()},
                                  {"bytes_written", c.bytes_written.load()},
                                  {"integrity_failures", c.integrity_failures.load()},
                                  {"bytes_copied", c.bytes_copied.load()},
                                  {"audit_records_dropped", log.dropped()}}));
}

// For the other users of an allow_other mount: health and counters, nothing secret.
void open_public_status(std::optional<ControlServer>& out, const stdfs::path& path,
                        VolumeService& service) {
  try {
    out.emplace(
        path, ::getuid(),
        [&service](const nlohmann::json& request, const audit::Principal&) {
          return service.handle_public(request);
        },
        nullptr, ControlServer::Peers::anyone);
  } catch (const WardError& e) {
    spdlog::warn("no public status socket ({})", e.what());
  }
}

int serve(const MountRequest& req, ReadinessPipe& ready) {
  harden_process();
  tune_allocator();
  // The lease is held until this process ends: no second read-write daemon and no
  // offline key command on this volume meanwhile, wherever they run.
  service::VolumeSession opened(
      req.cipher_dir,
      {.log = audit_options(req),
       .credentials = req.credentials,
       .lease = service::LeaseRequest{.use = req.read_only ? volume::LeaseUse::read_only_mount
                                             : req.shared  ? volume::LeaseUse::shared_write_mount
                                                           : volume::LeaseUse::read_write_mount,
                                      .what = stdfs::absolute(req.mount_point).string(),
                                      .is_mounted =
                                          [](const std::string& mount_point) {
                                            return is_mount_point(mount_point);
                                          },
                                      .force = req.take_over_lease},
       .writable = !req.read_only,
       .audit_key_missing = req.audit_key_missing,
       .recreate_hint = "to start a new audit key on purpose, mount with "
                        "--audit-key-missing=recreate (the old log is kept aside)"});
  const auto& lease = *opened.lease();
  if (!lease.held())
    spdlog::warn("{} has no {} and cannot get one: mounted read-only without a lease",
                 req.cipher_dir.string(), volume::kLeaseFileName);
  const crypto::VolumeConfig& config = opened.config_at_open();
  audit::AuditLog& audit_log = opened.log();
  keystore::Keystore& keystore = opened.keystore();  // stays open: online rotation wraps with it
  volume::Volume* const volume = &opened.volume();
  if (!req.read_only) probe_backing(*volume);
  volume::SpaceReserve writeback_reserve;  // outlives the filesystem, which spends it
  const bool writeback = lease.held() && make_writeback_reserve(req, *volume, writeback_reserve);

  wardfs::fuse::WardFs filesystem(*volume,
                                  {.read_only = req.read_only,
                                   .writeback_reserve = writeback ? &writeback_reserve : nullptr,
                                   .shared = req.shared && !req.read_only,
                                   .readdirplus = req.readdirplus,
                                   .audit = &audit_log});
  if (const int rc = filesystem.open_root(); rc != 0) {
    throw WardError(
        ErrorKind::corrupt_volume,
        "cannot open the root of " + req.cipher_dir.string() + ": " + std::strerror(-rc));
  }
  std::string options = "fsname=" + escape_option(stdfs::absolute(req.cipher_dir).string()) +
                        ",subtype=wardfs,default_permissions";
  if (req.allow_other) options += ",allow_other";
  if (req.read_only) options += ",ro";
  if (const auto uring = io_uring_session_option(req.io_uring); !uring.empty())
    options += "," + uring;
  std::vector<std::string> arg_storage = {"wardfs", "-o", options};
  std::vector<char*> argv;
  for (auto& a : arg_storage) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  std::unique_ptr<fuse_session, SessionDeleter> session(
      fuse_session_new(&args, &fuse::WardFs::operations(), sizeof(fuse_lowlevel_ops), &filesystem));
  if (!session)
    throw WardError(ErrorKind::mount_failure,
                    "cannot create the FUSE session (bad mount options?)");
  if (fuse_set_signal_handlers(session.get()) != 0) {
    throw WardError(ErrorKind::mount_failure, "cannot install signal handlers");
  }
  std::optional<LogReopenOnHangup> reopen_log(std::in_place);  // SIGHUP: reopen, not unmount
  // Resolved before mounting: afterwards any stat of the mount point would wait on
  // this very process, which is not serving requests yet.
  const stdfs::path socket_path = control_socket_path(req.mount_point);
  const stdfs::path public_path = public_socket_path(req.mount_point, ::getuid());
  const stdfs::path canonical_mount_point = stdfs::weakly_canonical(req.mount_point);
  if (fuse_session_mount(session.get(), stdfs::absolute(req.mount_point).c_str()) != 0) {
    fuse_remove_signal_handlers(session.get());
    throw WardError(ErrorKind::mount_failure, "cannot mount on " + req.mount_point.string() +
                                                  " (is /dev/fuse available and fuse3 installed?)");
  }
  spdlog::info("mounted {} on {} (cipher {}, chunk size {}, keystore {}, audit log {})",
               req.cipher_dir.string(), req.mount_point.string(),
               crypto::cipher_name(config.cipher), config.chunk_size, volume->keystore_identity(),
               audit_log.options().path.string());
  if (!widen_readahead(canonical_mount_point, 1024)) {
    spdlog::debug("readahead of {} left at the kernel's default", req.mount_point.string());
  }
  record_mount(audit_log, req, *volume);
  std::optional<InodeLimit> inode_limit(std::in_place, filesystem, session.get(),
                                        inode_budget(req.max_inodes));
  VolumeService service(*volume, keystore, filesystem, req.mount_point, audit_log, !req.read_only);
  ConfigFollower config_follower(
      req.cipher_dir / "wardfs.conf", kConfigPollInterval, [&service] { service.follow_config(); },
      [&service] { service.tick(); });
  volume->set_follows_config(true);
  filesystem.set_config_follow(
      [&config_follower] { return config_follower.follow_now(std::chrono::milliseconds(1500)); });
  std::optional<ControlServer> control;
  try {
    control.emplace(
        socket_path, ::getuid(),
        [&service](const nlohmann::json& request, const audit::Principal& peer) {
          return service.handle(request, peer);
        },
        &audit_log);
  } catch (const WardError& e) {
    spdlog::warn("no control socket ({}); rotate/rekey/status need it", e.what());
  }
  std::optional<ControlServer> public_status;
  if (req.allow_other) open_public_status(public_status, public_path, service);
  std::optional<MetricsFileWriter> metrics_file;  // written before `mount` returns
  if (req.metrics_file)
    metrics_file.emplace(*req.metrics_file, req.metrics_interval.value_or(std::chrono::seconds(15)),
                         [&service] { return service.prometheus_text(); });
  audit_log.flush(std::chrono::seconds(2));
  ready.report(0, "ok");
  if (!req.foreground) detach_stdio();

  MountMonitor monitor(
      {req.mount_point, req.idle,
       "cipher " + std::string(crypto::cipher_name(config.cipher)) + ", keystore " +
           volume->keystore_identity(),
       [&lease] { return lease.lost(); }, [&session] { fuse_session_exit(session.get()); }},
      filesystem.counters(), Notifier::from_environment());
  const int rc = run_worker_pool(session.get(), req.max_threads,
                                 [&filesystem] { filesystem.quiesce_inode_limit(); });
  monitor.stopping();
  metrics_file.reset();  // its last values stay in the file
  public_status.reset();
  control.reset();
  inode_limit.reset();
  reopen_log.reset();
  fuse_remove_signal_handlers(session.get());
  const auto& c = filesystem.counters();
  spdlog::info("unmounted {} (read {} bytes, wrote {} bytes, {} integrity failures)",
               req.mount_point.string(), c.bytes_read.load(), c.bytes_written.load(),
               c.integrity_failures.load());
  record_unmount(audit_log, req, c);
  return rc == 0 ? 0 : static_cast<int>(ErrorKind::io);
}

int serve_reporting(const MountRequest& req, ReadinessPipe& ready) {
  try {
    return serve(req, ready);
  } catch (const WardError& e) {
    ready.report(e.exit_code(), e.what());
    spdlog::error("{}", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    ready.report(static_cast<int>(ErrorKind::io), e.what());
    spdlog::error("{}", e.what());
    return static_cast<int>(ErrorKind::io);
  }
}

int wait_for_child(ReadinessPipe& ready, pid_t child) {
  std::string message;
  char buf[512];
  ssize_t n = 0;
  while ((n = ::read(ready.read_end_.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) message.append(buf, static_cast<std::size_t>(n));
  }
  if (message.empty()) {
    int status = 0;
    ::waitpid(child, &status, 0);
    std::cerr << "wardfs: the mount process exited before the mount was ready\n";
    return static_cast<int>(ErrorKind::mount_failure);
  }
  const auto space = message.find(' ');
  const int code = std::atoi(message.substr(0, space).c_str());
  if (code != 0) {
    std::cerr << "wardfs: " << message.substr(space + 1) << "\n";
    ::waitpid(child, nullptr, 0);
  }
  return code;
}

}  // namespace

int run_mount(const MountRequest& original) {
  MountRequest request = original;
  // Under systemd the keystore line goes to the journal too, with the mount point.
  if (request.foreground && running_under_systemd())
    request.credentials.notify = log_keystore_identity;
  crypto::ensure_sodium();
  check_mount_point(request);
  protect_mount_point(request);
  UniqueFd log_file = open_log_before_detach(request);
  ReadinessPipe ready;
  if (request.foreground) {
    setup_logging(request, std::move(log_file));
    return serve_reporting(request, ready);
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw WardError(ErrorKind::io, "pipe: " + std::string(std::strerror(errno)));
  ready.read_end_.reset(fds[0]);
  ready.write_end_.reset(fds[1]);
  const pid_t child = ::fork();
  if (child < 0) throw WardError(ErrorKind::io, "fork: " + std::string(std::strerror(errno)));
  if (child > 0) {
    ready.write_end_.reset();
    return wait_for_child(ready, child);
  }
  ready.read_end_.reset();
  setup_logging(request, std::move(log_file));
  ::_exit(serve_reporting(request, ready));
}

}  // namespace wardfs::daemon
