// One FileContent shared by threads, as FUSE workers share it: readers never see a torn
// chunk, an error or a size that goes backwards while a writer rewrites and appends.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

TEST_CASE("Concurrent readers see whole chunk writes and appends atomically",
          "[content][threads]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const std::size_t cs = 4096;
  const std::size_t chunks = 8;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  write_ok(fc, fd.get(), Bytes(chunks * cs, 1), 0);

  std::atomic<bool> stop{false};
  std::atomic<int> bad_reads{0}, torn{0}, shrunk{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      Bytes buf(cs * 2);
      std::uint64_t last_size = 0;
      std::uint32_t x = 77 + t;
      while (!stop.load()) {
        x = x * 1103515245U + 12345U;
        const std::uint64_t chunk = (x >> 8) % chunks;
        const ssize_t n = fc.read(fd.get(), std::span(buf).first(cs), chunk * cs);
        if (n != static_cast<ssize_t>(cs)) {
          ++bad_reads;
          continue;
        }
        // Every write fills a whole chunk with one value: a mix means a torn read.
        if (std::any_of(buf.begin(), buf.begin() + cs,
                        [&](std::uint8_t b) { return b != buf[0]; })) {
          ++torn;
        }
        const std::uint64_t size = fc.size();
        if (size < last_size) ++shrunk;
        last_size = size;
        std::this_thread::yield();  // leave the writer a gap (see the starvation test below)
      }
    });
  }
  std::uint64_t appended = 0;
  for (int i = 0; i < 400; ++i) {
    const auto v = static_cast<std::uint8_t>(2 + i % 250);
    REQUIRE(fc.write(fd.get(), Bytes(cs, v), (i % chunks) * cs) == static_cast<ssize_t>(cs));
    const std::uint8_t b = 0xEE;
    REQUIRE(fc.write(fd.get(), ByteView(&b, 1), volume::kAppendOffset) == 1);
    ++appended;
  }
  stop = true;
  for (auto& t : readers) t.join();
  CAPTURE(reports.describe());
  REQUIRE(bad_reads == 0);
  REQUIRE(torn == 0);
  REQUIRE(shrunk == 0);
  REQUIRE(reports.list.empty());
  REQUIRE(fc.size() == chunks * cs + appended);
  auto [n, tail] = read_range(fc, fd.get(), chunks * cs, static_cast<std::size_t>(appended));
  REQUIRE(n == static_cast<ssize_t>(appended));
  REQUIRE(tail == Bytes(static_cast<std::size_t>(appended), 0xEE));
  verify_format(tv, fd.get());
}

// Readers that keep the shared lock busy must not hold off a writer for long: FUSE runs
// reads of one file on several threads. With glibc's reader-preferring rwlock behind
// std::shared_mutex, three tight readers on two cores starve the writer indefinitely.
TEST_CASE("A writer is not starved by continuous readers", "[content][threads]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  write_ok(fc, fd.get(), Bytes(8 * 4096, 1), 0);
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(6);
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  const unsigned n = std::max(3U, std::thread::hardware_concurrency() + 1);
  for (unsigned t = 0; t < n; ++t) {
    readers.emplace_back([&] {
      Bytes buf(4096);
      while (!stop.load() && Clock::now() < deadline) {
        fc.read(fd.get(), buf, 4096);
        ++reads;
      }
    });
  }
  while (reads.load() < 1000 && Clock::now() < deadline) std::this_thread::yield();
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(fc.write(fd.get(), Bytes(4096, 2), (i % 8) * 4096) == 4096);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  for (auto& t : readers) t.join();
  CAPTURE(n, seconds, reads.load());
  CHECK(seconds < 2.0);
}

