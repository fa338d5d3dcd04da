#include "audit/keystore_audit.h"

#include "base/errors.h"

namespace wardfs::audit {

void AuditedKeystore::note(std::string event, std::string result) {
  Event e;
  e.event = std::move(event);
  e.keystore = inner_.identity();
  e.result = std::move(result);
  log_.record(std::move(e));
}

crypto::Bytes AuditedKeystore::wrap(crypto::ByteView dek, crypto::ByteView ad) {
  try {
    crypto::Bytes out = inner_.wrap(dek, ad);
    note("wrap", "ok");
    return out;
  } catch (const std::exception&) {
    note("wrap", "failed");
    throw;
  }
}

std::optional<crypto::SecretBytes> AuditedKeystore::unwrap(crypto::ByteView wrapped,
                                                           crypto::ByteView ad) {
  try {
    auto out = inner_.unwrap(wrapped, ad);
    note("unwrap", out ? "ok" : "refused");
    return out;
  } catch (const std::exception&) {
    note("unwrap", "failed");
    throw;
  }
}

}  // namespace wardfs::audit
