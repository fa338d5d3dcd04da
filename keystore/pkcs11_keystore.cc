// The `pkcs11` keystore: the KEK is an AES-256 key on a PKCS#11 token (an HSM, a
// cloud KMS's PKCS#11 module, SoftHSM2 in tests) and never leaves it. DEKs are wrapped
// inside the token with CKM_AES_GCM: wrapped = iv(12) | ciphertext(32) | tag(16), with
// the wrap AD as GCM's additional authenticated data.
#include <cstdlib>
#include <string>

#include "base/errors.h"
#include "keystore/backends.h"
#include "keystore/pkcs11_module.h"
#include "keystore/pkcs11_uri.h"
#include "keystore/secret_input.h"

namespace wardfs::keystore::detail {

namespace {

constexpr std::size_t kIvSize = 12;
constexpr std::size_t kTagSize = 16;

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

std::string token_name(const Pkcs11Uri& uri) {
  return uri.token.empty() ? "with serial " + uri.serial : "'" + uri.token + "'";
}

CK_SLOT_ID find_token(const Pkcs11Module& module, const Pkcs11Uri& uri) {
  std::string seen;
  for (const CK_SLOT_ID slot : module.token_slots()) {
    const CK_TOKEN_INFO info = module.token_info(slot);
    const std::string label = padded_text(info.label, sizeof info.label);
    const std::string serial = padded_text(info.serialNumber, sizeof info.serialNumber);
    const bool initialized = (info.flags & CKF_TOKEN_INITIALIZED) != 0;
    if (initialized && (uri.token.empty() || uri.token == label) &&
        (uri.serial.empty() || uri.serial == serial)) {
      return slot;
    }
    if (initialized) seen += (seen.empty() ? "'" : ", '") + label + "'";
  }
  fail(ErrorKind::wrong_key, "no PKCS#11 token " + token_name(uri) + " in module " + module.path() +
                                 " (tokens present: " + (seen.empty() ? "none" : seen) + ")");
}

// The user PIN: --pin-file, then $WARDFS_PKCS11_PIN, then the URI's pin-source, then
// a prompt. nullopt when the token has its own PIN pad.
std::optional<SecretBytes> read_pin(const Pkcs11Uri& uri, const Credentials& creds,
                                    const CK_TOKEN_INFO& info) {
  const std::string what = "PIN file";
  if (creds.pin_file) return first_line(read_secret_file(*creds.pin_file, what, true));
  if (const char* env = std::getenv("WARDFS_PKCS11_PIN"); env != nullptr && *env != '\0') {
    return SecretBytes::copy_of(crypto::as_bytes(env));
  }
  if (!uri.pin_source.empty()) return first_line(read_secret_file(uri.pin_source, what, true));
  if ((info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0) return std::nullopt;
  const std::string hint = "the PKCS#11 token " + token_name(uri) +
                           " needs its user PIN: set WARDFS_PKCS11_PIN, add "
                           "pin-source=file:PATH to the URI, or give --pin-file FILE";
  if (!creds.interactive) fail(ErrorKind::usage, hint);
  return prompt_tty("PIN for token " + token_name(uri) + ": ", hint);
}

void login(const Pkcs11Session& session, const std::optional<SecretBytes>& pin,
           const Pkcs11Uri& uri) {
  auto* pin_ptr = pin ? const_cast<CK_UTF8CHAR*>(pin->data()) : nullptr;
  const CK_ULONG pin_len = pin ? pin->size() : 0;
  const CK_RV rv = session.fn()->C_Login(session.handle(), CKU_USER, pin_ptr, pin_len);
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) return;
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
    fail(ErrorKind::wrong_key, "wrong PIN for PKCS#11 token " + token_name(uri));
  }
  if (rv == CKR_PIN_LOCKED) {
    fail(ErrorKind::wrong_key, "the PIN of PKCS#11 token " + token_name(uri) + " is locked");
  }
  fail(ErrorKind::io, "cannot log in to PKCS#11 token " + token_name(uri) + ": " + rv_name(rv));
}

std::optional<CK_OBJECT_HANDLE> find_key(const Pkcs11Session& session, const Pkcs11Uri& uri) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_ATTRIBUTE query[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_LABEL, const_cast<char*>(uri.object.data()), uri.object.size()},
  };
  CK_FUNCTION_LIST* fn = session.fn();
  CK_RV rv = fn->C_FindObjectsInit(session.handle(), query, std::size(query));
  if (rv != CKR_OK) fail(ErrorKind::io, "C_FindObjectsInit failed: " + rv_name(rv));
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  rv = fn->C_FindObjects(session.handle(), found, 2, &count);
  fn->C_FindObjectsFinal(session.handle());
  if (rv != CKR_OK) fail(ErrorKind::io, "C_FindObjects failed: " + rv_name(rv));
  if (count > 1) {
    fail(ErrorKind::usage, "token " + token_name(uri) + " holds several AES keys labelled '" +
                               uri.object + "'; give each key its own label");
  }
  if (count == 0) return std::nullopt;
  return found[0];
}

