// What the filesystem tells the audit log: opens (per the audit level), namespace
// changes at level `all`, integrity failures; and the fail-closed refusal of access.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "audit/log.h"

namespace wardfs::fuse {

class FsAudit {
 public:
  explicit FsAudit(audit::AuditLog* log) : log_(log) {}  // null: no audit log

  // True, with a log line and an access_denied record attempt, when the audit log is
  // failing under the fail-closed policy: the caller replies EACCES.
  bool blocks_access(fuse_req_t req, const std::string& path);
  // An open of backing inode `ino` at `path`; at level `access`, once per process,
  // inode and access mode.
  void open(fuse_req_t req, ino_t ino, const std::string& path, int flags, bool created);
  // A namespace change at audit level `all` (create, unlink, rename, mkdir, rmdir...).
  void change(fuse_req_t req, std::string_view event, std::string path,
              nlohmann::json detail = nullptr);
  void integrity(const std::string& path, std::uint64_t chunk, std::string_view reason);

 private:
  audit::AuditLog* const log_;
  std::mutex seen_mutex_;  // taken alone
  // (pid, backing inode, access mode) already recorded at level `access`.
  std::set<std::tuple<pid_t, ino_t, int>> seen_;
  std::atomic<std::int64_t> last_refusal_{0};
};

}  // namespace wardfs::fuse
