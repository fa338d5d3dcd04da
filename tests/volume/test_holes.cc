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
  // Truncating below the gap leaves no hole: the flag goes.
  REQUIRE(fc2.truncate(fd.get(), 50) == 0);
  REQUIRE_FALSE(fc2.header().has_holes());
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

// ---------------------------------------------------------------- clearing has-holes
// A file made with a gap and then filled in (numpy.memmap, open_memmap: truncate or write
// past the end, then every page through mmap) must not keep has-holes forever, or a zeroed
// chunk in it would read as zeros (FORMAT.md §4.6).

namespace {

bool disk_has_holes(const TestVolume& tv, int fd) {
  FileContent fresh(*tv.vol);
  REQUIRE(fresh.load(fd) == 0);
  return fresh.header().has_holes();
}

// Zeroes slot `index` and requires a fresh FileContent to fail reading it, and report it.
void require_zeroed_slot_is_eio(const TestVolume& tv, int fd, std::uint64_t index) {
  poke(fd, tv.layout().slot_offset(index), Bytes(tv.layout().slot_size(), 0));
  FileContent fresh(*tv.vol);
  Reports reports;
  fresh.set_reporter(reports.fn());
  REQUIRE(fresh.load(fd) == 0);
  REQUIRE(read_range(fresh, fd, index * tv.cs() + 1, 10).first == -EIO);
  REQUIRE(reports.has(index));
}

}  // namespace

TEST_CASE("has-holes is cleared once every chunk of the gap is written (memmap fill)", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  const bool npy = GENERATE(true, false);  // else truncate up
  const bool backwards = GENERATE(false, true);
  const std::uint64_t victim = GENERATE(0, 3, 6);
  CAPTURE(cipher_label(cipher), chunk, npy, backwards, victim);
  TestVolume tv(cipher, chunk, HolesPolicy::allow);
  const std::uint64_t cs = chunk;
  const std::uint64_t size = 7 * cs + 300;
  const Bytes data = pattern(size, 9);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);

  if (npy) {  // open_memmap: the .npy header, then one byte at the end
    write_ok(fc, fd.get(), ByteView(data).first(128), 0);
    write_ok(fc, fd.get(), ByteView(data).last(1), size - 1);
  } else {
    REQUIRE(fc.truncate(fd.get(), size) == 0);
  }
  REQUIRE(fc.header().has_holes());
  REQUIRE(disk_has_holes(tv, fd.get()));

  constexpr std::uint64_t page = 4096;
  const std::uint64_t pages = (size + page - 1) / page;
  for (std::uint64_t k = 0; k < pages; ++k) {
    const std::uint64_t p = backwards ? pages - 1 - k : k;
    const std::uint64_t off = p * page;
    write_ok(fc, fd.get(), ByteView(data).subspan(off, std::min(page, size - off)), off);
    // Chunk 0 (the old tail) is known from the start. Forwards, chunk 6 (the last before
    // the tail) is a hole until a page of it is in; backwards, chunk 1 is.
    const bool hole_left = backwards ? off >= 2 * cs : off + page < 6 * cs;
    if (hole_left) REQUIRE(fc.header().has_holes());
  }
  REQUIRE_FALSE(fc.header().has_holes());
  REQUIRE_FALSE(disk_has_holes(tv, fd.get()));
  REQUIRE(reports.list.empty());
  REQUIRE(first_diff(verify_format(tv, fd.get()), data) == -1);

  require_zeroed_slot_is_eio(tv, fd.get(), victim);
}

