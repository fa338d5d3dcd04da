// Tampering with the backing file at engine level: every change must surface as EIO from
// load() or read(), with a report, and never as wrong data.
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// A loaded FileContent on the (possibly tampered) backing file, with its reports.
struct Opened {
  FileContent fc;
  Reports reports;
  int load_rc;
  Opened(const TestVolume& tv, int fd) : fc(*tv.vol) {
    fc.set_reporter(reports.fn());
    load_rc = fc.load(fd);
  }
};

// The tampered file must fail: load() with EIO, or a read of `region` with EIO. A read that
// succeeds must return the original bytes (never wrong data). Returns true when it failed.
bool fails_cleanly(const TestVolume& tv, int fd, const Bytes& original, std::uint64_t offset,
                   std::size_t len) {
  Opened o(tv, fd);
  CAPTURE(o.reports.describe());
  if (o.load_rc != 0) {
    REQUIRE(o.load_rc == -EIO);
    REQUIRE(o.reports.has(volume::kHeaderChunk));
    return true;
  }
  auto [n, got] = read_range(o.fc, fd, offset, len);
  if (n < 0) {
    REQUIRE(n == -EIO);
    REQUIRE_FALSE(o.reports.list.empty());
    return true;
  }
  const std::size_t avail =
      offset >= original.size()
          ? 0
          : static_cast<std::size_t>(std::min<std::uint64_t>(len, original.size() - offset));
  REQUIRE(first_diff(got,
                     ByteView(original).subspan(
                         static_cast<std::size_t>(std::min<std::uint64_t>(offset, original.size())),
                         avail)) == -1);
  return false;
}

}  // namespace

TEST_CASE("Tampered chunks are EIO and reported", "[tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  const Bytes data = pattern(4 * cs + 100, 1);  // chunks 0..3 full, 4 partial and final
  make_file(tv, fd, data);
  const Bytes original = backing_bytes(fd.get());

  SECTION("a flipped byte anywhere in a chunk") {
    const std::uint64_t victim = GENERATE(0, 2, 4);
    const std::size_t slot_len = victim == 4 ? 100 + layout.overhead() : layout.slot_size();
    // generation, nonce, ciphertext start and end, tag
    const auto where = GENERATE_COPY(
        values<std::size_t>({0, 3, 5, layout.overhead() - 16 + 1, slot_len - 17, slot_len - 1}));
    CAPTURE(victim, where);
    flip_byte(fd.get(), layout.slot_offset(victim) + where);
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == 0);
    REQUIRE(read_range(o.fc, fd.get(), victim * cs, 10).first == -EIO);
    REQUIRE(o.reports.has(victim));
    REQUIRE(read_range(o.fc, fd.get(), 0, data.size()).first == -EIO);
    // The untouched chunks still read correctly.
    const std::uint64_t other = victim == 0 ? 1 : 0;
    auto [n, got] = read_range(o.fc, fd.get(), other * cs, static_cast<std::size_t>(cs));
    REQUIRE(n == static_cast<ssize_t>(cs));
    REQUIRE(first_diff(got, ByteView(data).subspan(other * cs, cs)) == -1);
  }
  SECTION("two chunk slots swapped") {
    const Bytes s1 = peek(fd.get(), layout.slot_offset(1), layout.slot_size());
    const Bytes s2 = peek(fd.get(), layout.slot_offset(2), layout.slot_size());
    poke(fd.get(), layout.slot_offset(1), s2);
    poke(fd.get(), layout.slot_offset(2), s1);
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == 0);
    REQUIRE(read_range(o.fc, fd.get(), cs, 10).first == -EIO);
    REQUIRE(o.reports.has(1));
    REQUIRE(read_range(o.fc, fd.get(), 2 * cs + 5, 10).first == -EIO);
    REQUIRE(o.reports.has(2));
  }
  SECTION("the final chunk swapped with a full one is caught both ways") {
    const Bytes s3 = peek(fd.get(), layout.slot_offset(3), layout.slot_size());
    const Bytes s4 = peek(fd.get(), layout.slot_offset(4), 100 + layout.overhead());
    poke(fd.get(), layout.slot_offset(3), Bytes(layout.slot_size(), 0x5A));
    poke(fd.get(), layout.slot_offset(3), s4);
    REQUIRE(fails_cleanly(tv, fd.get(), data, 3 * cs, 10));
    set_backing(fd.get(), original);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(layout.slot_offset(4))) == 0);
    poke(fd.get(), layout.slot_offset(4), s3);  // a full, unflagged chunk at the end
    REQUIRE(fails_cleanly(tv, fd.get(), data, 4 * cs, 10));
  }
  SECTION("a slot copied from another file at the same index") {
    UniqueFd other = tv.open_file("other");
    make_file(tv, other, data);  // same plaintext, other file id
    const std::uint64_t victim = GENERATE(1, 4);
    CAPTURE(victim);
    const std::size_t len = victim == 4 ? 100 + layout.overhead() : layout.slot_size();
    poke(fd.get(), layout.slot_offset(victim), peek(other.get(), layout.slot_offset(victim), len));
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == 0);
    REQUIRE(read_range(o.fc, fd.get(), victim * cs, 10).first == -EIO);
    REQUIRE(o.reports.has(victim));
  }
  SECTION("another file's flagged final chunk is refused mid-file") {
    // A chunk sealed with the final flag is accepted mid-file (the crash rule), but only
    // when it is this file's chunk at this index.
    UniqueFd other = tv.open_file("other");
    make_file(tv, other, pattern(3 * cs, 2));
    poke(fd.get(), layout.slot_offset(2),
         peek(other.get(), layout.slot_offset(2), layout.slot_size()));
    REQUIRE(fails_cleanly(tv, fd.get(), data, 2 * cs, static_cast<std::size_t>(cs)));
  }
}

