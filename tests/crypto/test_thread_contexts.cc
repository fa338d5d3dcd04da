// The cipher contexts a thread keeps between calls (crypto/thread_contexts.h) lose their
// key's schedule when the key object goes, even while their thread idles, and key afresh
// on the next use.
#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/aead.h"
#include "crypto/name_codec.h"
#include "crypto/thread_contexts.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::key_of;
using wardfs::test::pattern;

namespace {

// Seals and opens one chunk with `aead` on the calling thread; true when the round trip
// gives the plaintext back. (Catch2's assertions are for the main thread only.)
bool seal_and_open(const Aead& aead) {
  const Bytes plaintext = pattern(4096, 3);
  Bytes nonce(aead.nonce_size());
  random_nonce(nonce);
  Bytes sealed(plaintext.size() + kAeadTagSize);
  aead.seal(sealed, plaintext, nonce, {});
  Bytes opened(plaintext.size());
  return aead.open(opened, sealed, nonce, {}) && opened == plaintext;
}

// A worker thread that runs `use` once, then idles until finish() has it run `after` and
// stop. Both say whether they worked.
class IdleWorker {
 public:
  template <typename Use, typename After>
  IdleWorker(Use use, After after)
      : thread_([this, use, after]() mutable {
          used_.set_value(use());
          go_on_.get_future().wait();
          after_.set_value(after());
        }) {
    used_ok_ = used_.get_future().get();
  }
  ~IdleWorker() {
    if (thread_.joinable()) (void)finish();
  }
  IdleWorker(const IdleWorker&) = delete;
  IdleWorker& operator=(const IdleWorker&) = delete;

  bool used_ok() const { return used_ok_; }
  bool finish() {
    go_on_.set_value();
    const bool ok = after_.get_future().get();
    thread_.join();
    return ok;
  }

 private:
  std::promise<bool> used_;
  std::promise<void> go_on_;
  std::promise<bool> after_;
  bool used_ok_ = false;
  std::thread thread_;  // last: starts once the promises exist
};

}  // namespace

TEST_CASE("A file key's schedule leaves an idle thread's contexts when the key goes",
          "[aead][keys]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_name(cipher));
  const std::size_t before = keyed_thread_contexts();
  auto aead = make_aead(cipher, key_of(1).view());
  IdleWorker worker([&] { return seal_and_open(*aead); },
                    [cipher] { return seal_and_open(*make_aead(cipher, key_of(2).view())); });
  REQUIRE(worker.used_ok());
  REQUIRE(keyed_thread_contexts() == before + 2);  // the worker's sealing and opening contexts
  aead.reset();
  CHECK(keyed_thread_contexts() == before);
  CHECK(worker.finish());  // the wiped contexts take the next key and work
  CHECK(keyed_thread_contexts() == before);
}

TEST_CASE("A name key's schedule leaves an idle thread's contexts when the key goes",
          "[names][keys]") {
  const std::size_t before = keyed_thread_contexts();
  auto names = std::make_unique<NameCipher>(key_of(1, kNameKeySize));
  const DirId dir{};
  IdleWorker worker([&] { return names->decrypt(dir, names->encrypt(dir, "a")) == "a"; },
                    [&dir] {
                      const NameCipher other(key_of(2, kNameKeySize));
                      return other.decrypt(dir, other.encrypt(dir, "b")) == "b";
                    });
  REQUIRE(worker.used_ok());
  REQUIRE(keyed_thread_contexts() == before + 1);
  // Moving the key keeps its contexts; only the last owner's end wipes them.
  auto moved = std::make_unique<NameCipher>(std::move(*names));
  names.reset();
  REQUIRE(keyed_thread_contexts() == before + 1);
  moved.reset();
  CHECK(keyed_thread_contexts() == before);
  CHECK(worker.finish());
  CHECK(keyed_thread_contexts() == before);
}

TEST_CASE("Keys come and go while other threads seal and open with them", "[aead][keys]") {
  const std::size_t before = keyed_thread_contexts();
  // The current key, replaced by the main thread; whichever thread drops the last
  // reference wipes the contexts of every thread that used it, while those threads key
  // their contexts with the next one.
  std::mutex slot_mutex;
  std::shared_ptr<const Aead> slot;
  auto next_key = [&](std::uint32_t n) {
    std::shared_ptr<const Aead> fresh =
        make_aead(n % 2 ? CipherId::aes256gcm : CipherId::xchacha20poly1305, key_of(n).view());
    std::lock_guard lock(slot_mutex);
    slot = std::move(fresh);
  };
  next_key(1);
  std::atomic<bool> stop{false};
  std::atomic<int> round_trips{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        std::shared_ptr<const Aead> key;
        {
          std::lock_guard lock(slot_mutex);
          key = slot;
        }
        (seal_and_open(*key) ? round_trips : failures)++;
      }
    });
  }
  // At least 2,000 keys, and on until the workers have made some round trips: on a busy
  // machine they may not have been scheduled yet when the 2,000th key is made.
  for (std::uint32_t n = 2; n < 2000 || round_trips.load() < 300; ++n) next_key(n);
  stop = true;
  for (auto& w : workers) w.join();
  CHECK(failures == 0);
  CHECK(round_trips > 0);
  {
    std::lock_guard lock(slot_mutex);
    slot.reset();
  }
  CHECK(keyed_thread_contexts() == before);
}
