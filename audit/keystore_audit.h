// A keystore that tells the audit log about every call: each unwrap and wrap, with the
// backend's identity and whether it worked.
#pragma once

#include "audit/log.h"
#include "keystore/keystore.h"

namespace wardfs::audit {

class AuditedKeystore final : public keystore::Keystore {
 public:
  AuditedKeystore(keystore::Keystore& inner, AuditLog& log) : inner_(inner), log_(log) {}
  std::string identity() const override { return inner_.identity(); }
  crypto::Bytes wrap(crypto::ByteView dek, crypto::ByteView ad) override;
  std::optional<crypto::SecretBytes> unwrap(crypto::ByteView wrapped, crypto::ByteView ad) override;

 private:
  void note(std::string event, std::string result);
  keystore::Keystore& inner_;
  AuditLog& log_;
};

}  // namespace wardfs::audit
