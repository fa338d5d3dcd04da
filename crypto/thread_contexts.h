// Cipher contexts that a thread keeps between calls, so that a run of chunks or names
// under one key skips the key setup (crypto/aead.cc, crypto/name_codec.cc). Such a context
// holds its key's schedule for as long as its thread lives: a worker that sealed one chunk
// of a file and then idles would keep that file's key in memory after the file, or its
// whole generation, is gone. So every context registers here, and the destructor of a key
// (its KeySerial) wipes the contexts still keyed with it, whichever thread owns them.
#pragma once

#include <openssl/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace wardfs::crypto {

// Up to three OpenSSL contexts of one thread for one use (sealing chunks, opening names),
// all keyed with the same key.
class ThreadCipherContexts {
 public:
  explicit ThreadCipherContexts(std::size_t count);  // registers; throws bad_alloc, or
                                                     // invalid_argument past three
  ~ThreadCipherContexts();  // unregisters, then frees (OpenSSL cleanses the schedules)
  ThreadCipherContexts(const ThreadCipherContexts&) = delete;
  ThreadCipherContexts& operator=(const ThreadCipherContexts&) = delete;

  // Held by the owning thread while it keys or uses the contexts, and by forget_key()
  // while it wipes them. Lock order: the registry's mutex, then this one.
  [[nodiscard]] std::unique_lock<std::mutex> lock() { return std::unique_lock(in_use_); }

  EVP_CIPHER_CTX* at(std::size_t i) const;
  // The serial of the key the contexts hold (0: none, or wiped: key them afresh). Both
  // with lock() held.
  std::uint64_t key() const { return key_serial_.load(std::memory_order_relaxed); }
  void set_key(std::uint64_t serial) { key_serial_.store(serial, std::memory_order_relaxed); }

 private:
  friend void forget_key(std::uint64_t serial);
  friend std::size_t keyed_thread_contexts();
  void wipe();  // with in_use_ held

  std::mutex in_use_;
  // Written under in_use_; read without it by forget_key() to pass over other keys.
  std::atomic<std::uint64_t> key_serial_{0};
  std::array<EVP_CIPHER_CTX*, 3> contexts_{};
  std::size_t count_ = 0;
};

// Wipes every thread's contexts keyed with `serial` (KeySerial's destructor calls it).
void forget_key(std::uint64_t serial);

// How many registered contexts hold a key right now, in every thread (for tests).
std::size_t keyed_thread_contexts();

// A key object's serial (new_key_serial()): tells keys apart in the thread contexts, never
// by address, and wipes those contexts when the key object goes.
class KeySerial {
 public:
  KeySerial();
  ~KeySerial();
  KeySerial(KeySerial&& other) noexcept;
  KeySerial& operator=(KeySerial&& other) noexcept;
  KeySerial(const KeySerial&) = delete;
  KeySerial& operator=(const KeySerial&) = delete;
  std::uint64_t value() const { return value_; }

 private:
  std::uint64_t value_;
};

}  // namespace wardfs::crypto
