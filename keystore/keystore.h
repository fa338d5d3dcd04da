// Keystores hold the key-encryption key (KEK) and wrap/unwrap data keys with it.
// Backends: passphrase (Argon2id), key file, external command, PKCS#11 token.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/errors.h"
#include "crypto/bytes.h"
#include "crypto/config.h"
#include "crypto/secret.h"

namespace wardfs::keystore {

using crypto::Bytes;
using crypto::ByteView;
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

// Writes "wardfs: keystore IDENTITY" to stderr.
void notify_stderr(const std::string& identity);

// What the user handed us to unlock a volume; at most one of passfile/keyfile is set.
struct Credentials {
  std::optional<std::filesystem::path> passfile;  // "-" means stdin
  std::optional<std::filesystem::path> keyfile;
  // PKCS#11 user PIN file; without it: env WARDFS_PKCS11_PIN, the URI's pin-source, a prompt.
  std::optional<std::filesystem::path> pin_file;
  // Limit for a `command` keystore; without it: env WARDFS_COMMAND_TIMEOUT (seconds), else 30 s.
  std::optional<std::chrono::milliseconds> command_timeout;
  bool interactive = true;  // may prompt on the terminal
  // A command, pkcs11 or key file keystore named by a config is used only if the user
  // approved it on this machine (see keystore/trust.h), since configs live in the
  // untrusted backing directory; true skips that check (tests, callers that vetted the
  // spec themselves). A key file given here (keyfile) is the user's choice: no approval.
  bool trust_config_keystore = false;
  // The keystore=SPEC mount option, written by whoever owns the fstab line or unit: the
  // config must name exactly this keystore (else a usage error), and a command, pkcs11 or
  // key file one then counts as approved, since an administrator vouched for it.
  std::optional<std::string> expected_keystore;
  // Told which keystore open_keystore opened (identity only, never key material).
  std::function<void(const std::string&)> notify = notify_stderr;
};

// Argon2id defaults: about half a second and 256 MiB on a 2-core CI machine.
crypto::KdfParams default_kdf_params();

// A KEK held in locked memory, wrapping with XChaCha20-Poly1305 (random 192-bit nonce).
std::unique_ptr<Keystore> make_local_keystore(SecretBytes kek, std::string identity);

SecretBytes derive_passphrase_kek(const SecretBytes& passphrase, const crypto::KdfParams& params);
// Raw 32 bytes, or 64 hex digits, or base64 of 32 bytes, optionally newline-terminated.
// Refuses anything but a regular file (without blocking on a FIFO), files that group or
// others can read, and files owned by anyone but the caller or root. Symlinks are followed.
SecretBytes read_key_file(const std::filesystem::path& path);
// The same encodings as a key file, from any source; `what` names it in errors. Without
// `allow_raw` only hex and base64 count, so 31 characters and a newline are no key.
// Throws WardError(kind) when the text is not a 32-byte key.
SecretBytes decode_key_text(const SecretBytes& text, const std::string& what, ErrorKind kind,
                            bool allow_raw = true);
// From a file (first line), stdin ("-"), or an echo-free terminal prompt.
SecretBytes read_passphrase(const Credentials& creds, const std::string& prompt, bool confirm);
SecretBytes generate_key_file(const std::filesystem::path& path);

// Builds the keystore a volume's config names, fed by the user's credentials.
std::unique_ptr<Keystore> open_keystore(const crypto::KeystoreSpec& spec, const Credentials& creds);

// Parses a --keystore argument: "passphrase", "keyfile:PATH", "command:PROG ARGS...",
// "command:sh:SHELL-LINE" or a PKCS#11 URI "pkcs11:token=...;object=...?module-path=...".
// Key file paths become absolute. Throws WardError(usage).
crypto::KeystoreSpec parse_keystore_arg(std::string_view text);

// The weakest Argon2id wardfs accepts for a new passphrase: libsodium's INTERACTIVE
// level, i.e. at least 64 MiB, and passes x memory at least 2 x 64 MiB (so 1 pass over
// 128 MiB or more also passes). A volume below it still mounts, with a loud warning.
bool kdf_below_floor(const crypto::KdfParams& params);

struct NewKeystoreOptions {
  std::optional<std::uint64_t> kdf_ops;  // Argon2id passes
  std::optional<std::uint64_t> kdf_mem;  // Argon2id bytes
  bool allow_weak_kdf = false;           // --insecure-kdf: accept both below the floor
  bool create_keyfile = false;           // generate a missing key file
  bool create_token_key = false;         // generate a missing AES key on the PKCS#11 token
};

// The keystore for a new or re-wrapped volume. Fills in what the config must keep:
// fresh Argon2id parameters and salt for a passphrase (asked twice on a terminal).
std::unique_ptr<Keystore> create_keystore(crypto::KeystoreSpec& spec, const Credentials& creds,
                                          const NewKeystoreOptions& options);

}  // namespace wardfs::keystore
