// The `command` keystore, two modes:
//  - key mode, "PROG ARGS": the program (a KMS CLI, a secret manager, a password store)
//    prints the 32-byte KEK, hex or base64, on stdout; wardfs wraps and unwraps locally,
//    exactly like a key file.
//  - wrap mode, "wrap:PROG ARGS": the program wraps and unwraps itself, so its key never
//    reaches wardfs. wardfs seals each DEK locally under a fresh 32-byte key K (with the
//    wrap AD, so AD binding never depends on the program), and the program wraps K:
//    `PROG ARGS wrap` reads K as 64 hex digits on stdin and prints an opaque blob;
//    `PROG ARGS unwrap` reads that blob on stdin and prints K (hex or base64). Both get
//    WARDFS_WRAP_AD (hex) in their environment, e.g. for a KMS encryption context.
//    wrapped = 0x01 | u16le blob length | blob | nonce(24) | sealed DEK | tag(16)
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "base/errors.h"
#include "keystore/backends.h"
#include "keystore/command_runner.h"

namespace wardfs::keystore::detail {

namespace {

constexpr std::chrono::milliseconds kDefaultTimeout{30000};
constexpr std::string_view kWrapPrefix = "wrap:";
constexpr std::uint8_t kWrapFormat = 1;

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

CommandLimits limits_for(const Credentials& creds) {
  CommandLimits limits;
  limits.timeout = creds.command_timeout ? *creds.command_timeout : timeout_from_env();
  return limits;
}

std::string identity_for(const std::string& prefix, std::string_view location,
                         const std::vector<std::string>& argv) {
  return prefix + (location.starts_with("sh:") ? std::string("sh") : argv[0]);
}

class WrapCommandKeystore final : public Keystore {
 public:
  WrapCommandKeystore(std::vector<std::string> argv, CommandLimits limits, std::string identity)
      : argv_(std::move(argv)), limits_(limits), identity_(std::move(identity)) {}
  std::string identity() const override { return identity_; }

  Bytes wrap(ByteView dek, ByteView ad) override {
    SecretBytes k = SecretBytes::random(crypto::kAeadKeySize);
    SecretBytes hex(k.size() * 2 + 1);
    sodium_bin2hex(reinterpret_cast<char*>(hex.data()), hex.size(), k.data(), k.size());
    hex.data()[k.size() * 2] = '\n';
    const Bytes sealed = make_local_keystore(std::move(k), "k")->wrap(dek, ad);
    const SecretBytes blob = run("wrap", hex.view(), ad);
    if (blob.empty() || blob.size() > 0xffff) {
      throw WardError(ErrorKind::wrong_key,
                      "key command " + argv_[0] + " printed no wrapped key for 'wrap'");
    }
    Bytes out(3 + blob.size() + sealed.size());
    out[0] = kWrapFormat;
    out[1] = static_cast<std::uint8_t>(blob.size() & 0xff);
    out[2] = static_cast<std::uint8_t>(blob.size() >> 8);
    std::copy(blob.data(), blob.data() + blob.size(), out.begin() + 3);
    std::copy(sealed.begin(), sealed.end(), out.begin() + 3 + static_cast<long>(blob.size()));
    return out;
  }

  std::optional<SecretBytes> unwrap(ByteView wrapped, ByteView ad) override {
    if (wrapped.size() < 3 || wrapped[0] != kWrapFormat) return std::nullopt;
    const std::size_t len = wrapped[1] | (static_cast<std::size_t>(wrapped[2]) << 8);
    if (len == 0 || wrapped.size() < 3 + len) return std::nullopt;
    const SecretBytes k_text = run("unwrap", wrapped.subspan(3, len), ad);
    SecretBytes k = decode_key_text(k_text, "the output of key command " + argv_[0] + " unwrap",
                                    ErrorKind::wrong_key, false);
    return make_local_keystore(std::move(k), "k")->unwrap(wrapped.subspan(3 + len), ad);
  }

 private:
  SecretBytes run(const std::string& op, ByteView input, ByteView ad) {
    std::vector<std::string> argv = argv_;
    if (argv.size() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c") argv.push_back("wardfs");
    argv.push_back(op);
    CommandInput in{input, {"WARDFS_WRAP_AD=" + crypto::hex_encode(ad)}};
    return run_secret_command(argv, limits_, in);
  }

  std::vector<std::string> argv_;
  CommandLimits limits_;
  std::string identity_;
};

std::unique_ptr<Keystore> open_key_mode(const std::string& location, const Credentials& creds) {
  const std::vector<std::string> argv = command_argv(location);
  const SecretBytes output = run_secret_command(argv, limits_for(creds));
  if (output.empty()) {
    throw WardError(ErrorKind::wrong_key, "key command " + argv[0] + " printed nothing");
  }
  SecretBytes kek =
      decode_key_text(output, "the output of key command " + argv[0], ErrorKind::wrong_key, false);
  return make_local_keystore(std::move(kek), identity_for("command:", location, argv));
}

}  // namespace

std::unique_ptr<Keystore> open_command_keystore(const std::string& location,
                                                const Credentials& creds) {
  if (!location.starts_with(kWrapPrefix)) return open_key_mode(location, creds);
  const std::string rest = location.substr(kWrapPrefix.size());
  std::vector<std::string> argv = command_argv(rest);
  const std::string identity = identity_for("command-wrap:", rest, argv);
  return std::make_unique<WrapCommandKeystore>(std::move(argv), limits_for(creds), identity);
}

}  // namespace wardfs::keystore::detail
