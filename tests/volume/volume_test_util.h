// Helpers shared by the volume engine tests: a throwaway unlocked volume, backing files,
// raw access to the backing bytes and a recorder for integrity reports.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/posix_io.h"
#include "crypto/config.h"
#include "crypto/file_format.h"
#include "crypto/secret.h"
#include "keystore/keystore.h"
#include "volume/config_file.h"
#include "volume/file_content.h"
#include "volume/volume.h"

namespace wardfs::vtest {

using crypto::Bytes;
using crypto::ByteView;
using crypto::CipherId;
using crypto::HolesPolicy;
using volume::FileContent;

// A deterministic byte pattern, different for every seed, never all zero.
inline Bytes pattern(std::size_t size, std::uint32_t seed = 1) {
  Bytes out(size);
  std::uint32_t x = seed * 2654435761U + 0x9e3779b9U;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>((x >> 24) | 1U);
  }
  return out;
}

inline bool all_zero(ByteView v) {
  for (auto b : v) {
    if (b != 0) return false;
  }
  return true;
}

// Index of the first differing byte, or -1 when equal (sizes must match too).
inline long long first_diff(ByteView a, ByteView b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<long long>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<long long>(n);
}

inline const char* cipher_label(CipherId c) {
  return c == CipherId::aes256gcm ? "aes256gcm" : "xchacha20poly1305";
}
inline const char* holes_label(HolesPolicy h) {
  return h == HolesPolicy::allow ? "allow" : "never";
}

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "wardfs-voltest-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline volume::InitOptions init_options(CipherId cipher, std::uint32_t chunk_size,
                                        HolesPolicy holes) {
  volume::InitOptions o;
  o.cipher = cipher;
  o.chunk_size = chunk_size;
  o.holes = holes;
  o.keystore.type = "keyfile";
  o.keystore.location = "/nonexistent/wardfs-test.key";
  return o;
}

// An initialised and unlocked volume in a fresh temporary directory; backing files for
// content tests live beside the cipher dir, in files().
struct TestVolume {
  TempDir tmp;
  std::filesystem::path dir;
  std::unique_ptr<keystore::Keystore> ks;
  std::unique_ptr<volume::Volume> vol;

  TestVolume(CipherId cipher, std::uint32_t chunk_size, HolesPolicy holes = HolesPolicy::allow)
      : dir(tmp.path() / "cipher") {
    ks = keystore::make_local_keystore(crypto::SecretBytes::random(32), "test");
    volume::init_volume(dir, init_options(cipher, chunk_size, holes), *ks);
    const crypto::VolumeConfig cfg = volume::load_config(dir);
    vol = volume::unlock_volume(dir, cfg, *ks);
    std::filesystem::create_directory(files());
  }
  std::filesystem::path files() const { return tmp.path() / "files"; }
  const crypto::ChunkLayout& layout() const { return vol->layout(); }
  std::uint32_t cs() const { return layout().chunk_size(); }

