#include "keystore/keystore.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "crypto/aead.h"
#include "crypto/errors.h"

namespace wardfs::keystore {

namespace {

constexpr std::size_t kMaxSecretInput = 4096;

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

// Reads at most kMaxSecretInput bytes from fd straight into locked memory.
SecretBytes read_secret_fd(int fd, const std::string& what) {
  SecretBytes buf(kMaxSecretInput + 1);
  std::size_t len = 0;
  while (len < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(ErrorKind::io, "reading " + what + ": " + std::strerror(errno));
    if (n == 0) break;
    len += static_cast<std::size_t>(n);
  }
  if (len > kMaxSecretInput) fail(ErrorKind::usage, what + " is larger than 4 KiB");
  return SecretBytes::copy_of(ByteView(buf.data(), len));
}

SecretBytes first_line(const SecretBytes& text) {
  std::size_t len = 0;
  while (len < text.size() && text.data()[len] != '\n' && text.data()[len] != '\r') ++len;
  return SecretBytes::copy_of(ByteView(text.data(), len));
}

SecretBytes prompt_tty(const std::string& prompt) {
  const int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (tty < 0) {
    fail(ErrorKind::usage, "no terminal to ask for the passphrase; use --passfile FILE or --passfile -");
  }
  struct termios old_attrs {};
  const bool have_attrs = ::tcgetattr(tty, &old_attrs) == 0;
  if (have_attrs) {
    struct termios quiet = old_attrs;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ICANON;
    ::tcsetattr(tty, TCSAFLUSH, &quiet);
  }
  (void)!::write(tty, prompt.data(), prompt.size());
  SecretBytes line(kMaxSecretInput);
  std::size_t len = 0;
  char c = 0;
  while (len < line.size() && ::read(tty, &c, 1) == 1 && c != '\n') line.data()[len++] = static_cast<std::uint8_t>(c);
  c = 0;
  if (have_attrs) ::tcsetattr(tty, TCSAFLUSH, &old_attrs);
  (void)!::write(tty, "\n", 1);
  ::close(tty);
  return SecretBytes::copy_of(ByteView(line.data(), len));
}

}  // namespace

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
  if (kek.size() != crypto::kAeadKeySize) fail(ErrorKind::usage, "a key-encryption key is 32 bytes");
  return std::make_unique<LocalKeystore>(std::move(kek), std::move(identity));
}

SecretBytes derive_passphrase_kek(const SecretBytes& passphrase, const crypto::KdfParams& params) {
  crypto::ensure_sodium();
  if (params.salt.size() != crypto_pwhash_SALTBYTES) fail(ErrorKind::corrupt_volume, "config field 'keystore.kdf.salt': wrong length");
  SecretBytes kek(crypto::kAeadKeySize);
  if (crypto_pwhash(kek.data(), kek.size(), reinterpret_cast<const char*>(passphrase.data()),
                    passphrase.size(), params.salt.data(), params.opslimit, params.memlimit,
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    fail(ErrorKind::io, "Argon2id ran out of memory (memlimit " + std::to_string(params.memlimit) + " bytes)");
  }
  return kek;
}

SecretBytes read_key_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::usage, "cannot open key file " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::usage, "key file " + path.string() + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    fail(ErrorKind::usage, "key file " + path.string() + " is readable by group or others; run: chmod 600 " + path.string());
  }
  SecretBytes text = read_secret_fd(fd, "key file " + path.string());
  ::close(fd);
  if (text.size() == crypto::kAeadKeySize) return text;
  SecretBytes line = first_line(text);
  SecretBytes key(crypto::kAeadKeySize);
  std::size_t len = 0;
  const char* src = reinterpret_cast<const char*>(line.data());
  if (sodium_hex2bin(key.data(), key.size(), src, line.size(), nullptr, &len, nullptr) == 0 &&
      len == key.size()) {
    return key;
  }
  for (int variant : {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING, sodium_base64_VARIANT_URLSAFE_NO_PADDING}) {
    if (sodium_base642bin(key.data(), key.size(), src, line.size(), nullptr, &len, nullptr, variant) == 0 &&
        len == key.size()) {
      return key;
    }
  }
  fail(ErrorKind::usage, "key file " + path.string() + " must hold 32 raw bytes, 64 hex digits or base64 of 32 bytes");
}

SecretBytes generate_key_file(const std::filesystem::path& path) {
  SecretBytes key = SecretBytes::random(crypto::kAeadKeySize);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(ErrorKind::usage, "cannot create key file " + path.string() + ": " + std::strerror(errno));
  char hex[crypto::kAeadKeySize * 2 + 2];
  sodium_bin2hex(hex, sizeof hex - 1, key.data(), key.size());
  hex[crypto::kAeadKeySize * 2] = '\n';
  const bool ok = ::write(fd, hex, crypto::kAeadKeySize * 2 + 1) == crypto::kAeadKeySize * 2 + 1 && ::fsync(fd) == 0;
  sodium_memzero(hex, sizeof hex);
  ::close(fd);
  if (!ok) fail(ErrorKind::io, "writing key file " + path.string() + ": " + std::strerror(errno));
  return key;
}

SecretBytes read_passphrase(const Credentials& creds, const std::string& prompt, bool confirm) {
  SecretBytes pass;
  if (creds.passfile) {
    if (*creds.passfile == "-") {
      pass = first_line(read_secret_fd(STDIN_FILENO, "passphrase from stdin"));
    } else {
      const int fd = ::open(creds.passfile->c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail(ErrorKind::usage, "cannot open passphrase file " + creds.passfile->string() + ": " + std::strerror(errno));
      SecretBytes text = read_secret_fd(fd, "passphrase file " + creds.passfile->string());
      ::close(fd);
      pass = first_line(text);
    }
  } else if (creds.interactive) {
    pass = prompt_tty(prompt);
    if (confirm) {
      SecretBytes again = prompt_tty("Repeat passphrase: ");
      if (again.size() != pass.size() || sodium_memcmp(again.data(), pass.data(), pass.size()) != 0) {
        fail(ErrorKind::usage, "the passphrases do not match");
      }
    }
  } else {
    fail(ErrorKind::usage, "this volume needs a passphrase: give --passfile FILE (or - for stdin)");
  }
  if (pass.empty()) fail(ErrorKind::usage, "the passphrase is empty");
  return pass;
}

std::unique_ptr<Keystore> open_keystore(const crypto::KeystoreSpec& spec, const Credentials& creds) {
  if (creds.keyfile) {
    if (spec.type != "keyfile") fail(ErrorKind::usage, "this volume uses the '" + spec.type + "' keystore, not a key file");
    return make_local_keystore(read_key_file(*creds.keyfile), "keyfile:" + creds.keyfile->string());
  }
  if (spec.type == "passphrase") {
    if (!spec.kdf) fail(ErrorKind::corrupt_volume, "config field 'keystore.kdf': missing");
    const SecretBytes pass = read_passphrase(creds, "Passphrase: ", false);
    return make_local_keystore(derive_passphrase_kek(pass, *spec.kdf), "passphrase:argon2id");
  }
  if (spec.type == "keyfile") {
    if (spec.location.empty()) fail(ErrorKind::usage, "this volume needs a key file: give --keyfile FILE");
    return make_local_keystore(read_key_file(spec.location), "keyfile:" + spec.location);
  }
  fail(ErrorKind::usage, "keystore '" + spec.type + "' is not supported by this build yet");
}

}  // namespace wardfs::keystore
