// Hole punching and zeroing (fallocate PUNCH_HOLE / ZERO_RANGE, FORMAT.md §4.6.2): the
// range reads as zeros, the rest is unchanged, whole slots before the final chunk become
// holes (and free their blocks), and what stays detectable after a punch still is.
#include <sys/stat.h>

#include <random>

#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

std::uint64_t allocated_bytes(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

void zero_model(Bytes& model, std::uint64_t from, std::uint64_t to) {
  to = std::min<std::uint64_t>(to, model.size());
  if (from < to) std::fill(model.begin() + from, model.begin() + to, 0);
}

}  // namespace

TEST_CASE("Punching whole chunks makes holes and frees their blocks; edges are re-sealed",
          "[holes][punch]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk, HolesPolicy::allow);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(10 * cs + 100), 7);
  write_ok(fc, fd.get(), model, 0);
  REQUIRE(::fsync(fd.get()) == 0);
  const std::uint64_t before = allocated_bytes(fd.get());

  // Chunks 2..5 whole; chunk 1 from byte 10 and chunk 6 up to byte 20 partly.
  REQUIRE(fc.punch_hole(fd.get(), cs + 10, 5 * cs + 10) == 0);
  zero_model(model, cs + 10, 6 * cs + 20);
  REQUIRE(fc.header().has_holes());
  REQUIRE(zero_slots(layout, backing_bytes(fd.get())) == std::vector<std::uint64_t>{2, 3, 4, 5});
  require_content(tv, fc, fd.get(), model);
  CAPTURE(before, allocated_bytes(fd.get()));
  REQUIRE(allocated_bytes(fd.get()) + 3 * cs <= before);
  REQUIRE(reports.list.empty());

  // Only the punched slots may read as zeros: tampering elsewhere is still caught.
  SECTION("a modified chunk is EIO") {
    flip_byte(fd.get(), layout.slot_offset(8) + 40);
    FileContent fresh(*tv.vol);
    fresh.set_reporter(reports.fn());
    REQUIRE(fresh.load(fd.get()) == 0);
    REQUIRE(read_range(fresh, fd.get(), 8 * cs, 10).first == -EIO);
    REQUIRE(reports.has(8));
  }
  SECTION("a zeroed final chunk is EIO") {
    poke(fd.get(), layout.slot_offset(10), Bytes(100 + layout.overhead(), 0));
    FileContent fresh(*tv.vol);
    fresh.set_reporter(reports.fn());
    REQUIRE(fresh.load(fd.get()) == 0);
    REQUIRE(read_range(fresh, fd.get(), 10 * cs, 10).first == -EIO);
    REQUIRE(reports.has(10));
  }
  SECTION("writing the holes back clears has-holes, and a zeroed chunk is EIO again") {
    const Bytes refill = pattern(static_cast<std::size_t>(4 * cs), 9);
    write_ok(fc, fd.get(), refill, 2 * cs);
    std::copy(refill.begin(), refill.end(), model.begin() + 2 * cs);
    REQUIRE_FALSE(fc.header().has_holes());
    require_content(tv, fc, fd.get(), model);
    poke(fd.get(), layout.slot_offset(8), Bytes(layout.slot_size(), 0));
    FileContent fresh(*tv.vol);
    fresh.set_reporter(reports.fn());
    REQUIRE(fresh.load(fd.get()) == 0);
    REQUIRE(read_range(fresh, fd.get(), 8 * cs, 10).first == -EIO);
    REQUIRE(reports.has(8));
  }
}

TEST_CASE("A punch without a whole chunk, or over the last chunk, re-seals and sets no flag",
          "[holes][punch]") {
  TestVolume tv(CipherId::xchacha20poly1305, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(6 * cs + 300), 3);
  write_ok(fc, fd.get(), model, 0);

  SECTION("inside one chunk") {
    REQUIRE(fc.punch_hole(fd.get(), 2 * cs + 5, 100) == 0);
    zero_model(model, 2 * cs + 5, 2 * cs + 105);
  }
  SECTION("across a chunk boundary, no whole chunk") {
    REQUIRE(fc.punch_hole(fd.get(), cs + 7, cs) == 0);
    zero_model(model, cs + 7, 2 * cs + 7);
  }
  SECTION("the whole last chunk, and past the end") {
    REQUIRE(fc.punch_hole(fd.get(), 6 * cs, 10 * cs) == 0);
    zero_model(model, 6 * cs, 16 * cs);
  }
  SECTION("a full last chunk (size a multiple of the chunk size)") {
    REQUIRE(fc.truncate(fd.get(), 6 * cs) == 0);
    model.resize(6 * cs);
    REQUIRE(fc.punch_hole(fd.get(), 5 * cs, cs) == 0);
    zero_model(model, 5 * cs, 6 * cs);
  }
  SECTION("entirely past the end: nothing") { REQUIRE(fc.punch_hole(fd.get(), 9 * cs, 5) == 0); }
  REQUIRE_FALSE(fc.header().has_holes());
  REQUIRE(zero_slots(layout, backing_bytes(fd.get())).empty());
  require_content(tv, fc, fd.get(), model);

  // Still a file without holes: a zeroed chunk anywhere is EIO.
  poke(fd.get(), layout.slot_offset(3), Bytes(layout.slot_size(), 0));
  FileContent fresh(*tv.vol);
  Reports reports;
  fresh.set_reporter(reports.fn());
  REQUIRE(fresh.load(fd.get()) == 0);
  REQUIRE(read_range(fresh, fd.get(), 3 * cs, 10).first == -EIO);
  REQUIRE(reports.has(3));
}

