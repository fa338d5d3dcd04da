// Local KEKs: a passphrase through Argon2id, or a key file. Both wrap with
// XChaCha20-Poly1305 in this process.
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "crypto/aead.h"
#include "crypto/derive_in_child.h"
#include "keystore/keystore.h"
#include "keystore/secret_input.h"

namespace wardfs::keystore {

namespace {

using detail::first_line;

class LocalKeystore final : public Keystore {
 public:
  LocalKeystore(SecretBytes kek, std::string identity)
      : aead_(crypto::make_aead(crypto::CipherId::xchacha20poly1305, kek.view())),
        identity_(std::move(identity)) {}
  std::string identity() const override { return identity_; }

  Bytes wrap(ByteView dek, ByteView ad) override {
    const std::size_t nlen = aead_->nonce_size();
    Bytes out(nlen + dek.size() + crypto::kAeadTagSize);
    crypto::random_fill(std::span(out).first(nlen));
    aead_->seal(std::span(out).subspan(nlen), dek, ByteView(out).first(nlen), ad);
    return out;
  }

  std::optional<SecretBytes> unwrap(ByteView wrapped, ByteView ad) override {
    const std::size_t nlen = aead_->nonce_size();
    if (wrapped.size() < nlen + crypto::kAeadTagSize) return std::nullopt;
    SecretBytes dek(wrapped.size() - nlen - crypto::kAeadTagSize);
    if (!aead_->open(dek.span(), wrapped.subspan(nlen), wrapped.first(nlen), ad)) {
      return std::nullopt;
    }
    return dek;
  }

