// Option values that several commands parse the same way (commands.h).
#include <unistd.h>

#include <string>

#include "base/errors.h"
#include "cli/commands.h"

namespace wardfs::cli {

std::optional<std::uint64_t> parse_size(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::size_t used = 0;
  std::uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string suffix = text.substr(used);
  if (suffix.empty()) return value;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") return value << 10;
  if (suffix == "M" || suffix == "m" || suffix == "MiB") return value << 20;
  if (suffix == "G" || suffix == "g" || suffix == "GiB") return value << 30;
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> command_timeout(double seconds) {
  if (seconds == 0) return std::nullopt;
  if (!(seconds > 0) || seconds > 86400) {
    throw WardError(ErrorKind::usage, "--command-timeout must be a number of seconds above 0");
  }
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

keystore::Credentials credentials_from_options(const std::string& keyfile,
                                               const std::string& passfile,
                                               const std::string& pin_file) {
  keystore::Credentials creds;
  if (!keyfile.empty()) creds.keyfile = keyfile;
  if (!passfile.empty()) creds.passfile = passfile;
  if (!pin_file.empty()) creds.pin_file = pin_file;
  creds.interactive = ::isatty(STDIN_FILENO) != 0;
  return creds;
}

}  // namespace wardfs::cli
