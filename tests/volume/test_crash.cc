// Crash ordering (FORMAT.md §10): backing files as a crash of the wardfs process between
// two writes of one operation leaves them, rebuilt from before/after snapshots.
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// Loads the backing file through a fresh FileContent and requires it to read as `expect`
// without any integrity report.
void require_reads_as(const TestVolume& tv, int fd, const Bytes& expect) {
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.load(fd) == 0);
  REQUIRE(fc.size() == expect.size());
  auto [n, got] = read_range(fc, fd, 0, expect.size());
  CAPTURE(reports.describe());
  REQUIRE(n == static_cast<ssize_t>(expect.size()));
  REQUIRE(first_diff(got, expect) == -1);
  REQUIRE(reports.list.empty());
}

// The state after step (2) of an extend and before step (3): the new backing file, but with
// the old last chunk's slot as it was, zero-padded to a full slot.
Bytes crash_before_reseal(const crypto::ChunkLayout& layout, const Bytes& before,
                          const Bytes& after, std::uint64_t old_final) {
  Bytes crashed = after;
  const auto off = static_cast<std::size_t>(layout.slot_offset(old_final));
  REQUIRE(before.size() > off);
  REQUIRE(before.size() - off <= layout.slot_size());
  std::fill(crashed.begin() + static_cast<std::ptrdiff_t>(off),
            crashed.begin() + static_cast<std::ptrdiff_t>(off + layout.slot_size()), 0);
  std::copy(before.begin() + static_cast<std::ptrdiff_t>(off), before.end(),
            crashed.begin() + static_cast<std::ptrdiff_t>(off));
  return crashed;
}

}  // namespace

TEST_CASE("Crash between writing the new tail and re-sealing the old one", "[crash]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  CAPTURE(cipher_label(cipher), chunk, holes_label(holes));
  TestVolume tv(cipher, chunk, holes);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  // Old sizes: a partial tail, a full tail, an almost full tail, the empty file, a tiny file.
  const std::uint64_t old_size =
      GENERATE_COPY(values<std::uint64_t>({cs + 100, 2 * cs, 2 * cs - 1, 0, 1}));
  const std::uint64_t old_final = layout.final_index(old_size);
  // The write lands in the next chunk, or leaves a gap of one chunk before it.
  const std::uint64_t offset =
      GENERATE_COPY(values<std::uint64_t>({(old_final + 1) * cs + 7, (old_final + 3) * cs}));
  CAPTURE(old_size, offset);

  UniqueFd fd = tv.open_file("f");
  Bytes model = pattern(static_cast<std::size_t>(old_size), 1);
  make_file(tv, fd, model);
  const Bytes before = backing_bytes(fd.get());

  FileContent fc(*tv.vol);
  REQUIRE(fc.load(fd.get()) == 0);
  const Bytes fresh = pattern(50, 2);
  write_ok(fc, fd.get(), fresh, offset);
  const Bytes after = backing_bytes(fd.get());
  model.resize(static_cast<std::size_t>(offset), 0);
  model.insert(model.end(), fresh.begin(), fresh.end());
  require_reads_as(tv, fd.get(), model);

  set_backing(fd.get(), crash_before_reseal(layout, before, after, old_final));
  require_reads_as(tv, fd.get(), model);

  SECTION("the file stays writable and heals when the torn chunk is rewritten") {
    FileContent fc2(*tv.vol);
    REQUIRE(fc2.load(fd.get()) == 0);
    const Bytes patch = pattern(10, 3);
    const std::uint64_t at = old_final * cs + cs / 2;
    write_ok(fc2, fd.get(), patch, at);
    std::copy(patch.begin(), patch.end(), model.begin() + static_cast<std::ptrdiff_t>(at));
    require_reads_as(tv, fd.get(), model);
    // The rewritten slot is a full chunk again: no zero padding left at its end.
    const Bytes slot = peek(fd.get(), layout.slot_offset(old_final), layout.slot_size());
    REQUIRE_FALSE(all_zero(ByteView(slot).last(64)));
  }
  SECTION("the file can be appended to") {
    FileContent fc2(*tv.vol);
    REQUIRE(fc2.load(fd.get()) == 0);
    const Bytes more = pattern(cs + 3, 4);
    write_ok(fc2, fd.get(), more, volume::kAppendOffset);
    model.insert(model.end(), more.begin(), more.end());
    require_reads_as(tv, fd.get(), model);
  }
}

TEST_CASE("Torn tail whose sealed bytes end in zero bytes is still recovered", "[crash]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const std::uint64_t cs = 4096;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  Bytes model = pattern(static_cast<std::size_t>(cs + 100), 1);
  make_file(tv, fd, model);

  // Re-seal the tail until its tag ends in a zero byte (probability 1/256 per seal).
  FileContent fc(*tv.vol);
  REQUIRE(fc.load(fd.get()) == 0);
  const std::uint64_t tail_end = layout.slot_offset(1) + 100 + layout.overhead();
  int tries = 0;
  while (peek(fd.get(), tail_end - 1, 1)[0] != 0) {
    REQUIRE(++tries < 20000);
    const std::uint8_t b = static_cast<std::uint8_t>(tries);
    write_ok(fc, fd.get(), ByteView(&b, 1), cs + 99);
    model[cs + 99] = b;
  }
  require_reads_as(tv, fd.get(), model);
  const Bytes before = backing_bytes(fd.get());

  const Bytes fresh = pattern(20, 2);
  write_ok(fc, fd.get(), fresh, 2 * cs + 1);
  model.resize(2 * cs + 1, 0);
  model.insert(model.end(), fresh.begin(), fresh.end());
  set_backing(fd.get(), crash_before_reseal(layout, before, backing_bytes(fd.get()), 1));
  require_reads_as(tv, fd.get(), model);
}

TEST_CASE("Crash between re-sealing the new tail and cutting the file (truncate down)", "[crash]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  const Bytes data = pattern(static_cast<std::size_t>(3 * cs + 5), 1);
  make_file(tv, fd, data);
  const Bytes before = backing_bytes(fd.get());

  // A new size that is a multiple of C: the re-sealed chunk is full and flagged, and
  // the old file still reads completely (FORMAT.md §10).
  const std::uint64_t new_size = GENERATE_COPY(values<std::uint64_t>({cs, 2 * cs}));
  CAPTURE(new_size);
  FileContent fc(*tv.vol);
  REQUIRE(fc.load(fd.get()) == 0);
  REQUIRE(fc.truncate(fd.get(), new_size) == 0);
  Bytes kept(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(new_size));
  require_reads_as(tv, fd.get(), kept);
  const std::uint64_t k = new_size / cs - 1;
  Bytes crashed = before;
  const Bytes resealed = peek(fd.get(), layout.slot_offset(k), layout.slot_size());
  std::copy(resealed.begin(), resealed.end(),
            crashed.begin() + static_cast<std::ptrdiff_t>(layout.slot_offset(k)));
  REQUIRE(crashed != before);
  set_backing(fd.get(), crashed);
  require_reads_as(tv, fd.get(), data);
}
