#include "volume/config_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "base/errors.h"

namespace wardfs::volume {

crypto::VolumeConfig load_config(const std::filesystem::path& cipher_dir) {
  const auto path = cipher_dir / crypto::kConfigFileName;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw WardError(ErrorKind::corrupt_volume,
                    "cannot read " + path.string() + ": " + std::strerror(errno) +
                        " (is this a wardfs volume? create one with 'wardfs init')");
  }
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return crypto::parse_config(text.str());
  } catch (const WardError& e) {
    throw WardError(e.kind(), path.string() + ": " + e.what());
  }
}

void save_config_atomic(const std::filesystem::path& cipher_dir,
                        const crypto::VolumeConfig& config) {
  const auto final_path = cipher_dir / crypto::kConfigFileName;
  const auto temp_path = cipher_dir / (std::string(crypto::kConfigFileName) + ".tmp");
  const std::string text = crypto::serialize_config(config);
  // A temp file left by a crash may be read-only: remove it rather than truncate it.
  ::unlink(temp_path.c_str());
  UniqueFd fd(::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd)
    throw WardError(ErrorKind::io, "creating " + temp_path.string() + ": " + std::strerror(errno));
  const ssize_t n = pwrite_full(fd.get(), text.data(), text.size(), 0);
  const int err = n < 0 ? static_cast<int>(-n) : (::fsync(fd.get()) != 0 ? errno : 0);
  fd.reset();
  if (err != 0 || static_cast<std::size_t>(n) != text.size()) {
    ::unlink(temp_path.c_str());
    throw WardError(ErrorKind::io,
                    "writing " + temp_path.string() + ": " + std::strerror(err != 0 ? err : EIO));
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(temp_path.c_str());
    throw WardError(ErrorKind::io,
                    "replacing " + final_path.string() + ": " + std::strerror(rename_err));
  }
  const UniqueFd dir(::open(cipher_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

ConfigLock::ConfigLock(const std::filesystem::path& cipher_dir) {
  const auto path = cipher_dir / "wardfs.lock";
  fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd_)
    throw WardError(ErrorKind::io, "cannot open " + path.string() + ": " + std::strerror(errno));
  while (::flock(fd_.get(), LOCK_EX) != 0) {
    if (errno != EINTR)
      throw WardError(ErrorKind::io, "cannot lock " + path.string() + ": " + std::strerror(errno));
  }
}

}  // namespace wardfs::volume
