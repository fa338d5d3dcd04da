// The `command` keystore and its runner: argument splitting, key output, failures
// (non-zero exit, signal, timeout, wrong length, too much output), stderr passthrough.
#include <signal.h>
#include <sodium.h>

#include <chrono>
#include <cstdlib>

#include "crypto/config.h"
#include "keystore/command_runner.h"
#include "keystore/keystore.h"
#include "tests/keystore/keystore_test_util.h"

using namespace wardfs;
using namespace wardfs::keystore;
using namespace wardfs::keystore::test;
using namespace std::chrono_literals;

namespace {

std::string key_hex() { return crypto::hex_encode(to_bytes(fixed_key(7).view())); }

std::string key_base64() {
  const auto key = fixed_key(7);
  char out[64];
  sodium_bin2base64(out, sizeof out, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  return out;
}

Credentials quiet_creds(std::chrono::milliseconds timeout = 10s) {
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  creds.command_timeout = timeout;
  creds.trust_config_keystore = true;  // approvals are tested in test_spec.cc
  return creds;
}

std::unique_ptr<Keystore> open_command(const std::string& line, const Credentials& creds) {
  return open_keystore(crypto::KeystoreSpec{"command", line, std::nullopt}, creds);
}

std::string command_error(const std::string& line, ErrorKind kind,
                          std::chrono::milliseconds timeout = 10s) {
  return error_of([&] { (void)open_command(line, quiet_creds(timeout)); }, kind);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("command lines split like a shell's words, without expansion", "[command]") {
  using V = std::vector<std::string>;
  CHECK(split_command_line("prog a  b\tc") == V{"prog", "a", "b", "c"});
  CHECK(split_command_line("aws kms decrypt --query 'Plaintext' --output text") ==
        V{"aws", "kms", "decrypt", "--query", "Plaintext", "--output", "text"});
  CHECK(split_command_line(R"(p 'a b' "c \"d\" \$HOME" e\ f '' x'y'z)") ==
        V{"p", "a b", "c \"d\" $HOME", "e f", "", "xyz"});
  CHECK(split_command_line("p '$(rm -rf /)' ;") == V{"p", "$(rm -rf /)", ";"});
  error_of([] { (void)split_command_line("p 'open"); }, ErrorKind::usage);
  error_of([] { (void)split_command_line("p \"open"); }, ErrorKind::usage);
  error_of([] { (void)split_command_line("   "); }, ErrorKind::usage);
  CHECK(command_argv("sh:echo $X | tr a b") == V{"/bin/sh", "-c", "echo $X | tr a b"});
  error_of([] { (void)command_argv("sh:  "); }, ErrorKind::usage);
}

TEST_CASE("a command that prints the KEK in hex or base64 opens a local keystore", "[command]") {
  const crypto::ByteView ad = crypto::as_bytes("wrap ad");
  auto reference = make_local_keystore(fixed_key(7), "ref");
  const auto dek = fixed_key(40);
  const crypto::Bytes wrapped = reference->wrap(dek.view(), ad);
  for (const std::string& line :
       {"printf '%s\\n' " + key_hex(), "echo " + key_base64(), "sh:echo '  " + key_hex() + "  '",
        "sh:k=" + key_hex() + "; printf '%s' \"$k\""}) {
    INFO(line);
    auto ks = open_command(line, quiet_creds());
    CHECK(ks->identity().starts_with("command:"));
    const auto got = ks->unwrap(wrapped, ad);
    REQUIRE(got.has_value());
    CHECK(to_bytes(got->view()) == to_bytes(dek.view()));
    // and it wraps like the key file would
    const auto again = reference->unwrap(ks->wrap(dek.view(), ad), ad);
    REQUIRE(again.has_value());
  }
  CHECK(open_command("echo " + key_hex(), quiet_creds())->identity() == "command:echo");
  CHECK(open_command("sh:echo " + key_hex(), quiet_creds())->identity() == "command:sh");
}

TEST_CASE("a command that exits non-zero or dies is a clear wrong-key error", "[command]") {
  const std::string exit3 =
      command_error("sh:echo " + key_hex() + "; exit 3", ErrorKind::wrong_key);
  CHECK(contains(exit3, "exit status 3"));
  CHECK(!contains(exit3, key_hex()));
  CHECK(contains(command_error("false", ErrorKind::wrong_key), "exit status 1"));
  CHECK(contains(command_error("sh:kill -9 $$", ErrorKind::wrong_key), "signal 9"));
  const std::string missing = command_error("/nonexistent/wardfs-kms --decrypt", ErrorKind::usage);
  CHECK(contains(missing, "cannot run /nonexistent/wardfs-kms"));
}

TEST_CASE("a command that hangs is killed at the timeout", "[command]") {
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = command_error("sleep 30", ErrorKind::wrong_key, 300ms);
  CHECK(contains(msg, "did not finish within 300 ms"));
  CHECK(std::chrono::steady_clock::now() - start < 5s);

  // Output first, then a hang: still a timeout, and the key it printed is not used.
  const std::string late =
      command_error("sh:echo " + key_hex() + "; exec sleep 30", ErrorKind::wrong_key, 300ms);
  CHECK(contains(late, "did not finish"));

  ::setenv("WARDFS_COMMAND_TIMEOUT", "0.2", 1);
  Credentials from_env = quiet_creds();
  from_env.command_timeout.reset();
  const std::string env_msg =
      error_of([&] { (void)open_command("sleep 30", from_env); }, ErrorKind::wrong_key);
  CHECK(contains(env_msg, "200 ms"));
  ::setenv("WARDFS_COMMAND_TIMEOUT", "soon", 1);
  error_of([&] { (void)open_command("sleep 30", from_env); }, ErrorKind::usage);
  ::unsetenv("WARDFS_COMMAND_TIMEOUT");
}

TEST_CASE("a command that prints a key of the wrong length is refused", "[command]") {
  const std::string short_hex = key_hex().substr(0, 62);
  const std::string msg = command_error("echo " + short_hex, ErrorKind::wrong_key);
  CHECK(contains(msg, "64 hex digits"));
  CHECK(!contains(msg, short_hex));  // what it printed may be secret: never echoed
  CHECK(contains(command_error("echo " + key_hex() + "00", ErrorKind::wrong_key), "64 hex digits"));
  // 31 characters and a newline are 32 bytes, but not a key.
  CHECK(contains(command_error("echo 0123456789012345678901234567890", ErrorKind::wrong_key),
                 "got 32 bytes"));
  CHECK(contains(command_error("true", ErrorKind::wrong_key), "printed nothing"));
  CHECK(contains(command_error("sh:head -c 100000 /dev/zero", ErrorKind::wrong_key),
                 "printed more than 4096 bytes"));
}

TEST_CASE("the command's stderr reaches the user's stderr", "[command]") {
  TempDir dir;
  const auto log = dir.path() / "stderr";
  {
    StderrCapture capture(log);
    (void)open_command("sh:echo 'kms: using profile prod' >&2; echo " + key_hex(), quiet_creds());
    error_of([] { (void)open_command("sh:echo 'kms: access denied' >&2; exit 4", quiet_creds()); },
             ErrorKind::wrong_key);
  }
  const std::string text = read_text(log);
  CHECK(contains(text, "kms: using profile prod"));
  CHECK(contains(text, "kms: access denied"));
  CHECK(!contains(text, key_hex()));
}

TEST_CASE("the command gets no file descriptors of ours beyond stdio", "[command]") {
  TempDir dir;
  const auto marker = dir.path() / "open";
  write_text(marker, "x", 0600);
  const int fd = ::open(marker.c_str(), O_RDONLY);  // deliberately without O_CLOEXEC
  REQUIRE(fd >= 0);
  const std::string line =
      "sh:if [ -e /proc/self/fd/" + std::to_string(fd) + " ]; then exit 9; fi; echo " + key_hex();
  CHECK_NOTHROW(open_command(line, quiet_creds()));
  ::close(fd);
}

TEST_CASE("open_keystore tells which command keystore it opened", "[command]") {
  std::string told;
  Credentials creds = quiet_creds();
  creds.notify = [&](const std::string& id) { told = id; };
  (void)open_command("echo " + key_hex(), creds);
  CHECK(told == "command:echo");
}

TEST_CASE("exit statuses are reported even when SIGCHLD was ignored", "[command]") {
  struct sigaction ignore {};
  struct sigaction old {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  REQUIRE(::sigaction(SIGCHLD, &ignore, &old) == 0);
  const std::string msg = command_error("sh:exit 5", ErrorKind::wrong_key);
  CHECK_NOTHROW(open_command("echo " + key_hex(), quiet_creds()));
  struct sigaction now {};
  ::sigaction(SIGCHLD, nullptr, &now);
  ::sigaction(SIGCHLD, &old, nullptr);
  CHECK(contains(msg, "exit status 5"));
  CHECK(now.sa_handler == SIG_IGN);  // restored
}

namespace {

// A stand-in for a KMS CLI: `wrap` keeps the key it reads under a random id and prints
// the id; `unwrap` prints the key back, refusing a different WARDFS_WRAP_AD (like an
// encryption context) unless `check_ad` is false.
std::string fake_kms(const TempDir& dir, bool check_ad) {
  const auto script = dir.path() / (check_ad ? "kms" : "kms-no-ad");
  const std::string store = dir.path().string();
  write_text(script,
             "#!/bin/sh\n"
             "case \"$1\" in\n"
             "wrap) id=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \\n'); cat > " +
                 store + "/$id; echo \"$WARDFS_WRAP_AD\" > " + store +
                 "/$id.ad; echo \"$id\" ;;\n"
                 "unwrap) read id; " +
                 (check_ad ? "[ \"$(cat " + store +
                                 "/$id.ad)\" = \"$WARDFS_WRAP_AD\" ] || "
                                 "{ echo 'kms: context mismatch' >&2; exit 7; }; "
                           : std::string()) +
                 "cat " + store +
                 "/$id ;;\n"
                 "*) exit 64 ;;\n"
                 "esac\n",
             0700);
  return script.string();
}

}  // namespace

TEST_CASE("wrap mode: the program wraps a per-DEK key, wardfs binds the AD", "[command][wrap]") {
  TempDir dir;
  const std::string kms = fake_kms(dir, true);
  auto ks = open_command("wrap:" + kms, quiet_creds());
  CHECK(ks->identity() == "command-wrap:" + kms);
  const auto dek = fixed_key(50);
  const crypto::Bytes ad1(crypto::as_bytes("ad one").begin(), crypto::as_bytes("ad one").end());
  const crypto::Bytes ad2(crypto::as_bytes("ad two").begin(), crypto::as_bytes("ad two").end());
  const crypto::Bytes wrapped = ks->wrap(dek.view(), ad1);
  CHECK(wrapped[0] == 1);
  const auto back = open_command("wrap:" + kms, quiet_creds())->unwrap(wrapped, ad1);
  REQUIRE(back.has_value());
  CHECK(to_bytes(back->view()) == to_bytes(dek.view()));
  // The DEK itself never went to the program.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(!contains(read_text(entry.path()), crypto::hex_encode(to_bytes(dek.view()))));
  }
  // The program refuses another AD (exit status reported) ...
  CHECK(contains(error_of([&] { (void)ks->unwrap(wrapped, ad2); }, ErrorKind::wrong_key),
                 "exit status 7"));
  // ... and a program that ignores it is still caught by wardfs's own seal.
  const std::string lax = fake_kms(dir, false);
  auto lax_ks = open_command("wrap:" + lax, quiet_creds());
  const crypto::Bytes lax_wrapped = lax_ks->wrap(dek.view(), ad1);
  CHECK(lax_ks->unwrap(lax_wrapped, ad1).has_value());
  CHECK_FALSE(lax_ks->unwrap(lax_wrapped, ad2).has_value());
  crypto::Bytes bad = wrapped;
  bad[0] = 9;
  CHECK_FALSE(ks->unwrap(bad, ad1).has_value());
  // sh: works too, the operation arrives as $1.
  auto sh_ks = open_command("wrap:sh:" + kms + " \"$1\"", quiet_creds());
  CHECK(sh_ks->identity() == "command-wrap:sh");
  CHECK(sh_ks->unwrap(sh_ks->wrap(dek.view(), ad1), ad1).has_value());
}
