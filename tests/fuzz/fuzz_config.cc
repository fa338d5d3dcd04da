// parse_config on arbitrary text: it may only ever throw WardError(corrupt_volume), and
// whatever it accepts must survive serialize -> parse unchanged.
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/errors.h"
#include "crypto/config.h"
#include "tests/fuzz/fuzz_common.h"

using namespace wardfs::crypto;
using wardfs::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  VolumeConfig cfg;
  try {
    cfg = parse_config(text);
  } catch (const wardfs::WardError& e) {
    check(e.kind() == wardfs::ErrorKind::corrupt_volume, "parse errors are corrupt_volume");
    check(std::strlen(e.what()) > 0, "parse errors say something");
    return 0;
  }
  // Anything other than WardError escapes and aborts the run.

  check(cfg.version == kFormatVersion, "accepted version is 1");
  check(valid_chunk_size(cfg.chunk_size), "accepted chunk size is valid");
  check(cfg.volume_id.size() == kVolumeIdSize, "volume id is 16 bytes");
  check(!cfg.keys.empty(), "at least one key");
  check(cfg.key_for(cfg.active_generation) != nullptr, "active generation has a key");
  check(cfg.keystore.type != "passphrase" || cfg.keystore.kdf.has_value(),
        "passphrase keystores have KDF params");
  for (const auto& k : cfg.keys)
    check(k.wrapped.size() >= kDekSize, "wrapped keys are long enough");
  (void)ChunkLayout(cfg.cipher, cfg.chunk_size);

  const std::string again = serialize_config(cfg);
  VolumeConfig back;
  try {
    back = parse_config(again);
  } catch (const wardfs::WardError&) {
    check(false, "a serialized config parses");
  }
  check(serialize_config(back) == again, "serialize -> parse -> serialize is stable");
  check(back.wrap_ad(cfg.active_generation) == cfg.wrap_ad(cfg.active_generation),
        "the wrap AD survives the round trip");
  return 0;
}
