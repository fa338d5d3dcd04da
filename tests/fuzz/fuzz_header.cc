// parse_header + verify_header_tag on arbitrary 0..200 bytes, and authentic headers with
// arbitrary fields and arbitrary damage: accepted exactly when undamaged.
#include <cstdint>
#include <cstring>

#include "crypto/file_format.h"
#include "tests/fuzz/fuzz_common.h"

using namespace wardfs::crypto;
using wardfs::fuzz::check;
using wardfs::fuzz::Reader;

namespace {

const FileKeys& vector_keys() {
  static const FileKeys keys(CipherId::aes256gcm, wardfs::fuzz::vector_dek(),
                             wardfs::fuzz::vector_file_id());
  return keys;
}

void raw_input(ByteView raw) {
  FileHeader h;
  const HeaderStatus status = parse_header(raw, h);
  const bool tag_ok = verify_header_tag(raw, vector_keys());
  if (raw.size() < kHeaderSize) {
    check(status == HeaderStatus::too_short && !tag_ok, "short headers are refused");
    return;
  }
  if (status == HeaderStatus::ok) {
    check(std::memcmp(raw.data(), "WDFS", 4) == 0, "accepted magic");
    check(get_le32(raw.data() + 28) == 0, "accepted reserved bytes are zero");
    check(std::memcmp(h.file_id.data(), raw.data() + 8, kFileIdSize) == 0, "file id parsed");
  }
  if (status == HeaderStatus::ok && tag_ok) {
    // Only an authentic header gets here (the seeds hold some): it must re-encode exactly.
    check(h.file_id == wardfs::fuzz::vector_file_id(), "authentic header has the vector file id");
    const RawHeader again = encode_header(h, vector_keys());
    check(std::memcmp(again.data(), raw.data(), kHeaderSize) == 0, "authentic header re-encodes");
  }
}

void structured_input(const std::uint8_t* data, std::size_t size) {
  Reader in(data, size);
  FileHeader h;
  for (auto& b : h.file_id) b = in.u8();
  h.flags = static_cast<std::uint16_t>(in.uint(2));
  h.generation = static_cast<std::uint32_t>(in.uint(4));
  const FileKeys keys(CipherId::xchacha20poly1305, wardfs::fuzz::vector_dek(), h.file_id);
  RawHeader raw = encode_header(h, keys);
  // The rest of the input is a list of (position, xor) damages.
  const ByteView damage = in.rest();
  for (std::size_t i = 0; i + 1 < damage.size(); i += 2)
    raw[damage[i] % kHeaderSize] ^= damage[i + 1];
  const RawHeader pristine = encode_header(h, keys);
  const bool damaged = raw != pristine;
  // Headers with the defined flags always parse; whether unknown flag bits are refused
  // is the parser's choice, as long as it is the same choice for the undamaged header.
  FileHeader unused;
  const bool pristine_parses = parse_header(pristine, unused) == HeaderStatus::ok;
  if ((h.flags & ~std::uint16_t{kHeaderHasHoles}) == 0)
    check(pristine_parses, "defined flags parse");
  FileHeader parsed;
  const bool accepted =
      parse_header(raw, parsed) == HeaderStatus::ok && verify_header_tag(raw, keys);
  check(accepted == (!damaged && pristine_parses), "a header is accepted exactly when undamaged");
  if (accepted) {
    check(
        parsed.file_id == h.file_id && parsed.flags == h.flags && parsed.generation == h.generation,
        "accepted header gives back its fields");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 200) return 0;
  raw_input(ByteView(data, size));
  structured_input(data, size);
  return 0;
}
