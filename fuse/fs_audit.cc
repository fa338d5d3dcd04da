#include "fuse/fs_audit.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "volume/file_content.h"

namespace wardfs::fuse {

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

bool FsAudit::blocks_access(fuse_req_t req, const std::string& path) {
  audit::AuditLog* log = log_;
  if (log == nullptr || log->allows_access()) return false;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  if (last_refusal_.exchange(now) != now) {
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

void FsAudit::open(fuse_req_t req, ino_t ino, const std::string& path, int flags, bool created) {
  audit::AuditLog* log = log_;
  if (log == nullptr || !log->wants(audit::Level::access)) return;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (!log->wants(audit::Level::all)) {
    std::lock_guard lock(seen_mutex_);
    if (seen_.size() >= kMaxRememberedOpens) seen_.clear();
    if (!seen_.emplace(ctx->pid, ino, flags & O_ACCMODE).second) return;
  }
  audit::Event e;
  e.event = "open";
  e.principal = principal_of(req);
  e.path = path;
  e.detail = {{"mode", access_mode_name(flags)}, {"created", created}};
  log->record(std::move(e));
}

void FsAudit::change(fuse_req_t req, std::string_view event, std::string path,
                     nlohmann::json detail) {
  audit::AuditLog* log = log_;
  if (log == nullptr || !log->wants(audit::Level::all)) return;
  audit::Event e;
  e.event = std::string(event);
  e.principal = principal_of(req);
  e.path = std::move(path);
  e.detail = std::move(detail);
  log->record(std::move(e));
}

void FsAudit::integrity(const std::string& path, std::uint64_t chunk, std::string_view reason) {
  audit::AuditLog* log = log_;
  if (log == nullptr) return;
  audit::Event e;
  e.event = "integrity_failure";
  e.path = path;
  e.result = "failed";
  e.detail = {{"reason", reason}};
  if (chunk != volume::kHeaderChunk) e.detail["chunk"] = chunk;
  log->record(std::move(e));
}

}  // namespace wardfs::fuse
