// The `command` keystore: a user-given program (a KMS CLI, a secret manager, a
// password store) prints the 32-byte KEK, hex or base64, on stdout; wardfs then wraps
// and unwraps locally, exactly like a key file.
#include <cstdlib>
#include <string>

#include "crypto/errors.h"
#include "keystore/backends.h"
#include "keystore/command_runner.h"

namespace wardfs::keystore::detail {

namespace {

constexpr std::chrono::milliseconds kDefaultTimeout{30000};

std::chrono::milliseconds timeout_from_env() {
  const char* text = std::getenv("WARDFS_COMMAND_TIMEOUT");
  if (text == nullptr || *text == '\0') return kDefaultTimeout;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  if (*end != '\0' || !(seconds > 0) || seconds > 86400) {
    throw WardError(ErrorKind::usage,
                    "WARDFS_COMMAND_TIMEOUT must be a number of seconds (e.g. 30 or 0.5)");
  }
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

}  // namespace

std::unique_ptr<Keystore> open_command_keystore(const std::string& location,
                                                const Credentials& creds) {
  const std::vector<std::string> argv = command_argv(location);
  CommandLimits limits;
  limits.timeout = creds.command_timeout ? *creds.command_timeout : timeout_from_env();
  const bool shell = location.starts_with("sh:");
  const std::string identity = shell ? "command:sh" : "command:" + argv[0];
  const SecretBytes output = run_secret_command(argv, limits);
  if (output.empty()) {
    throw WardError(ErrorKind::wrong_key, "key command " + argv[0] + " printed nothing");
  }
  SecretBytes kek =
      decode_key_text(output, "the output of key command " + argv[0], ErrorKind::wrong_key);
  return make_local_keystore(std::move(kek), identity);
}

}  // namespace wardfs::keystore::detail