// FUSE workers fill a truncated-up file (as mmap writeback does) while others read it: the
// has-holes bookkeeping is shared by all of them (FORMAT.md §4.6.1).
TEST_CASE("Threads filling a gap while others read it clear has-holes when it is full",
          "[content][threads][holes]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  const std::size_t cs = 4096;
  const std::uint64_t chunks = 64;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  REQUIRE(fc.truncate(fd.get(), chunks * cs) == 0);
  REQUIRE(fc.header().has_holes());

  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      Bytes buf(cs);
      std::uint32_t x = 5 + t;
      while (!stop.load()) {
        x = x * 1103515245U + 12345U;
        const std::uint64_t chunk = (x >> 8) % chunks;
        // A chunk is a hole (zeros) or whole: every byte is its index + 1.
        const auto want = static_cast<std::uint8_t>(chunk + 1);
        if (fc.read(fd.get(), buf, chunk * cs) != static_cast<ssize_t>(cs) ||
            std::any_of(buf.begin(), buf.end(),
                        [&](std::uint8_t b) { return b != buf[0] || (b != 0 && b != want); })) {
          ++bad;
        }
      }
    });
  }
  std::vector<std::thread> writers;
  for (std::uint64_t parity = 0; parity < 2; ++parity) {
    writers.emplace_back([&, parity] {
      for (std::uint64_t k = 0; k < chunks / 2; ++k) {
        const std::uint64_t chunk = (chunks / 2 - 1 - k) * 2 + parity;  // back to front
        const Bytes data(cs, static_cast<std::uint8_t>(chunk + 1));
        if (fc.write(fd.get(), data, chunk * cs) != static_cast<ssize_t>(cs)) ++bad;
      }
    });
  }
  for (auto& t : writers) t.join();
  stop = true;
  for (auto& t : readers) t.join();
  CAPTURE(reports.describe());
  REQUIRE(bad == 0);
  REQUIRE(reports.list.empty());
  REQUIRE_FALSE(fc.header().has_holes());
  verify_format(tv, fd.get());

  poke(fd.get(), tv.layout().slot_offset(17), Bytes(tv.layout().slot_size(), 0));
  FileContent fresh(*tv.vol);
  fresh.set_reporter(reports.fn());
  REQUIRE(fresh.load(fd.get()) == 0);
  REQUIRE(read_range(fresh, fd.get(), 17 * cs, cs).first == -EIO);
  REQUIRE(reports.has(17));
}

TEST_CASE("Copies A->B and B->A at once neither deadlock nor tear a chunk", "[copy][threads]") {
  // copy_to holds one file's lock at a time; were it to hold both, these two threads would
  // take them in opposite orders. Every copy moves whole files of one repeated byte value,
  // so a block mixed of two values is a torn copy.
  TestVolume tv(CipherId::aes256gcm, 4096);
  const std::size_t size = 3 * volume::kBatchBytes + 4096 + 17;  // several blocks
  UniqueFd fa = tv.open_file("a");
  UniqueFd fb = tv.open_file("b");
  FileContent a(*tv.vol);
  FileContent b(*tv.vol);
  Reports reports;
  a.set_reporter(reports.fn());
  b.set_reporter(reports.fn());
  REQUIRE(a.create(fa.get()) == 0);
  REQUIRE(b.create(fb.get()) == 0);
  write_ok(a, fa.get(), Bytes(size, 1), 0);
  write_ok(b, fb.get(), Bytes(size, 2), 0);

  std::atomic<int> failures{0};
  auto copier = [&](FileContent& from, int from_fd, FileContent& to, int to_fd) {
    for (int i = 0; i < 15; ++i) {
      if (from.copy_to(from_fd, 0, to, to_fd, 0, size) != static_cast<ssize_t>(size)) ++failures;
    }
  };
  std::thread ab(copier, std::ref(a), fa.get(), std::ref(b), fb.get());
  std::thread ba(copier, std::ref(b), fb.get(), std::ref(a), fa.get());
  // A writer of one of the files meanwhile: it waits at most a block at a time.
  for (int i = 0; i < 50; ++i) {
    const Bytes three(4096, 3);
    if (a.write(fa.get(), three, static_cast<std::uint64_t>(i % 64) * 4096) != 4096) ++failures;
  }
  ab.join();
  ba.join();
  REQUIRE(failures.load() == 0);
  INFO(reports.describe());
  REQUIRE(reports.list.empty());
  for (auto* fc : {&a, &b}) {
    const Bytes got = read_all(*fc, fc == &a ? fa.get() : fb.get());
    REQUIRE(got.size() == size);
    for (std::size_t chunk = 0; chunk < size; chunk += 4096) {
      const auto end = std::min(size, chunk + 4096);
      CAPTURE(chunk);
      REQUIRE(std::all_of(got.begin() + static_cast<std::ptrdiff_t>(chunk),
                          got.begin() + static_cast<std::ptrdiff_t>(end),
                          [&](std::uint8_t v) { return v == got[chunk]; }));
    }
  }
}