CK_OBJECT_HANDLE generate_key(const Pkcs11Session& session, const Pkcs11Uri& uri) {
  CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_ULONG len = 32;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_VALUE_LEN, &len, sizeof len},
      {CKA_LABEL, const_cast<char*>(uri.object.data()), uri.object.size()},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_ENCRYPT, &yes, sizeof yes},
      {CKA_DECRYPT, &yes, sizeof yes},
  };
  CK_OBJECT_HANDLE key = 0;
  const CK_RV rv =
      session.fn()->C_GenerateKey(session.handle(), &mech, tmpl, std::size(tmpl), &key);
  if (rv != CKR_OK) {
    fail(ErrorKind::io, "cannot create AES key '" + uri.object + "' on token " + token_name(uri) +
                            ": " + rv_name(rv));
  }
  return key;
}

CK_GCM_PARAMS gcm_params(const std::uint8_t* iv, ByteView ad) {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<CK_BYTE*>(iv);
  p.ulIvLen = kIvSize;
  p.ulIvBits = kIvSize * 8;
  p.pAAD = const_cast<CK_BYTE*>(ad.data());
  p.ulAADLen = ad.size();
  p.ulTagBits = kTagSize * 8;
  return p;
}

// Codes with which tokens report a blob that does not authenticate under the key.
bool is_bad_blob(CK_RV rv) {
  return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
         rv == CKR_FUNCTION_FAILED || rv == CKR_GENERAL_ERROR;
}

class Pkcs11Keystore final : public Keystore {
 public:
  Pkcs11Keystore(std::shared_ptr<Pkcs11Module> module, std::unique_ptr<Pkcs11Session> session,
                 CK_OBJECT_HANDLE key, std::string identity)
      : module_(std::move(module)),
        session_(std::move(session)),
        key_(key),
        identity_(std::move(identity)) {}

  std::string identity() const override { return identity_; }

  Bytes wrap(ByteView dek, ByteView ad) override {
    Bytes out(kIvSize + dek.size() + kTagSize);
    crypto::random_fill(std::span(out).first(kIvSize));
    CK_GCM_PARAMS params = gcm_params(out.data(), ad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    CK_FUNCTION_LIST* fn = session_->fn();
    CK_RV rv = fn->C_EncryptInit(session_->handle(), &mech, key_);
    CK_ULONG len = out.size() - kIvSize;
    if (rv == CKR_OK) {
      rv = fn->C_Encrypt(session_->handle(), const_cast<CK_BYTE*>(dek.data()), dek.size(),
                         out.data() + kIvSize, &len);
    }
    if (rv != CKR_OK || len != dek.size() + kTagSize) {
      fail(ErrorKind::io, "AES-GCM wrap on the PKCS#11 token failed: " + rv_name(rv));
    }
    return out;
  }

  std::optional<SecretBytes> unwrap(ByteView wrapped, ByteView ad) override {
    if (wrapped.size() < kIvSize + kTagSize) return std::nullopt;
    CK_GCM_PARAMS params = gcm_params(wrapped.data(), ad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    CK_FUNCTION_LIST* fn = session_->fn();
    CK_RV rv = fn->C_DecryptInit(session_->handle(), &mech, key_);
    if (rv != CKR_OK) fail(ErrorKind::io, "C_DecryptInit (AES-GCM) failed: " + rv_name(rv));
    const ByteView sealed = wrapped.subspan(kIvSize);
    SecretBytes plain(sealed.size());
    CK_ULONG len = plain.size();
    rv = fn->C_Decrypt(session_->handle(), const_cast<CK_BYTE*>(sealed.data()), sealed.size(),
                       plain.data(), &len);
    if (is_bad_blob(rv)) return std::nullopt;
    if (rv != CKR_OK)
      fail(ErrorKind::io, "AES-GCM unwrap on the PKCS#11 token failed: " + rv_name(rv));
    return SecretBytes::copy_of(ByteView(plain.data(), len));
  }

 private:
  std::shared_ptr<Pkcs11Module> module_;
  std::unique_ptr<Pkcs11Session> session_;
  CK_OBJECT_HANDLE key_;
  std::string identity_;
};

std::string identity_of(const Pkcs11Uri& uri, const std::string& module) {
  std::string id = "pkcs11:";
  if (!uri.token.empty()) id += "token=" + uri.token + ";";
  if (!uri.serial.empty()) id += "serial=" + uri.serial + ";";
  return id + "object=" + uri.object + " (module " + module + ")";
}

}  // namespace

std::unique_ptr<Keystore> open_pkcs11_keystore(const std::string& text, const Credentials& creds,
                                               bool create_key) {
  const Pkcs11Uri uri = parse_pkcs11_uri(text);
  const std::string module_path = pkcs11_module_for(uri);
  auto module = Pkcs11Module::load(module_path);
  const CK_SLOT_ID slot = find_token(*module, uri);
  const CK_TOKEN_INFO info = module->token_info(slot);
  auto session = std::make_unique<Pkcs11Session>(module, slot, create_key);
  login(*session, read_pin(uri, creds, info), uri);
  std::optional<CK_OBJECT_HANDLE> key = find_key(*session, uri);
  if (!key && create_key) key = generate_key(*session, uri);
  if (!key) {
    fail(ErrorKind::wrong_key, "PKCS#11 token " + token_name(uri) + " has no AES key labelled '" +
                                   uri.object +
                                   "' (create one with 'wardfs init --create-key' or "
                                   "pkcs11-tool --keygen --key-type AES:32)");
  }
  return std::make_unique<Pkcs11Keystore>(std::move(module), std::move(session), *key,
                                          identity_of(uri, module_path));
}

}  // namespace wardfs::keystore::detail
