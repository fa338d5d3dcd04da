// Keystores hold the key-encryption key (KEK) and wrap/unwrap data keys with it.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "crypto/bytes.h"
#include "crypto/config.h"
#include "crypto/secret.h"

namespace wardfs::keystore {

using crypto::ByteView;
using crypto::Bytes;
using crypto::SecretBytes;

class Keystore {
 public:
  virtual ~Keystore() = default;
  // Backend and key identity for logs and the audit trail; never secret.
  virtual std::string identity() const = 0;
  virtual Bytes wrap(ByteView dek, ByteView ad) = 0;
  // nullopt when this KEK did not wrap the blob (wrong key) or the AD differs.
  virtual std::optional<SecretBytes> unwrap(ByteView wrapped, ByteView ad) = 0;
};

// What the user handed us to unlock a volume; at most one of these is set.
struct Credentials {
  std::optional<std::filesystem::path> passfile;  // "-" means stdin
  std::optional<std::filesystem::path> keyfile;
  bool interactive = true;  // may prompt on the terminal
};

// Argon2id defaults: about half a second and 256 MiB on a 2-core CI machine.
crypto::KdfParams default_kdf_params();

// A KEK held in locked memory, wrapping with XChaCha20-Poly1305 (random 192-bit nonce).
std::unique_ptr<Keystore> make_local_keystore(SecretBytes kek, std::string identity);

SecretBytes derive_passphrase_kek(const SecretBytes& passphrase, const crypto::KdfParams& params);
// Raw 32 bytes, or 64 hex digits, or base64 of 32 bytes, optionally newline-terminated.
// Refuses files that group or others can read.
SecretBytes read_key_file(const std::filesystem::path& path);
// From a file (first line), stdin ("-"), or an echo-free terminal prompt.
SecretBytes read_passphrase(const Credentials& creds, const std::string& prompt, bool confirm);
SecretBytes generate_key_file(const std::filesystem::path& path);

// Builds the keystore a volume's config names, fed by the user's credentials.
std::unique_ptr<Keystore> open_keystore(const crypto::KeystoreSpec& spec, const Credentials& creds);

}  // namespace wardfs::keystore
