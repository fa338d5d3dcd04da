// Holes: sparse gaps and the has-holes flag (allow), sealed zero fill (never), and how
// all-zero slots read with and without the flag.
#include <sys/stat.h>

#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

std::uint64_t allocated_bytes(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// Reads [offset, offset + len) and requires it to be all zero bytes.
void require_zeros(FileContent& fc, int fd, std::uint64_t offset, std::size_t len) {
  auto [n, got] = read_range(fc, fd, offset, len);
  REQUIRE(n == static_cast<ssize_t>(len));
  REQUIRE(all_zero(got));
}

}  // namespace

TEST_CASE("holes=allow keeps a far gap sparse and sets has-holes", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk, HolesPolicy::allow);
  const std::uint64_t cs = chunk;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  const Bytes head = pattern(100, 1);
  write_ok(fc, fd.get(), head, 0);
  REQUIRE_FALSE(fc.header().has_holes());

  const std::uint64_t far = 1000 * cs + 17;
  const Bytes tail = pattern(33, 2);
  SECTION("by a write past EOF") { write_ok(fc, fd.get(), tail, far); }
  SECTION("by a truncate up, then a write at the end") {
    REQUIRE(fc.truncate(fd.get(), far) == 0);
    REQUIRE(fc.header().has_holes());
    write_ok(fc, fd.get(), tail, volume::kAppendOffset);
  }
  REQUIRE(fc.header().has_holes());
  REQUIRE(fc.size() == far + tail.size());
  const std::uint64_t size = backing_size(fd.get());
  REQUIRE(size == tv.layout().backing_size(far + tail.size()));
  CAPTURE(size, allocated_bytes(fd.get()));
  REQUIRE(allocated_bytes(fd.get()) * 20 < size);

  require_zeros(fc, fd.get(), 100, static_cast<std::size_t>(cs - 100));
  require_zeros(fc, fd.get(), 500 * cs - 3, static_cast<std::size_t>(2 * cs));
  require_zeros(fc, fd.get(), 1000 * cs, 17);
  auto [n, got] = read_range(fc, fd.get(), far - 1, 100);
  REQUIRE(n == 34);
  REQUIRE(got[0] == 0);
  REQUIRE(first_diff(ByteView(got).subspan(1), tail) == -1);
  REQUIRE(reports.list.empty());

  // The flag is persistent: a fresh load sees it and reads the gap as zeros.
  FileContent fc2(*tv.vol);
  fc2.set_reporter(reports.fn());
  REQUIRE(fc2.load(fd.get()) == 0);
  REQUIRE(fc2.header().has_holes());
  auto [n2, head2] = read_range(fc2, fd.get(), 0, 100);
  REQUIRE(n2 == 100);
  REQUIRE(head2 == head);
  require_zeros(fc2, fd.get(), 700 * cs, static_cast<std::size_t>(cs));
  // Truncating below the gap never clears the flag.
  REQUIRE(fc2.truncate(fd.get(), 50) == 0);
  REQUIRE(fc2.header().has_holes());
  REQUIRE(reports.list.empty());
}

TEST_CASE("Growth without a whole-chunk gap does not set has-holes", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  write_ok(fc, fd.get(), pattern(10), 0);
  write_ok(fc, fd.get(), pattern(10), cs - 5);        // gap inside chunk 0
  write_ok(fc, fd.get(), pattern(10), 2 * cs - 1);    // next chunk only
  REQUIRE(fc.truncate(fd.get(), 3 * cs + 100) == 0);  // the chunk after the tail
  write_ok(fc, fd.get(), pattern(cs), volume::kAppendOffset);
  REQUIRE_FALSE(fc.header().has_holes());
  REQUIRE(zero_slots(tv.layout(), backing_bytes(fd.get())).empty());
  // One chunk further is a gap.
  write_ok(fc, fd.get(), pattern(1), fc.size() + 2 * cs);
  REQUIRE(fc.header().has_holes());
}

TEST_CASE("holes=never seals the gap chunks and never sets has-holes", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk, HolesPolicy::never);
  const std::uint64_t cs = chunk;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  write_ok(fc, fd.get(), pattern(100, 1), 0);

  SECTION("write past EOF") { write_ok(fc, fd.get(), pattern(10, 2), 20 * cs + 5); }
  SECTION("truncate up") { REQUIRE(fc.truncate(fd.get(), 20 * cs + 15) == 0); }
  REQUIRE(fc.size() == 20 * cs + 15);
  REQUIRE_FALSE(fc.header().has_holes());
  const Bytes backing = backing_bytes(fd.get());
  REQUIRE(backing.size() == tv.layout().backing_size(20 * cs + 15));
  REQUIRE(zero_slots(tv.layout(), backing).empty());
  require_zeros(fc, fd.get(), 100, static_cast<std::size_t>(20 * cs - 100));
  REQUIRE(reports.list.empty());

  FileContent fc2(*tv.vol);
  REQUIRE(fc2.load(fd.get()) == 0);
  REQUIRE_FALSE(fc2.header().has_holes());
  require_zeros(fc2, fd.get(), 3 * cs, static_cast<std::size_t>(5 * cs));
}