TEST_CASE("A punch across the tail makes holes of the whole chunks, keeps the last sealed",
          "[holes][punch]") {
  TestVolume tv(CipherId::aes256gcm, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(8 * cs + 1), 5);
  write_ok(fc, fd.get(), model, 0);
  REQUIRE(fc.punch_hole(fd.get(), 4 * cs + 3, 100 * cs) == 0);
  zero_model(model, 4 * cs + 3, model.size());
  REQUIRE(fc.size() == 8 * cs + 1);
  REQUIRE(fc.header().has_holes());
  REQUIRE(zero_slots(layout, backing_bytes(fd.get())) == std::vector<std::uint64_t>{5, 6, 7});
  require_content(tv, fc, fd.get(), model);
}

TEST_CASE("holes=never: a punch writes sealed zero chunks and never sets has-holes",
          "[holes][punch]") {
  TestVolume tv(CipherId::aes256gcm, 4096, HolesPolicy::never);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(8 * cs + 9), 5);
  write_ok(fc, fd.get(), model, 0);
  SECTION("punch") { REQUIRE(fc.punch_hole(fd.get(), 10, 7 * cs) == 0); }
  SECTION("zero range") { REQUIRE(fc.zero_range(fd.get(), 10, 7 * cs, true) == 0); }
  zero_model(model, 10, 7 * cs + 10);
  REQUIRE_FALSE(fc.header().has_holes());
  REQUIRE(zero_slots(tv.layout(), backing_bytes(fd.get())).empty());
  require_content(tv, fc, fd.get(), model);
}

TEST_CASE("Zeroing a range: inside the file, past its end, with and without KEEP_SIZE",
          "[holes][punch]") {
  TestVolume tv(CipherId::xchacha20poly1305, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(5 * cs + 50), 11);
  write_ok(fc, fd.get(), model, 0);

  SECTION("inside, whole chunks read as zeros") {
    REQUIRE(fc.zero_range(fd.get(), 100, 3 * cs, true) == 0);
    zero_model(model, 100, 3 * cs + 100);
    REQUIRE(fc.header().has_holes());
  }
  SECTION("past the end with KEEP_SIZE: only the part inside the file") {
    REQUIRE(fc.zero_range(fd.get(), 5 * cs, 4 * cs, true) == 0);
    zero_model(model, 5 * cs, 9 * cs);
  }
  SECTION("past the end without KEEP_SIZE: the file grows, zeros to the new end") {
    REQUIRE(fc.zero_range(fd.get(), 4 * cs + 9, 20 * cs, false) == 0);
    zero_model(model, 4 * cs + 9, model.size());
    model.resize(24 * cs + 9, 0);
  }
  SECTION("entirely past the end without KEEP_SIZE: a truncate up") {
    REQUIRE(fc.zero_range(fd.get(), 7 * cs, 10, false) == 0);
    model.resize(7 * cs + 10, 0);
  }
  require_content(tv, fc, fd.get(), model);
}

TEST_CASE("Punch and zero range match a byte model under random operations", "[holes][punch]") {
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  CAPTURE(holes_label(holes));
  TestVolume tv(CipherId::aes256gcm, 4096, holes);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model;
  std::mt19937_64 rng(0x9C4);
  for (int op = 0; op < 150; ++op) {
    const std::uint64_t off = rng() % (12 * cs);
    const std::uint64_t len = 1 + rng() % (rng() % 3 == 0 ? 6 * cs : 300);
    const auto kind = rng() % 5;
    CAPTURE(op, kind, off, len);
    if (kind == 0) {
      const Bytes data = pattern(static_cast<std::size_t>(len), static_cast<std::uint32_t>(op));
      write_ok(fc, fd.get(), data, off);
      if (model.size() < off + len) model.resize(off + len, 0);
      std::copy(data.begin(), data.end(), model.begin() + off);
    } else if (kind == 1) {
      REQUIRE(fc.punch_hole(fd.get(), off, len) == 0);
      zero_model(model, off, off + len);
    } else if (kind == 2 || kind == 3) {
      const bool keep = kind == 2;
      REQUIRE(fc.zero_range(fd.get(), off, len, keep) == 0);
      zero_model(model, off, off + len);
      if (!keep && model.size() < off + len) model.resize(off + len, 0);
    } else {
      REQUIRE(fc.truncate(fd.get(), off) == 0);
      model.resize(off, 0);
    }
    if (op % 10 == 9) require_content(tv, fc, fd.get(), model);
  }
  require_content(tv, fc, fd.get(), model);
  if (holes == HolesPolicy::never) REQUIRE_FALSE(fc.header().has_holes());
  INFO(reports.describe());
  REQUIRE(reports.list.empty());
}
