#include "crypto/thread_contexts.h"

#include <openssl/evp.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include "crypto/secret.h"

namespace wardfs::crypto {

namespace {

struct Registry {
  std::mutex mutex;  // taken before any context's in_use
  std::vector<ThreadCipherContexts*> contexts;
};

// Never destroyed: keys and threads may still go while the process exits.
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

}  // namespace

ThreadCipherContexts::ThreadCipherContexts(std::size_t count) : count_(count) {
  if (count_ > contexts_.size()) throw std::invalid_argument("at most three cipher contexts");
  for (std::size_t i = 0; i < count_; ++i) {
    contexts_[i] = EVP_CIPHER_CTX_new();
    if (contexts_[i] == nullptr) {
      for (std::size_t j = 0; j < i; ++j) EVP_CIPHER_CTX_free(contexts_[j]);
      throw std::bad_alloc();
    }
  }
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.contexts.push_back(this);
}

ThreadCipherContexts::~ThreadCipherContexts() {
  {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase(r.contexts, this);
  }
  for (std::size_t i = 0; i < count_; ++i) EVP_CIPHER_CTX_free(contexts_[i]);
}

EVP_CIPHER_CTX* ThreadCipherContexts::at(std::size_t i) const { return contexts_[i]; }

void ThreadCipherContexts::wipe() {
  for (std::size_t i = 0; i < count_; ++i) EVP_CIPHER_CTX_reset(contexts_[i]);
  set_key(0);
}

void forget_key(std::uint64_t serial) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  for (auto* c : r.contexts) {
    if (c->key() != serial) continue;
    auto in_use = c->lock();  // waits out a call of the owner that keys it anew
    if (c->key() == serial) c->wipe();
  }
}

std::size_t keyed_thread_contexts() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  return static_cast<std::size_t>(
      std::count_if(r.contexts.begin(), r.contexts.end(), [](auto* c) { return c->key() != 0; }));
}

KeySerial::KeySerial() : value_(new_key_serial()) {}

KeySerial::~KeySerial() {
  if (value_ != 0) forget_key(value_);
}

KeySerial::KeySerial(KeySerial&& other) noexcept : value_(std::exchange(other.value_, 0)) {}

KeySerial& KeySerial::operator=(KeySerial&& other) noexcept {
  if (this != &other) {
    if (value_ != 0) forget_key(value_);
    value_ = std::exchange(other.value_, 0);
  }
  return *this;
}

}  // namespace wardfs::crypto
