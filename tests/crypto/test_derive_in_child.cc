// Key derivation in a child process: the bytes come back intact, failures come back as
// nullopt, and the child's working memory never counts toward the caller's peak RSS.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <climits>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crypto/derive_in_child.h"
#include "keystore/keystore.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::pattern;
using wardfs::test::to_bytes;

namespace {

constexpr long kFailed = LONG_MIN;

// VmHWM of this process, in KiB.
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    long value = 0;
    if (key == "VmHWM:" && in >> value) return value;
  }
  return -1;
}

// Runs body() in a fresh child process (its VmHWM starts near its RSS at fork, whatever
// this test binary touched before) and returns what body returned, or kFailed.
long in_fresh_process(long (*body)()) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    long value = kFailed;
    try {
      value = body();
    } catch (...) {
    }
    (void)!::write(fds[1], &value, sizeof value);
    ::_exit(0);
  }
  ::close(fds[1]);
  long value = kFailed;
  if (::read(fds[0], &value, sizeof value) != sizeof value) value = kFailed;
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  return value;
}

constexpr std::size_t kChildMib = 128;

// How much the peak grows while the child touches kChildMib MiB.
long peak_growth_of_child_memory() {
  const long before = peak_rss_kib();
  const auto key = derive_in_child(32, [](std::span<std::uint8_t> out) {
    std::vector<std::uint8_t> big(kChildMib << 20, 1);
    std::memset(out.data(), big[12345], out.size());
    return true;
  });
  if (!key || key->view()[0] != 1) return kFailed;
  return peak_rss_kib() - before;
}

// The same for the default Argon2id (256 MiB) through the keystore's derivation (whose
// result the keystore tests compare with libsodium's, called directly).
long peak_growth_of_default_kdf() {
  const long before = peak_rss_kib();
  const auto params = wardfs::keystore::default_kdf_params();
  const auto pass = SecretBytes::copy_of(as_bytes("correct horse battery staple"));
  const auto kek = wardfs::keystore::derive_passphrase_kek(pass, params);
  if (kek.size() != 32) return kFailed;
  return peak_rss_kib() - before - static_cast<long>(params.memlimit >> 10);
}

}  // namespace

TEST_CASE("derive_in_child hands back what the child derived", "[kdf]") {
  const Bytes want = pattern(48, 7);
  const auto got = derive_in_child(want.size(), [&](std::span<std::uint8_t> out) {
    std::memcpy(out.data(), want.data(), out.size());
    return true;
  });
  REQUIRE(got);
  CHECK(to_bytes(got->view()) == want);
}

TEST_CASE("derive_in_child reports a failed or throwing derivation as nullopt", "[kdf]") {
  CHECK_FALSE(derive_in_child(32, [](std::span<std::uint8_t>) { return false; }));
  CHECK_FALSE(derive_in_child(
      32, [](std::span<std::uint8_t>) -> bool { throw std::runtime_error("out of memory"); }));
}

TEST_CASE("memory the child touches does not raise the caller's peak RSS", "[kdf]") {
  const long growth = in_fresh_process(peak_growth_of_child_memory);
  REQUIRE(growth != kFailed);
  CHECK(growth < static_cast<long>(kChildMib << 10) / 4);
}

TEST_CASE("the default Argon2id leaves the caller's peak RSS where it was", "[kdf][slow]") {
  // Growth minus the 256 MiB Argon2id uses: negative when the derivation ran elsewhere,
  // about zero when it ran in this process.
  const long growth_over_memlimit = in_fresh_process(peak_growth_of_default_kdf);
  REQUIRE(growth_over_memlimit != kFailed);
  CHECK(growth_over_memlimit < -(200L << 10));
}

TEST_CASE("derive_in_child works while other threads take and free keys", "[kdf]") {
  // A thread may hold the small-key pool's lock at fork(): the child must not need it
  // (it would wait forever, and this test with it, until ctest's timeout).
  std::atomic<bool> stop{false};
  std::vector<std::thread> churn;
  for (int t = 0; t < 2; ++t)
    churn.emplace_back([&] {
      while (!stop) SecretBytes key = SecretBytes::random(32);
    });
  int delivered = 0;
  for (int i = 0; i < 200; ++i) {
    const auto got = derive_in_child(32, [](std::span<std::uint8_t> out) {
      std::memset(out.data(), 7, out.size());
      return true;
    });
    delivered += got && got->view()[31] == 7 ? 1 : 0;
  }
  stop = true;
  for (auto& t : churn) t.join();
  CHECK(delivered == 200);
}
