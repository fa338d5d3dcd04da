#include "audit/append.h"

#include <iostream>

#include "audit/files.h"

namespace wardfs::audit {

LogOptions default_log_options(crypto::ByteView volume_id) {
  LogOptions options;
  options.path = default_log_path(crypto::base64url_encode(volume_id));
  return options;
}

bool append_now(crypto::ByteView volume_id, crypto::SecretBytes mac_key,
                std::vector<Event> events) {
  AuditLog log(default_log_options(volume_id), crypto::base64url_encode(volume_id));
  log.start(std::move(mac_key));
  for (auto& e : events) log.record(std::move(e));
  if (log.flush()) return true;
  warn_unwritten(log.options().path);
  return false;
}

void warn_unwritten(const std::filesystem::path& log) {
  // The log's own complaint, printed before this, says why.
  std::cerr << "wardfs: warning: could not write the audit log " << log
            << " (see above); set WARDFS_AUDIT_DIR to a writable directory\n";
}

}  // namespace wardfs::audit
