#include "keystore/trust.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "keystore/secret_input.h"

namespace wardfs::keystore::detail {

namespace fs = std::filesystem;

namespace {

bool file_lists(const fs::path& file, const std::string& line) {
  std::ifstream in(file);
  std::string entry;
  while (std::getline(in, entry)) {
    if (entry == line) return true;
  }
  return false;
}

void warn(const std::string& message) {
  const std::string text = "wardfs: warning: " + message + "\n";
  (void)!::write(STDERR_FILENO, text.data(), text.size());
}

// What using `spec` means, for the refusal.
std::string use_of(const crypto::KeystoreSpec& spec) {
  if (spec.type == "command") return "run the key command '" + spec.location + "'";
  if (spec.type == "keyfile") return "read the key file " + spec.location;
  return "use the PKCS#11 keystore " + spec.location;
}

}  // namespace

fs::path user_config_dir() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg != nullptr && *xdg == '/') return fs::path(xdg) / "wardfs";
  const char* home = std::getenv("HOME");
  const fs::path base = home != nullptr && *home == '/' ? fs::path(home) : fs::path("/root");
  return base / ".config" / "wardfs";
}

fs::path user_trust_file() { return user_config_dir() / "trusted-keystores"; }

std::string trust_line(const crypto::KeystoreSpec& spec) {
  return nlohmann::json::array({spec.type, spec.location}).dump();
}

void require_trusted(const crypto::KeystoreSpec& spec) {
  const std::string line = trust_line(spec);
  if (file_lists(user_trust_file(), line) || file_lists(kSystemTrustFile, line)) return;
  const std::string or_give =
      spec.type == "keyfile" ? " (or give the key file yourself: --keyfile FILE)" : "";
  throw WardError(ErrorKind::usage,
                  "the volume's config asks wardfs to " + use_of(spec) +
                      ", which you have not approved on this machine (the config lives in the "
                      "backing directory, which wardfs does not trust to pick programs, modules "
                      "or key files). If it is yours, approve it with: echo '" +
                      line + "' >> " + user_trust_file().string() + or_give);
}

void append_private_line(const fs::path& file, const std::string& line,
                         const std::string& failure) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  ::chmod(file.parent_path().c_str(), 0700);
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  const std::string text = line + "\n";
  // One write of one line to an O_APPEND file: concurrent mounts never interleave lines.
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    warn(failure + ": cannot write " + file.string() + " (" + std::strerror(errno) + ")");
  }
}

void record_trusted(const crypto::KeystoreSpec& spec) {
  const fs::path file = user_trust_file();
  const std::string line = trust_line(spec);
  if (file_lists(file, line)) return;
  append_private_line(file, line, "cannot approve this keystore; mounting will ask you to");
}

}  // namespace wardfs::keystore::detail