TEST_CASE("holes=never refuses a huge gap at once, writing nothing", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096, HolesPolicy::never);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  write_ok(fc, fd.get(), pattern(100), 0);
  const Bytes before = backing_bytes(fd.get());
  const std::uint64_t huge = std::uint64_t{1} << 55;  // 32 PiB
  const int rc = fc.truncate(fd.get(), huge);
  REQUIRE((rc == -ENOSPC || rc == -EFBIG));
  const ssize_t w = fc.write(fd.get(), pattern(1), huge);
  REQUIRE((w == -ENOSPC || w == -EFBIG));
  REQUIRE(fc.size() == 100);
  REQUIRE(backing_bytes(fd.get()) == before);
  REQUIRE_FALSE(fc.header().has_holes());
}

TEST_CASE("A zeroed chunk slot: EIO without has-holes, zeros with it", "[holes][tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk, HolesPolicy::allow);
  const std::uint64_t cs = chunk;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  const Bytes data = pattern(4 * cs + 100, 3);
  make_file(tv, fd, data);
  const Bytes zeros(layout.slot_size(), 0);

  SECTION("no has-holes: the zeroed chunk is EIO and reported") {
    const std::uint64_t victim = GENERATE(0, 2);
    CAPTURE(victim);
    poke(fd.get(), layout.slot_offset(victim), zeros);
    FileContent fc(*tv.vol);
    Reports reports;
    fc.set_reporter(reports.fn());
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE_FALSE(fc.header().has_holes());
    REQUIRE(read_range(fc, fd.get(), victim * cs + 10, 20).first == -EIO);
    REQUIRE(reports.has(victim));
    REQUIRE(read_range(fc, fd.get(), 0, data.size()).first == -EIO);
    // Its neighbours still read, and correctly.
    auto [n, got] = read_range(fc, fd.get(), 3 * cs, static_cast<std::size_t>(cs + 100));
    REQUIRE(n == static_cast<ssize_t>(cs + 100));
    REQUIRE(first_diff(got, ByteView(data).subspan(3 * cs)) == -1);
    // A write that must read the zeroed chunk fails too, rather than sealing zeros.
    reports.list.clear();
    REQUIRE(fc.write(fd.get(), pattern(5), victim * cs + 1) == -EIO);
    REQUIRE(reports.has(victim));
  }
  SECTION("no has-holes: a zeroed final chunk is EIO") {
    const std::uint64_t last = 4;
    poke(fd.get(), layout.slot_offset(last), Bytes(100 + layout.overhead(), 0));
    FileContent fc(*tv.vol);
    Reports reports;
    fc.set_reporter(reports.fn());
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE(read_range(fc, fd.get(), last * cs, 10).first == -EIO);
    REQUIRE(reports.has(last));
  }
  SECTION("with has-holes: a zeroed middle chunk reads as zeros, a zeroed last one is EIO") {
    FileContent fc(*tv.vol);
    REQUIRE(fc.load(fd.get()) == 0);
    write_ok(fc, fd.get(), pattern(10, 4), 8 * cs);  // gap: chunks 5..7
    REQUIRE(fc.header().has_holes());
    poke(fd.get(), layout.slot_offset(2), zeros);

    FileContent fc2(*tv.vol);
    Reports reports;
    fc2.set_reporter(reports.fn());
    REQUIRE(fc2.load(fd.get()) == 0);
    REQUIRE(fc2.header().has_holes());
    require_zeros(fc2, fd.get(), 2 * cs, static_cast<std::size_t>(cs));
    auto [n, got] = read_range(fc2, fd.get(), cs, static_cast<std::size_t>(cs));
    REQUIRE(n == static_cast<ssize_t>(cs));
    REQUIRE(first_diff(got, ByteView(data).subspan(cs, cs)) == -1);
    REQUIRE(reports.list.empty());

    poke(fd.get(), layout.slot_offset(8), Bytes(10 + layout.overhead(), 0));
    FileContent fc3(*tv.vol);
    fc3.set_reporter(reports.fn());
    REQUIRE(fc3.load(fd.get()) == 0);
    REQUIRE(read_range(fc3, fd.get(), 8 * cs, 10).first == -EIO);
    REQUIRE(reports.has(8));
  }
}

TEST_CASE("holes=allow: a truncate up past the backing file system's limit fails cleanly",
          "[holes]") {
  TestVolume tv(CipherId::aes256gcm, 4096, HolesPolicy::allow);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  const Bytes data = pattern(5000, 1);
  write_ok(fc, fd.get(), data, 0);
  const std::uint64_t huge = std::uint64_t{1} << 50;  // 1 PiB: beyond ext4, not xfs/btrfs
  const int rc = fc.truncate(fd.get(), huge);
  if (rc == 0) {
    REQUIRE(fc.size() == huge);
    REQUIRE(fc.truncate(fd.get(), data.size()) == 0);
  } else {
    REQUIRE(rc == -EFBIG);
  }
  REQUIRE(fc.size() == data.size());
  REQUIRE(backing_size(fd.get()) == tv.layout().backing_size(data.size()));
  REQUIRE(first_diff(read_all(fc, fd.get()), data) == -1);
  FileContent fc2(*tv.vol);
  REQUIRE(fc2.load(fd.get()) == 0);
  REQUIRE(first_diff(read_all(fc2, fd.get()), data) == -1);
}
