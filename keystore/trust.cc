#include "keystore/trust.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto/errors.h"
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

}  // namespace

fs::path user_trust_file() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg != nullptr && *xdg == '/') return fs::path(xdg) / "wardfs" / "trusted-keystores";
  const char* home = std::getenv("HOME");
  const fs::path base = home != nullptr && *home == '/' ? fs::path(home) : fs::path("/root");
  return base / ".config" / "wardfs" / "trusted-keystores";
}

std::string trust_line(const crypto::KeystoreSpec& spec) {
  return nlohmann::json::array({spec.type, spec.location}).dump();
}

void require_trusted(const crypto::KeystoreSpec& spec) {
  const std::string line = trust_line(spec);
  if (file_lists(user_trust_file(), line) || file_lists(kSystemTrustFile, line)) return;
  const std::string what = spec.type == "command" ? "run the key command '" + spec.location + "'"
                                                  : "use the PKCS#11 keystore " + spec.location;
  throw WardError(ErrorKind::usage,
                  "the volume's config asks wardfs to " + what +
                      ", which you have not approved on this machine (the config lives in the "
                      "backing directory, which wardfs does not trust to pick programs or "
                      "modules). If it is yours, approve it with: echo '" +
                      line + "' >> " + user_trust_file().string());
}

void record_trusted(const crypto::KeystoreSpec& spec) {
  const fs::path file = user_trust_file();
  const std::string line = trust_line(spec);
  if (file_lists(file, line)) return;
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  ::chmod(file.parent_path().c_str(), 0700);
  Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  const std::string text = line + "\n";
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    warn("cannot approve this keystore in " + file.string() + " (" + std::strerror(errno) +
         "); mounting will ask you to");
  }
}

}  // namespace wardfs::keystore::detail