TEST_CASE("Cut backing files are EIO", "[tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  const std::uint64_t o = layout.overhead();
  UniqueFd fd = tv.open_file("f");
  const Bytes data = pattern(4 * cs + 100, 1);
  make_file(tv, fd, data);

  SECTION("at a chunk boundary: the new last chunk lacks the final flag") {
    const std::uint64_t k = GENERATE(4, 3, 1);
    CAPTURE(k);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(layout.slot_offset(k))) == 0);
    Opened op(tv, fd.get());
    REQUIRE(op.load_rc == 0);
    REQUIRE(op.fc.size() == k * cs);
    REQUIRE(read_range(op.fc, fd.get(), (k - 1) * cs, 10).first == -EIO);
    REQUIRE(op.reports.has(k - 1));
    REQUIRE(read_range(op.fc, fd.get(), 0, static_cast<std::size_t>(k * cs)).first == -EIO);
  }
  SECTION("to the bare header, or less") {
    const std::uint64_t len = GENERATE(64, 63, 10, 0);
    CAPTURE(len);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(len)) == 0);
    Opened op(tv, fd.get());
    REQUIRE(op.load_rc == -EIO);
    REQUIRE(op.reports.has(volume::kHeaderChunk));
  }
  SECTION("mid-slot, where the size is invalid: load fails") {
    const std::uint64_t cut = GENERATE_COPY(
        values<std::uint64_t>({layout.slot_offset(4) + 1, layout.slot_offset(4) + o - 1,
                               layout.slot_offset(4) + o, layout.slot_offset(2) + 5, 64 + o - 1}));
    CAPTURE(cut);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(cut)) == 0);
    Opened op(tv, fd.get());
    REQUIRE(op.load_rc == -EIO);
    REQUIRE(op.reports.has(volume::kHeaderChunk));
  }
  SECTION("mid-slot, where the size looks valid: the last chunk fails") {
    const std::uint64_t cut = GENERATE_COPY(
        values<std::uint64_t>({layout.slot_offset(4) + o + 99, layout.slot_offset(4) + o + 1,
                               layout.slot_offset(3) + o + cs / 2, layout.slot_offset(1) + o + 1}));
    CAPTURE(cut);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(cut)) == 0);
    Opened op(tv, fd.get());
    REQUIRE(op.load_rc == 0);
    const std::uint64_t last = (cut - 64) / layout.slot_size();
    REQUIRE(read_range(op.fc, fd.get(), last * cs, 1).first == -EIO);
    REQUIRE(op.reports.has(last));
  }
}

// The empty file holds one sealed empty final chunk so that cutting a file down to an
// empty-looking size is detected (FORMAT.md §4.3, §9.3). Cutting to 64 + overhead bytes
// gives a valid-looking empty file whose chunk is the start of the old chunk 0.
TEST_CASE("A file cut to the size of an empty file is detected", "[tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  make_file(tv, fd, pattern(10000, 1));
  REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(64 + layout.overhead())) == 0);
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  const int rc = fc.load(fd.get());
  Bytes buf(16);
  const ssize_t n = rc == 0 ? fc.read(fd.get(), buf, 0) : rc;
  CHECK((rc == -EIO || n == -EIO));
  CHECK_FALSE(reports.list.empty());
}

TEST_CASE("Tampered or foreign headers fail", "[tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  UniqueFd fd = tv.open_file("f");
  const Bytes data = pattern(3 * 4096 + 7, 1);
  make_file(tv, fd, data);
  const Bytes original = backing_bytes(fd.get());

  SECTION("every header byte, flipped") {
    for (std::size_t i = 0; i < crypto::kHeaderSize; ++i) {
      CAPTURE(i);
      Bytes b = original;
      b[i] ^= 0x04;
      set_backing(fd.get(), b);
      Opened o(tv, fd.get());
      REQUIRE(o.load_rc == -EIO);
      REQUIRE(o.reports.has(volume::kHeaderChunk));
    }
  }
  SECTION("has-holes set by an attacker") {
    Bytes b = original;
    b[6] |= crypto::kHeaderHasHoles;
    set_backing(fd.get(), b);
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == -EIO);
  }
  SECTION("a header copied from another file") {
    UniqueFd other = tv.open_file("other");
    make_file(tv, other, pattern(3 * 4096 + 7, 2));
    Bytes b = original;
    const Bytes h = peek(other.get(), 0, crypto::kHeaderSize);
    std::copy(h.begin(), h.end(), b.begin());
    set_backing(fd.get(), b);
    REQUIRE(fails_cleanly(tv, fd.get(), data, 0, data.size()));
    for (std::uint64_t chunk = 0; chunk < 4; ++chunk) {
      CAPTURE(chunk);
      REQUIRE(fails_cleanly(tv, fd.get(), data, chunk * 4096, 5));
    }
  }
  SECTION("a header from a file of another volume") {
    TestVolume tv2(cipher, 4096);
    UniqueFd other = tv2.open_file("other");
    make_file(tv2, other, data);
    Bytes b = original;
    const Bytes h = peek(other.get(), 0, crypto::kHeaderSize);
    std::copy(h.begin(), h.end(), b.begin());
    set_backing(fd.get(), b);
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == -EIO);
    REQUIRE(o.reports.has(volume::kHeaderChunk));
  }
  SECTION("a whole file from another volume") {
    TestVolume tv2(cipher, 4096);
    UniqueFd other = tv2.open_file("other");
    make_file(tv2, other, data);
    set_backing(fd.get(), backing_bytes(other.get()));
    Opened o(tv, fd.get());
    REQUIRE(o.load_rc == -EIO);
  }
}
