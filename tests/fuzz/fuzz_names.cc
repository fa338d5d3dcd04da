// NameCipher::decrypt and base64url_decode on arbitrary strings, with the vectors' name
// key: no crash, no forgery, and whatever decodes is the one canonical encoding.
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/bytes.h"
#include "crypto/kdf.h"
#include "crypto/name_codec.h"
#include "tests/fuzz/fuzz_common.h"

using namespace wardfs::crypto;
using wardfs::fuzz::check;

namespace {

const NameCipher& vector_names() {
  static const NameCipher names(hkdf_sha256(
      wardfs::fuzz::vector_dek(), wardfs::fuzz::vector_volume_id(), label::kNames, kNameKeySize));
  return names;
}

bool valid_name(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == s.npos && s.find('\0') == s.npos;
}

bool only_base64url(std::string_view s) {
  return s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
         s.npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const NameCipher& names = vector_names();
  const DirId dir = wardfs::fuzz::vector_dir_id();

  // 1. The input as a stored (encrypted) name.
  if (const auto name = names.decrypt(dir, text)) {
    check(valid_name(*name), "decrypt only hands out usable names");
    check(names.encrypt(dir, *name) == text, "a decryptable encoding is the canonical one");
  }
  DirId other = dir;
  other[0] ^= 1;
  if (names.decrypt(other, text)) check(false, "no name opens under a dir id nobody used");

  // 2. The input as base64url text: decoding is strict, so it re-encodes to itself.
  if (const auto bytes = base64url_decode(text)) {
    check(base64url_encode(*bytes) == text, "base64url decoding is canonical");
    if (const auto opened = names.open_deterministic(dir, *bytes)) {
      check(names.seal_deterministic(dir, *opened) == *bytes, "SIV opens only what it seals");
    }
  }

  // 3. The input as a plaintext name.
  if (size <= 1024) {
    const std::string enc = names.encrypt(dir, text);
    check(only_base64url(enc), "encodings are base64url");
    check(enc.size() == ((16 + (size / 16 + 1) * 16) * 4 + 2) / 3, "encoding length");
    const auto back = names.decrypt(dir, enc);
    check(back.has_value() == valid_name(text), "valid names, and only they, round trip");
    if (back) check(*back == text, "round trip gives the name back");
    check(needs_long_name(enc) == (enc.size() > kMaxBackingNameLength), "long-name threshold");
    if (needs_long_name(enc)) {
      const std::string hashed = long_name_for(enc);
      check(is_long_name(hashed) && !is_long_name_sidecar(hashed), "hashed name shape");
      check(is_long_name_sidecar(hashed + ".n") && !is_long_name(hashed + ".n"), "sidecar shape");
    }
  }

  // 4. The input as a backing-directory entry name.
  if (is_long_name(text)) check(text.size() == 45 && text.starts_with("L."), "long name shape");
  if (is_long_name_sidecar(text)) check(text.size() == 47 && text.ends_with(".n"), "sidecar");
  return 0;
}