TEST_CASE("A partly filled gap keeps has-holes, across reopens, and reads its holes as zeros",
          "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  {
    FileContent fc(*tv.vol);
    REQUIRE(fc.create(fd.get()) == 0);
    REQUIRE(fc.truncate(fd.get(), 5 * cs + 1) == 0);  // chunks 0..4 a gap, 5 the tail
    for (const std::uint64_t i : {0, 1, 3, 4}) write_ok(fc, fd.get(), pattern(cs, 10 + i), i * cs);
    REQUIRE(fc.header().has_holes());  // chunk 2 was never written
    // Reading the hole does not count it as written.
    require_zeros(fc, fd.get(), 2 * cs, cs);
    write_ok(fc, fd.get(), pattern(5, 1), 0);
    REQUIRE(fc.header().has_holes());
  }
  REQUIRE(disk_has_holes(tv, fd.get()));

  // A fresh FileContent knows nothing of the earlier writes: filling chunk 2 is not enough.
  FileContent fc2(*tv.vol);
  Reports reports;
  fc2.set_reporter(reports.fn());
  REQUIRE(fc2.load(fd.get()) == 0);
  require_zeros(fc2, fd.get(), 2 * cs, cs);
  write_ok(fc2, fd.get(), pattern(cs, 12), 2 * cs);
  REQUIRE(fc2.header().has_holes());
  // Reads that authenticate the other chunks count; the header is rewritten only by the
  // next write, never by a read.
  const Bytes header_before = peek(fd.get(), 0, crypto::kHeaderSize);
  REQUIRE(read_all(fc2, fd.get()).size() == 5 * cs + 1);
  REQUIRE(peek(fd.get(), 0, crypto::kHeaderSize) == header_before);
  REQUIRE(fc2.header().has_holes());
  write_ok(fc2, fd.get(), pattern(3, 2), 10);
  REQUIRE_FALSE(fc2.header().has_holes());
  REQUIRE(reports.list.empty());
  require_zeroed_slot_is_eio(tv, fd.get(), 2);
}

TEST_CASE("Truncating down and up keeps the has-holes bookkeeping exact", "[holes]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096, HolesPolicy::allow);
  const std::uint64_t cs = 4096;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  REQUIRE(fc.truncate(fd.get(), 7 * cs + 1) == 0);  // gap 0..6 (chunk 0 is the old, empty tail)

  SECTION("down past the last hole clears the flag") {
    write_ok(fc, fd.get(), pattern(2 * cs, 1), cs);  // chunks 1, 2; 3..6 holes
    REQUIRE(fc.header().has_holes());
    REQUIRE(fc.truncate(fd.get(), 3 * cs + 10) == 0);  // chunk 3 becomes the (sealed) tail
    REQUIRE_FALSE(fc.header().has_holes());
    REQUIRE_FALSE(disk_has_holes(tv, fd.get()));
    require_zeroed_slot_is_eio(tv, fd.get(), 1);
  }
  SECTION("down, keeping a hole, keeps the flag") {
    write_ok(fc, fd.get(), pattern(cs, 1), cs);
    write_ok(fc, fd.get(), pattern(cs, 2), 3 * cs);  // chunk 2 stays a hole
    REQUIRE(fc.truncate(fd.get(), 4 * cs + 1) == 0);
    REQUIRE(fc.header().has_holes());
    require_zeros(fc, fd.get(), 2 * cs, cs);
  }
  SECTION("chunks cut off by a truncate down are holes again after a truncate up") {
    write_ok(fc, fd.get(), pattern(3 * cs, 1), 4 * cs);  // chunks 4..6
    REQUIRE(fc.truncate(fd.get(), 3 * cs + 1) == 0);     // chunks 1, 2 still holes
    REQUIRE(fc.header().has_holes());
    REQUIRE(fc.truncate(fd.get(), 8 * cs + 1) == 0);  // 4..7 a gap again
    write_ok(fc, fd.get(), pattern(2 * cs, 2), cs);   // 1, 2
    write_ok(fc, fd.get(), pattern(cs, 3), 7 * cs);   // 7
    REQUIRE(fc.header().has_holes());
    require_zeros(fc, fd.get(), 4 * cs, 3 * cs);
    FileContent fc2(*tv.vol);
    fc2.set_reporter(reports.fn());
    REQUIRE(fc2.load(fd.get()) == 0);
    require_zeros(fc2, fd.get(), 4 * cs, 3 * cs);
  }
  SECTION("filled, then down and up again: the new gap sets the flag again") {
    write_ok(fc, fd.get(), pattern(7 * cs, 1), 0);
    REQUIRE_FALSE(fc.header().has_holes());
    REQUIRE(fc.truncate(fd.get(), 2 * cs) == 0);
    REQUIRE(fc.truncate(fd.get(), 6 * cs + 1) == 0);
    REQUIRE(fc.header().has_holes());
    require_zeros(fc, fd.get(), 2 * cs, 4 * cs);
    write_ok(fc, fd.get(), pattern(4 * cs, 2), 2 * cs);
    REQUIRE_FALSE(fc.header().has_holes());
    require_zeroed_slot_is_eio(tv, fd.get(), 4);
  }
  REQUIRE(reports.list.empty());
}
