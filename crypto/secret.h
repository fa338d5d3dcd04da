// Secret byte buffers: every key in wardfs lives in one of these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace wardfs::crypto {

// Owns a sodium_malloc'd, mlock'd, guard-paged region. The memory is zeroed when
// the buffer dies and is never copied implicitly, so a key has exactly one home.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t size);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  static SecretBytes random(std::size_t size);
  static SecretBytes copy_of(std::span<const std::uint8_t> bytes);

  std::uint8_t* data() { return data_; }
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const std::uint8_t> view() const { return {data_, size_}; }
  std::span<std::uint8_t> span() { return {data_, size_}; }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Initialises libsodium once; safe to call from any thread, any number of times.
void ensure_sodium();

// A number that tells a key object apart from every other one this process makes, never
// reused (an address would be): per-thread OpenSSL contexts remember which key they hold
// by it, and skip keying again while it matches.
std::uint64_t new_key_serial();

// SecretBytes covers the keys wardfs holds itself, but OpenSSL expands each AES key into
// a schedule in its own heap allocations (one per worker thread and direction). This
// locks every page the process touches, now and later, into RAM (mlockall with
// MCL_ONFAULT: nothing is faulted in early) when RLIMIT_MEMLOCK is or can be made
// unlimited, or does not apply (CAP_IPC_LOCK): root, normally. Under a limit a later
// allocation could fail instead, so it is skipped. True when memory is locked.
bool lock_process_memory();

}  // namespace wardfs::crypto