  UniqueFd open_file(const std::string& name) const {
    UniqueFd fd(::open((files() / name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) throw std::runtime_error("cannot open backing file " + name);
    return fd;
  }
};

// Records every integrity report of a FileContent.
struct Reports {
  std::vector<std::pair<std::uint64_t, std::string>> list;
  volume::IntegrityReporter fn() {
    return [this](std::uint64_t chunk, std::string_view reason) {
      list.emplace_back(chunk, std::string(reason));
    };
  }
  bool has(std::uint64_t chunk) const {
    for (const auto& r : list) {
      if (r.first == chunk) return true;
    }
    return false;
  }
  std::string describe() const {
    std::string s;
    for (const auto& [chunk, reason] : list) {
      s += (chunk == volume::kHeaderChunk ? std::string("header") : std::to_string(chunk)) + ": " +
           reason + "\n";
    }
    return s.empty() ? "(none)" : s;
  }
};

inline std::uint64_t backing_size(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return static_cast<std::uint64_t>(st.st_size);
}

inline Bytes backing_bytes(int fd) {
  Bytes out(backing_size(fd));
  REQUIRE(pread_full(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  return out;
}

// Replaces the whole backing file with `bytes`.
inline void set_backing(int fd, ByteView bytes) {
  REQUIRE(::ftruncate(fd, 0) == 0);
  REQUIRE(pwrite_full(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
}

inline void poke(int fd, std::uint64_t offset, ByteView bytes) {
  REQUIRE(pwrite_full(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
          static_cast<ssize_t>(bytes.size()));
}

inline Bytes peek(int fd, std::uint64_t offset, std::size_t len) {
  Bytes out(len);
  REQUIRE(pread_full(fd, out.data(), len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
  return out;
}

// Changes the byte at `offset` (never to its own value: a fixed replacement byte would leave
// the ciphertext intact one run in 256 and make a tamper test flaky).
inline void flip_byte(int fd, std::uint64_t offset) {
  Bytes b = peek(fd, offset, 1);
  b[0] ^= 0x01;
  poke(fd, offset, b);
}

// Reads [offset, offset + len) and returns the engine's result code with the bytes.
inline std::pair<ssize_t, Bytes> read_range(FileContent& fc, int fd, std::uint64_t offset,
                                            std::size_t len) {
  Bytes buf(len, 0xAA);
  const ssize_t n = fc.read(fd, buf, offset);
  if (n >= 0) buf.resize(static_cast<std::size_t>(n));
  return {n, buf};
}

inline Bytes read_all(FileContent& fc, int fd) {
  auto [n, buf] = read_range(fc, fd, 0, static_cast<std::size_t>(fc.size()));
  REQUIRE(n == static_cast<ssize_t>(fc.size()));
  return buf;
}

// Writes data at offset and requires the engine to take all of it.
inline void write_ok(FileContent& fc, int fd, ByteView data, std::uint64_t offset) {
  REQUIRE(fc.write(fd, data, offset) == static_cast<ssize_t>(data.size()));
}

// A formatted backing file holding `data`, its FileContent released.
inline void make_file(const TestVolume& tv, const UniqueFd& fd, ByteView data) {
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  if (!data.empty()) write_ok(fc, fd.get(), data, 0);
  REQUIRE(fc.size() == data.size());
}

// Number of whole slots (not counting a short final one) that are entirely zero bytes.
inline std::vector<std::uint64_t> zero_slots(const crypto::ChunkLayout& layout, ByteView backing) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 0;; ++i) {
    const std::uint64_t off = layout.slot_offset(i);
    if (off >= backing.size()) break;
    const std::size_t len =
        static_cast<std::size_t>(std::min<std::uint64_t>(layout.slot_size(), backing.size() - off));
    if (all_zero(backing.subspan(static_cast<std::size_t>(off), len))) out.push_back(i);
  }
  return out;
}

// Checks the backing file against the format, independently of FileContent's lenient
// reader (FORMAT.md §4): a valid header, a valid backing size, every chunk before the last
// full and sealed with final = 0 (or, with has-holes, an all-zero slot), and the last
// chunk sealed with final = 1. Returns the decrypted plaintext.
inline Bytes verify_format(const TestVolume& tv, int fd) {
  const auto& layout = tv.layout();
  const Bytes raw = backing_bytes(fd);
  REQUIRE(raw.size() >= crypto::kHeaderSize);
  crypto::FileHeader header;
  REQUIRE(crypto::parse_header(ByteView(raw).first(crypto::kHeaderSize), header) ==
          crypto::HeaderStatus::ok);
  const auto header_keys = tv.vol->keys().file_keys(header.generation, header.file_id);
  REQUIRE(header_keys);
  REQUIRE(crypto::verify_header_tag(ByteView(raw).first(crypto::kHeaderSize), *header_keys));
  const auto size = layout.plaintext_size(raw.size());
  REQUIRE(size.has_value());
  const std::uint64_t last = layout.final_index(*size);
  Bytes plain(static_cast<std::size_t>(*size));
  for (std::uint64_t i = 0; i <= last; ++i) {
    CAPTURE(i, last);
    const std::size_t len = static_cast<std::size_t>(
        std::min<std::uint64_t>(layout.chunk_size(), *size - i * layout.chunk_size()));
    const ByteView sealed = ByteView(raw).subspan(static_cast<std::size_t>(layout.slot_offset(i)),
                                                  len + layout.overhead());
    if (i < last && header.has_holes() && all_zero(sealed)) continue;
    const auto keys = tv.vol->keys().file_keys(crypto::chunk_generation(sealed), header.file_id);
    REQUIRE(keys);
    std::span<std::uint8_t> out(plain.data() + i * layout.chunk_size(), len);
    REQUIRE(
        crypto::open_chunk(layout, keys->content(), {header.file_id, i, i == last}, sealed, out));
  }
  return plain;
}

// The engine, a fresh load of the same file and the format checker all agree with model.
inline void require_content(const TestVolume& tv, FileContent& fc, int fd, const Bytes& model) {
  REQUIRE(fc.size() == model.size());
  REQUIRE(first_diff(read_all(fc, fd), model) == -1);
  REQUIRE(first_diff(verify_format(tv, fd), model) == -1);
  FileContent fresh(*tv.vol);
  Reports reports;
  fresh.set_reporter(reports.fn());
  REQUIRE(fresh.load(fd) == 0);
  REQUIRE(first_diff(read_all(fresh, fd), model) == -1);
  INFO(reports.describe());
  REQUIRE(reports.list.empty());
}

}  // namespace wardfs::vtest
