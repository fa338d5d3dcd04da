#include "keystore/secret_input.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "crypto/bytes.h"

namespace wardfs::keystore::detail {

namespace {

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

// Turns terminal echo off for its lifetime and restores the old settings after.
class QuietTty {
 public:
  explicit QuietTty(int tty) : tty_(tty) {
    have_attrs_ = ::tcgetattr(tty_, &old_) == 0;
    if (!have_attrs_) return;
    struct termios quiet = old_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ICANON;
    ::tcsetattr(tty_, TCSAFLUSH, &quiet);
  }
  ~QuietTty() {
    if (have_attrs_) ::tcsetattr(tty_, TCSAFLUSH, &old_);
  }
  QuietTty(const QuietTty&) = delete;
  QuietTty& operator=(const QuietTty&) = delete;

 private:
  int tty_;
  bool have_attrs_ = false;
  struct termios old_ {};
};

[[noreturn]] void refuse_not_regular(const std::string& name) {
  fail(ErrorKind::usage,
       name + " is not a regular file (a FIFO, device or directory is never read as a secret)");
}

// A secret file must be the mounting user's (or root's) and hidden from everyone else:
// a key file another user owns is a key that user knows, or can change.
void require_private(const struct stat& st, const std::string& name,
                     const std::filesystem::path& path) {
  const uid_t me = ::geteuid();
  if (st.st_uid != me && st.st_uid != 0) {
    fail(ErrorKind::usage, name + " is owned by uid " + std::to_string(st.st_uid) +
                               ", not by you (uid " + std::to_string(me) +
                               ") or root, so its owner may know or change it; use a file of "
                               "your own (if this one is yours: chown " +
                               std::to_string(me) + " " + path.string() + ")");
  }
  if ((st.st_mode & 077) != 0) {
    fail(ErrorKind::usage,
         name + " is readable by group or others; run: chmod 600 " + path.string());
  }
}

}  // namespace

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
  return SecretBytes::copy_of(crypto::ByteView(buf.data(), len));
}

SecretBytes read_secret_file(const std::filesystem::path& path, const std::string& what,
                             bool private_only) {
  const std::string name = what + " " + path.string();
  // Symlinks are followed: the checks below apply to the file they lead to. stat first, so
  // a device is never even opened; O_NONBLOCK, so a FIFO swapped in after the stat cannot
  // hold the open waiting for a writer (fstat then refuses it).
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) refuse_not_regular(name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) fail(ErrorKind::usage, "cannot open " + name + ": " + std::strerror(errno));
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) refuse_not_regular(name);
  if (private_only) require_private(st, name, path);
  return read_secret_fd(fd.get(), name);
}

SecretBytes first_line(const SecretBytes& text) {
  std::size_t len = 0;
  while (len < text.size() && text.data()[len] != '\n' && text.data()[len] != '\r') ++len;
  return SecretBytes::copy_of(crypto::ByteView(text.data(), len));
}

SecretBytes prompt_tty(const std::string& prompt, const std::string& no_tty_hint) {
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC));
  if (!tty) fail(ErrorKind::usage, no_tty_hint);
  SecretBytes line(kMaxSecretInput);
  std::size_t len = 0;
  {
    QuietTty quiet(tty.get());
    (void)!::write(tty.get(), prompt.data(), prompt.size());
    char c = 0;
    while (len < line.size() && ::read(tty.get(), &c, 1) == 1 && c != '\n') {
      line.data()[len++] = static_cast<std::uint8_t>(c);
    }
    c = 0;
  }
  (void)!::write(tty.get(), "\n", 1);
  return SecretBytes::copy_of(crypto::ByteView(line.data(), len));
}

}  // namespace wardfs::keystore::detail
