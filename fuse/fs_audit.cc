// What the filesystem tells the audit log: opens (per the audit level), namespace
// changes at level `all`, integrity failures; and the fail-closed refusal of access.
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "fuse/filesystem.h"

namespace wardfs::fs {

namespace {
constexpr std::size_t kMaxRememberedOpens = 1U << 16;

audit::Principal principal_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return audit::Principal::of_process(ctx->uid, ctx->gid, ctx->pid);
}

std::string_view access_mode_name(int flags) {
  switch (flags & O_ACCMODE) {
    case O_WRONLY:
      return "write";
    case O_RDWR:
      return "read-write";
    default:
      return "read";
  }
}
}  // namespace

bool WardFs::audit_blocks_access(fuse_req_t req, const std::string& path) {
  audit::AuditLog* log = options_.audit;
  if (log == nullptr || log->allows_access()) return false;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  if (audit_last_refusal_.exchange(now) != now) {
    spdlog::error(
        "refusing to open {}: the audit log {} cannot be written and the policy is fail-closed",
        path, log->options().path.string());
  }
  audit::Event e;
  e.event = "access_denied";
  e.principal = principal_of(req);
  e.path = path;
  e.result = "denied";
  e.detail = {{"reason", "audit log unavailable (fail-closed)"}};
  log->record(std::move(e));
  return true;
}

void WardFs::audit_open(fuse_req_t req, Inode& inode, int flags, bool created) {
  audit::AuditLog* log = options_.audit;
  if (log == nullptr || !log->wants(audit::Level::access)) return;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (!log->wants(audit::Level::all)) {
    std::lock_guard lock(audit_seen_mutex_);
    if (audit_seen_.size() >= kMaxRememberedOpens) audit_seen_.clear();
    if (!audit_seen_.emplace(ctx->pid, inode.ino, flags & O_ACCMODE).second) return;
  }
  audit::Event e;
  e.event = "open";
  e.principal = principal_of(req);
  e.path = inode.path();
  e.detail = {{"mode", access_mode_name(flags)}, {"created", created}};
  log->record(std::move(e));
}

void WardFs::audit_change(fuse_req_t req, std::string_view event, std::string path,
                          nlohmann::json detail) {
  audit::AuditLog* log = options_.audit;
  if (log == nullptr || !log->wants(audit::Level::all)) return;
  audit::Event e;
  e.event = std::string(event);
  e.principal = principal_of(req);
  e.path = std::move(path);
  e.detail = std::move(detail);
  log->record(std::move(e));
}

void WardFs::audit_integrity(const std::string& path, std::uint64_t chunk,
                             std::string_view reason) {
  audit::AuditLog* log = options_.audit;
  if (log == nullptr) return;
  audit::Event e;
  e.event = "integrity_failure";
  e.path = path;
  e.result = "failed";
  e.detail = {{"reason", reason}};
  if (chunk != volume::kHeaderChunk) e.detail["chunk"] = chunk;
  log->record(std::move(e));
}

}  // namespace wardfs::fs