 private:
  std::unique_ptr<crypto::Aead> aead_;
  std::string identity_;
};

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

bool decode_hex(const SecretBytes& line, SecretBytes& key) {
  std::size_t len = 0;
  const char* src = reinterpret_cast<const char*>(line.data());
  return sodium_hex2bin(key.data(), key.size(), src, line.size(), nullptr, &len, nullptr) == 0 &&
         len == key.size();
}

bool decode_base64(const SecretBytes& line, SecretBytes& key) {
  const char* src = reinterpret_cast<const char*>(line.data());
  for (int variant :
       {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE,
        sodium_base64_VARIANT_ORIGINAL_NO_PADDING, sodium_base64_VARIANT_URLSAFE_NO_PADDING}) {
    std::size_t len = 0;
    if (sodium_base642bin(key.data(), key.size(), src, line.size(), nullptr, &len, nullptr,
                          variant) == 0 &&
        len == key.size()) {
      return true;
    }
  }
  return false;
}

// The first line without surrounding blanks (tabs, spaces).
SecretBytes trimmed_first_line(const SecretBytes& text) {
  const SecretBytes line = first_line(text);
  std::size_t begin = 0;
  std::size_t end = line.size();
  while (begin < end && (line.data()[begin] == ' ' || line.data()[begin] == '\t')) ++begin;
  while (end > begin && (line.data()[end - 1] == ' ' || line.data()[end - 1] == '\t')) --end;
  return SecretBytes::copy_of(ByteView(line.data() + begin, end - begin));
}

SecretBytes read_passfile(const std::filesystem::path& path) {
  if (path == "-") return first_line(detail::read_secret_fd(STDIN_FILENO, "passphrase from stdin"));
  return first_line(detail::read_secret_file(path, "passphrase file", true));
}

}  // namespace

void notify_stderr(const std::string& identity) {
  const std::string line = "wardfs: keystore " + identity + "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

crypto::KdfParams default_kdf_params() {
  crypto::ensure_sodium();
  crypto::KdfParams p;
  p.opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
  p.memlimit = crypto_pwhash_MEMLIMIT_MODERATE;  // 256 MiB
  p.salt.resize(crypto_pwhash_SALTBYTES);
  crypto::random_fill(p.salt);
  return p;
}

std::unique_ptr<Keystore> make_local_keystore(SecretBytes kek, std::string identity) {
  if (kek.size() != crypto::kAeadKeySize) {
    fail(ErrorKind::usage, "a key-encryption key is 32 bytes");
  }
  return std::make_unique<LocalKeystore>(std::move(kek), std::move(identity));
}

SecretBytes derive_passphrase_kek(const SecretBytes& passphrase, const crypto::KdfParams& params) {
  crypto::ensure_sodium();
  if (params.salt.size() != crypto_pwhash_SALTBYTES) {
    fail(ErrorKind::corrupt_volume, "config field 'keystore.kdf.salt': wrong length");
  }
  // Argon2id's memory (256 MiB by default) is touched in a child process: a mount
  // daemon's peak RSS would otherwise carry it for its whole life.
  auto kek = crypto::derive_in_child(crypto::kAeadKeySize, [&](std::span<std::uint8_t> out) {
    return crypto_pwhash(out.data(), out.size(), reinterpret_cast<const char*>(passphrase.data()),
                         passphrase.size(), params.salt.data(), params.opslimit, params.memlimit,
                         crypto_pwhash_ALG_ARGON2ID13) == 0;
  });
  if (!kek) {
    fail(ErrorKind::io,
         "Argon2id ran out of memory (memlimit " + std::to_string(params.memlimit) + " bytes)");
  }
  return std::move(*kek);
}

SecretBytes decode_key_text(const SecretBytes& text, const std::string& what, ErrorKind kind,
                            bool allow_raw) {
  crypto::ensure_sodium();
  if (allow_raw && text.size() == crypto::kAeadKeySize) return SecretBytes::copy_of(text.view());
  const SecretBytes line = trimmed_first_line(text);
  SecretBytes key(crypto::kAeadKeySize);
  if (decode_hex(line, key) || decode_base64(line, key)) return key;
  fail(kind, what + " must hold " + (allow_raw ? "32 raw bytes, " : "") +
                 "64 hex digits or base64 of 32 bytes (got " + std::to_string(text.size()) +
                 " bytes that are none of these)");
}

SecretBytes read_key_file(const std::filesystem::path& path) {
  const SecretBytes text = detail::read_secret_file(path, "key file", true);
  return decode_key_text(text, "key file " + path.string(), ErrorKind::usage);
}

SecretBytes generate_key_file(const std::filesystem::path& path) {
  SecretBytes key = SecretBytes::random(crypto::kAeadKeySize);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    fail(ErrorKind::usage, "cannot create key file " + path.string() + ": " + std::strerror(errno));
  }
  SecretBytes hex(crypto::kAeadKeySize * 2 + 1);
  sodium_bin2hex(reinterpret_cast<char*>(hex.data()), hex.size(), key.data(), key.size());
  hex.data()[crypto::kAeadKeySize * 2] = '\n';  // replaces the terminating NUL
  const bool ok = ::write(fd.get(), hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) &&
                  ::fsync(fd.get()) == 0;
  if (!ok) fail(ErrorKind::io, "writing key file " + path.string() + ": " + std::strerror(errno));
  return key;
}

SecretBytes read_passphrase(const Credentials& creds, const std::string& prompt, bool confirm) {
  static const std::string kNoTty =
      "no terminal to ask for the passphrase; use --passfile FILE or --passfile -";
  SecretBytes pass;
  if (creds.passfile) {
    pass = read_passfile(*creds.passfile);
  } else if (creds.interactive) {
    pass = detail::prompt_tty(prompt, kNoTty);
    if (confirm) {
      const SecretBytes again = detail::prompt_tty("Repeat passphrase: ", kNoTty);
      if (again.size() != pass.size() ||
          sodium_memcmp(again.data(), pass.data(), pass.size()) != 0) {
        fail(ErrorKind::usage, "the passphrases do not match");
      }
    }
  } else {
    fail(ErrorKind::usage, "this volume needs a passphrase: give --passfile FILE (or - for stdin)");
  }
  if (pass.empty()) fail(ErrorKind::usage, "the passphrase is empty");
  return pass;
}

}  // namespace wardfs::keystore
