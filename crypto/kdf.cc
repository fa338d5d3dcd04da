#include "crypto/kdf.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace wardfs::crypto {

namespace {
struct KdfDeleter {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
}  // namespace

SecretBytes hkdf_sha256(ByteView ikm, ByteView salt, std::string_view info, std::size_t length) {
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) throw std::runtime_error("OpenSSL has no HKDF");
  std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter> ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) throw std::bad_alloc();

  std::string digest = "SHA256";
  // OpenSSL's parameter API takes non-const pointers; it only reads them.
  auto* ikm_ptr = const_cast<std::uint8_t*>(ikm.data());
  auto* salt_ptr = const_cast<std::uint8_t*>(salt.data());
  auto* info_ptr = const_cast<char*>(info.data());
  // An empty salt is left out: RFC 5869 then uses a string of zeros, as OpenSSL does.
  OSSL_PARAM params[5];
  std::size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest.data(), 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm_ptr, ikm.size());
  if (!salt.empty())
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt_ptr, salt.size());
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info_ptr, info.size());
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), length, params) != 1) {
    throw std::runtime_error("HKDF-SHA256 failed");
  }
  return out;
}

Mac32 hmac_sha256(ByteView key, ByteView message) {
  ensure_sodium();
  Mac32 mac{};
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, message.data(), message.size());
  crypto_auth_hmacsha256_final(&st, mac.data());
  sodium_memzero(&st, sizeof st);
  return mac;
}

Mac32 sha256(ByteView message) {
  ensure_sodium();
  Mac32 out{};
  crypto_hash_sha256(out.data(), message.data(), message.size());
  return out;
}

SecretBytes derive_audit_mac_key(ByteView audit_root, ByteView volume_id) {
  return hkdf_sha256(audit_root, volume_id, label::kAudit, 32);
}

}  // namespace wardfs::crypto
