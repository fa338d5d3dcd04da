// open_chunk on arbitrary bytes at an arbitrary position, seal/open round trips with
// arbitrary damage, and the ChunkLayout size mapping on arbitrary sizes.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "crypto/file_format.h"
#include "tests/fuzz/fuzz_common.h"

using namespace wardfs::crypto;
using wardfs::fuzz::check;
using wardfs::fuzz::Reader;

namespace {

const FileKeys& vector_keys(CipherId cipher) {
  static const FileKeys gcm(CipherId::aes256gcm, wardfs::fuzz::vector_dek(),
                            wardfs::fuzz::vector_file_id());
  static const FileKeys xchacha(CipherId::xchacha20poly1305, wardfs::fuzz::vector_dek(),
                                wardfs::fuzz::vector_file_id());
  return cipher == CipherId::aes256gcm ? gcm : xchacha;
}

}  // namespace

// Input: u8 mode (bit 0 cipher, bit 1 final, bit 2 chunk size 65536), u64 index, then the
// sealed chunk (generation | nonce | ciphertext | tag).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader in(data, size);
  const std::uint8_t mode = in.u8();
  const CipherId cipher = (mode & 1) ? CipherId::xchacha20poly1305 : CipherId::aes256gcm;
  const bool final = (mode & 2) != 0;
  const ChunkLayout layout(cipher, (mode & 4) ? 65536 : 4096);
  const std::uint64_t index = in.uint(8);
  const ByteView sealed = in.rest();
  const FileId fid = wardfs::fuzz::vector_file_id();
  const FileKeys& keys = vector_keys(cipher);

  // 1. Arbitrary bytes as a chunk. Only the vectors' authentic chunks (seeds) open, and
  // those re-seal to themselves with their own nonce.
  if (sealed.size() >= layout.overhead()) {
    Bytes out(sealed.size() - layout.overhead(), 0xa5);
    const ChunkPosition pos{fid, index, final};
    if (open_chunk(layout, keys.content(), pos, sealed, out)) {
      Bytes again(sealed.size());
      seal_chunk_with_nonce(layout, keys.content(), chunk_generation(sealed), pos, out,
                            sealed.subspan(kGenerationSize, layout.nonce_size()), again);
      check(std::equal(again.begin(), again.end(), sealed.begin()), "opened chunk re-seals");
    } else {
      const bool zero = std::all_of(out.begin(), out.end(), [](auto b) { return b == 0; });
      const bool untouched = std::all_of(out.begin(), out.end(), [](auto b) { return b == 0xa5; });
      check(zero || untouched, "a failed open hands out no data");
    }
  }

  // 2. The input as plaintext: seal, damage one bit chosen by the index, open.
  const ByteView pt = sealed.first(std::min<std::size_t>(sealed.size(), layout.chunk_size()));
  Bytes chunk(layout.overhead() + pt.size());
  Bytes nonce(layout.nonce_size());
  for (std::size_t i = 0; i < nonce.size(); ++i)
    nonce[i] = static_cast<std::uint8_t>(index >> (8 * (i % 8)));
  seal_chunk_with_nonce(layout, keys.content(), static_cast<std::uint32_t>(index >> 32),
                        ChunkPosition{fid, index, final}, pt, nonce, chunk);
  Bytes out(pt.size());
  check(open_chunk(layout, keys.content(), ChunkPosition{fid, index, final}, chunk, out) &&
            std::equal(out.begin(), out.end(), pt.begin()),
        "seal/open round trip");
  const std::size_t bit = static_cast<std::size_t>(index % (chunk.size() * 8));
  chunk[bit / 8] ^= static_cast<std::uint8_t>(1U << (bit % 8));
  check(!open_chunk(layout, keys.content(), ChunkPosition{fid, index, final}, chunk, out),
        "a flipped bit is detected");

  // 3. The size mapping, on the index read as a size.
  if (const auto p = layout.plaintext_size(index)) {
    check(layout.backing_size(*p) == index, "plaintext_size inverts backing_size");
  }
  const std::uint64_t n = index >> 8;  // keep backing_size clear of overflow
  check(layout.plaintext_size(layout.backing_size(n)) == n, "backing_size inverts plaintext_size");
  check(layout.final_index(n) == (n == 0 ? 0 : (n - 1) / layout.chunk_size()), "final index");
  return 0;
}
