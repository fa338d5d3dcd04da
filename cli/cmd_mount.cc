// wardfs mount / unmount / status.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"
#include "cli/commands.h"
#include "cli/mount_options.h"
#include "daemon/control.h"
#include "daemon/mount.h"
#include "daemon/mount_table.h"
#include "keystore/command_runner.h"

namespace wardfs::cli {

namespace {

struct MountArgs {
  std::string cipher_dir;
  std::string mount_point;
  std::vector<std::string> options;
  std::string keyfile;
  std::string passfile;
  std::string log_file;
  std::string log_level;
  bool protect_mount_point = false;
  bool foreground = false;
  bool force = false;  // --force: take over a lease whose holder still beats
  unsigned threads = 16;
  std::string audit_log;
  std::string audit_level;
  std::string audit_on_failure;
  std::string audit_rotate_size;
  std::string audit_key_missing;
  std::string audit_anchor_cmd;
};

int run_mount(const MountArgs& a) {
  daemon::MountRequest req;
  req.cipher_dir = a.cipher_dir;
  req.mount_point = a.mount_point;
  req.foreground = a.foreground;
  req.max_threads = a.threads;
  req.credentials = credentials_from_options(a.keyfile, a.passfile);
  if (!a.log_file.empty()) req.log_file = std::filesystem::absolute(a.log_file);
  if (!a.log_level.empty()) set_log_level(a.log_level, req);
  req.protect_mount_point = a.protect_mount_point;
  req.take_over_lease = a.force;
  if (!a.audit_log.empty()) req.audit_log = std::filesystem::absolute(a.audit_log);
  if (!a.audit_level.empty()) set_audit_level(a.audit_level, req);
  if (!a.audit_on_failure.empty()) set_audit_on_failure(a.audit_on_failure, req);
  if (!a.audit_rotate_size.empty()) {
    const auto size = parse_size(a.audit_rotate_size);
    if (!size || *size < 4096)
      throw WardError(ErrorKind::usage,
                      "--audit-rotate-size must be a size of at least 4K (e.g. 64M)");
    req.audit_rotate_bytes = *size;
  }
  if (!a.audit_key_missing.empty()) set_audit_key_missing(a.audit_key_missing, req);
  if (!a.audit_anchor_cmd.empty()) set_audit_anchor_cmd(a.audit_anchor_cmd, req);
  apply_mount_options(a.options, req);
  if (req.shared && req.writeback_cache) {
    throw WardError(ErrorKind::usage,
                    "mount options shared and writeback_cache=1 exclude each other: a shared "
                    "mount sends each write to the backing file at once, under its lock");
  }
  if (req.metrics_interval && !req.metrics_file)
    throw WardError(ErrorKind::usage, "mount option metrics_interval= needs metrics_file=FILE");
  req.cipher_dir = std::filesystem::absolute(req.cipher_dir);
  req.mount_point = std::filesystem::absolute(req.mount_point);
  return daemon::run_mount(req);
}

// The daemon serving `path`, asked before unmounting; 0 when it does not answer.
pid_t daemon_pid_of(const std::filesystem::path& path) {
  try {
    return daemon::control_request(path, {{"op", "status"}}).value("pid", 0);
  } catch (const WardError&) {
    return 0;
  }
}

// Scripts that unmount and then read the audit log or reuse the backing dir need the
// daemon gone, its last records written and its lease released; it exits right after the
// kernel lets go.
bool process_running(pid_t pid) {
  // A zombie has exited (its records are written); it lingers where nobody reaps it. Its
  // leader turns zombie first, though, while the other threads still exit, and the files
  // (the lease among them) close only with the last one.
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream stat(proc + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  if (line[close + 2] != 'Z') return true;
  std::error_code ec;
  std::size_t threads = 0;
  for (auto it = std::filesystem::directory_iterator(proc + "/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++threads;
  }
  return threads > 1;
}

void wait_for_exit(pid_t pid) {
  if (pid <= 0) return;
  constexpr int kTries = 200;  // 10 s
  for (int i = 0; i < kTries; ++i) {
    if (!process_running(pid)) return;
    ::usleep(50 * 1000);
  }
  std::fprintf(stderr,
               "wardfs: unmounted, but the daemon (pid %d) is still finishing after 10 s; its "
               "volume lease and audit records are released when it exits\n",
               static_cast<int>(pid));
}

int detach(const std::filesystem::path& path);

int run_unmount(const std::string& mount_point) {
  const auto path = std::filesystem::absolute(mount_point);
  const auto fstype = daemon::mounted_fstype(path);
  if (!fstype) throw WardError(ErrorKind::mount_failure, path.string() + " is not mounted");
  if (*fstype != daemon::kWardfsFsType) {
    // As root, umount2 would take down whatever is there; only wardfs mounts are ours.
    throw WardError(ErrorKind::mount_failure,
                    path.string() + " is a " + *fstype +
                        " mount, not a wardfs one: left mounted (use umount(8) for it)");
  }
  const pid_t daemon_pid = daemon_pid_of(path);
  const int rc = detach(path);
  wait_for_exit(daemon_pid);
  return rc;
}

int detach(const std::filesystem::path& path) {
  if (::geteuid() == 0) {
    // A mount whose daemon died answers nothing; detaching it is all that is left.
    if (::umount2(path.c_str(), 0) != 0 &&
        !(is_lost_fuse_connection(errno) && ::umount2(path.c_str(), MNT_DETACH) == 0)) {
      throw WardError(ErrorKind::mount_failure,
                      "cannot unmount " + path.string() + ": " + std::strerror(errno) +
                          (errno == EBUSY ? " (files are still open there)" : ""));
    }
    return 0;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", path.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw WardError(ErrorKind::mount_failure, "fusermount3 -u " + path.string() + " failed");
  }
  return 0;
}

}  // namespace

void add_mount_commands(CLI::App& app, Runner& run) {
  auto args = std::make_shared<MountArgs>();
  CLI::App* mount = app.add_subcommand(
      "mount",
      "Mount CIPHERDIR on MOUNTPOINT. Returns once the mount is live; the daemon keeps serving.");
  mount->add_option("CIPHERDIR", args->cipher_dir, "Backing directory created by 'wardfs init'")
      ->required();
  mount->add_option("MOUNTPOINT", args->mount_point, "Empty directory to show the plaintext in")
      ->required();
  mount->add_flag("-f,--foreground", args->foreground, "Stay in the foreground and log to stderr");
  mount->add_option("-o", args->options, mount_options_help());
  // Defined after -o, whose values CLI11 assigns first: --idle D is the same as -o idle=D.
  mount->add_option_function<std::string>(
      "--idle", [args](const std::string& d) { args->options.push_back("idle=" + d); },
      "Unmount after this long (30s, 5m, 1h) with no requests and no open files");
  auto* keyfile = mount->add_option("--keyfile", args->keyfile, "Key file that unlocks the volume");
  mount
      ->add_option("--passfile", args->passfile,
                   "Read the passphrase from this file ('-' for stdin)")
      ->excludes(keyfile);
  mount->add_option("--log-file", args->log_file,
                    "Log here (created 0600; SIGHUP reopens it) instead of syslog when running in "
                    "the background. Without syslog (/dev/log missing) the default is "
                    "/var/log/wardfs/wardfs.log as root, else $XDG_STATE_HOME/wardfs/wardfs.log");
  mount
      ->add_option("--log-level", args->log_level,
                   "Log messages of this level and above: trace, debug, info (default), warn, "
                   "error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  mount->add_flag(
      "--protect-mountpoint", args->protect_mount_point,
      "Set the mount point directory's own mode to 000 before mounting, so that when the "
      "volume is not mounted (it failed, died or was unmounted) nobody but root can write "
      "plaintext into it; the mounted volume's root is what users see while mounted");
  mount->add_flag(
      "--force", args->force,
      "Take over the volume's lease from a read-write mount on another host whose heartbeat "
      "is less than 30 s old (its lock did not reach this host: the backing file system "
      "does not share locks). Only when that host is known to be down: its daemon stops "
      "at its next heartbeat, but writes it made meanwhile may be lost");
  mount->add_option("--threads", args->threads, "Maximum FUSE worker threads (default 16)")
      ->check(CLI::Range(1U, 256U));
  mount->add_option(
      "--audit-log", args->audit_log,
      "Audit log file (default /var/log/wardfs/VOLUME-ID.audit.jsonl as root, else under "
      "$XDG_STATE_HOME/wardfs; WARDFS_AUDIT_DIR overrides the directory)");
  mount
      ->add_option(
          "--audit-level", args->audit_level,
          "keys (default: key use only), access (also each process's first open of each file), "
          "or all (every open and namespace change)")
      ->check(CLI::IsMember({"keys", "access", "all"}));
  mount
      ->add_option(
          "--audit-on-failure", args->audit_on_failure,
          "When the audit log cannot be written: fail-open (default: serve on, count dropped "
          "records) or fail-closed (refuse new opens with EACCES)")
      ->check(CLI::IsMember({"fail-open", "fail-closed"}));
  mount->add_option(
      "--audit-rotate-size", args->audit_rotate_size,
      "Start a new audit log file beyond this size (default 64M); the HMAC chain continues "
      "across files, and older files can be shipped away and deleted");
  mount
      ->add_option("--audit-key-missing", args->audit_key_missing,
                   "When wardfs.conf has no audit key but the volume's audit log exists (the "
                   "key was removed or an old config restored): refuse (default: no mount) or "
                   "recreate (move the old log aside, start a new key and log, on record)")
      ->check(CLI::IsMember({"refuse", "recreate"}));
  mount->add_option(
      "--audit-anchor-cmd", args->audit_anchor_cmd,
      "Hand each new audit checkpoint to this command (split into words without a shell; "
      "'sh:LINE' runs /bin/sh -c LINE) as one JSON line on stdin: volume, seq, mac, time, no "
      "secrets. Keep what it gets out of reach of the log's directory; check with 'wardfs audit "
      "TARGET verify --anchor FILE'");
  mount->callback([args, &run] { run = [args] { return run_mount(*args); }; });

  auto mount_point = std::make_shared<std::string>();
  CLI::App* unmount = app.add_subcommand(
      "unmount", "Unmount a wardfs mount point (nothing else); the daemon then exits.");
  unmount->alias("umount");
  unmount->add_option("MOUNTPOINT", *mount_point, "Where the volume is mounted")->required();
  unmount->callback(
      [mount_point, &run] { run = [mount_point] { return run_unmount(*mount_point); }; });
}

}  // namespace wardfs::cli
