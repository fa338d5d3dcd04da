// Specific FileContent cases: boundary sizes, zero fill, overwrites and many small appends.
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// Reloads the file through a fresh FileContent and compares everything.
void check_reload(const TestVolume& tv, const std::string& name, const Bytes& expect) {
  UniqueFd fd = tv.open_file(name);
  REQUIRE(backing_size(fd.get()) == tv.layout().backing_size(expect.size()));
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.load(fd.get()) == 0);
  REQUIRE(fc.size() == expect.size());
  auto [n, got] = read_range(fc, fd.get(), 0, expect.size() + 100);
  CAPTURE(reports.describe());
  REQUIRE(n == static_cast<ssize_t>(expect.size()));
  REQUIRE(first_diff(got, expect) == -1);
  REQUIRE(reports.list.empty());
  REQUIRE(first_diff(verify_format(tv, fd.get()), expect) == -1);
}

}  // namespace

TEST_CASE("Boundary sizes round-trip and reload", "[content]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  const std::uint64_t cs = chunk;
  const auto size = GENERATE_COPY(values<std::uint64_t>({0, 1, cs - 1, cs, cs + 1, 3 * cs + 5}));
  CAPTURE(size);

  const Bytes data = pattern(static_cast<std::size_t>(size), 7);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  REQUIRE(fc.loaded());
  REQUIRE(fc.size() == 0);
  REQUIRE(backing_size(fd.get()) == crypto::kHeaderSize + tv.layout().overhead());
  if (size > 0) write_ok(fc, fd.get(), data, 0);
  REQUIRE(fc.size() == size);
  REQUIRE(backing_size(fd.get()) == tv.layout().backing_size(size));
  REQUIRE(first_diff(read_all(fc, fd.get()), data) == -1);

  SECTION("reads at and past the end return nothing") {
    Bytes buf(10, 0xAA);
    REQUIRE(fc.read(fd.get(), buf, size) == 0);
    REQUIRE(fc.read(fd.get(), buf, size + cs + 3) == 0);
    REQUIRE(buf == Bytes(10, 0xAA));
  }
  SECTION("a read straddling the end stops there") {
    if (size > 0) {
      auto [n, got] = read_range(fc, fd.get(), size - 1, 50);
      REQUIRE(n == 1);
      REQUIRE(got[0] == data.back());
    }
  }
  SECTION("the same bytes written in pieces give the same file") {
    UniqueFd fd2 = tv.open_file("pieces");
    FileContent fc2(*tv.vol);
    REQUIRE(fc2.create(fd2.get()) == 0);
    for (std::size_t off = 0; off < data.size(); off += 1000) {
      const std::size_t n = std::min<std::size_t>(1000, data.size() - off);
      write_ok(fc2, fd2.get(), ByteView(data).subspan(off, n), volume::kAppendOffset);
    }
    REQUIRE(fc2.size() == size);
    check_reload(tv, "pieces", data);
  }
  check_reload(tv, "f", data);
}

TEST_CASE("Zero fill: write past EOF and truncate", "[content]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  CAPTURE(cipher_label(cipher), chunk, holes_label(holes));
  TestVolume tv(cipher, chunk, holes);
  const std::size_t cs = chunk;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(10, 1);
  write_ok(fc, fd.get(), model, 0);

  SECTION("write past EOF in the next chunk leaves zeros") {
    const Bytes tail = pattern(5, 2);
    write_ok(fc, fd.get(), tail, cs + 7);
    model.resize(cs + 7, 0);
    model.insert(model.end(), tail.begin(), tail.end());
  }
  SECTION("write far past EOF leaves zeros") {
    const Bytes tail = pattern(cs + 3, 3);
    write_ok(fc, fd.get(), tail, 3 * cs + 100);
    model.resize(3 * cs + 100, 0);
    model.insert(model.end(), tail.begin(), tail.end());
  }
  SECTION("write past EOF inside the tail chunk leaves zeros") {
    const Bytes tail = pattern(20, 4);
    write_ok(fc, fd.get(), tail, 500);
    model.resize(500, 0);
    model.insert(model.end(), tail.begin(), tail.end());
  }
  SECTION("truncate up leaves zeros") {
    REQUIRE(fc.truncate(fd.get(), 2 * cs + 50) == 0);
    model.resize(2 * cs + 50, 0);
  }
  SECTION("truncate down then up leaves zeros, not the old bytes") {
    model = pattern(3 * cs + 5, 5);
    write_ok(fc, fd.get(), model, 0);
    const auto down = GENERATE_COPY(values<std::size_t>({0, 1, 10, cs - 1, cs, cs + 10, 2 * cs}));
    CAPTURE(down);
    REQUIRE(fc.truncate(fd.get(), down) == 0);
    REQUIRE(fc.size() == down);
    REQUIRE(backing_size(fd.get()) == tv.layout().backing_size(down));
    model.resize(down);
    REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
    REQUIRE(fc.truncate(fd.get(), 3 * cs + 5) == 0);
    model.resize(3 * cs + 5, 0);
  }
  SECTION("truncate down, reload, then up leaves zeros") {
    model = pattern(2 * cs + 5, 6);
    write_ok(fc, fd.get(), model, 0);
    REQUIRE(fc.truncate(fd.get(), cs + 1) == 0);
    model.resize(cs + 1);
    FileContent fc2(*tv.vol);
    REQUIRE(fc2.load(fd.get()) == 0);
    REQUIRE(fc2.truncate(fd.get(), 2 * cs + 5) == 0);
    model.resize(2 * cs + 5, 0);
    REQUIRE(first_diff(read_all(fc2, fd.get()), model) == -1);
    check_reload(tv, "f", model);
    return;
  }
  REQUIRE(fc.size() == model.size());
  CAPTURE(reports.describe());
  REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
  REQUIRE(reports.list.empty());
  check_reload(tv, "f", model);
}

TEST_CASE("Aligned full-chunk overwrite touches only its chunks", "[content]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  const std::size_t cs = chunk;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(4 * cs, 1);
  write_ok(fc, fd.get(), model, 0);
  const Bytes before = backing_bytes(fd.get());

  const Bytes fresh = pattern(2 * cs, 2);
  write_ok(fc, fd.get(), fresh, cs);
  std::copy(fresh.begin(), fresh.end(), model.begin() + static_cast<std::ptrdiff_t>(cs));
  REQUIRE(fc.size() == 4 * cs);
  const Bytes after = backing_bytes(fd.get());
  REQUIRE(after.size() == before.size());
  auto slot = [&](const Bytes& b, std::uint64_t i) {
    return Bytes(
        b.begin() + static_cast<std::ptrdiff_t>(layout.slot_offset(i)),
        b.begin() + static_cast<std::ptrdiff_t>(layout.slot_offset(i) + layout.slot_size()));
  };
  REQUIRE(slot(after, 0) == slot(before, 0));
  REQUIRE(slot(after, 3) == slot(before, 3));
  REQUIRE(slot(after, 1) != slot(before, 1));
  REQUIRE(slot(after, 2) != slot(before, 2));
  REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);

  // Overwrite the final chunk exactly, then all chunks at once.
  const Bytes last = pattern(cs, 3);
  write_ok(fc, fd.get(), last, 3 * cs);
  std::copy(last.begin(), last.end(), model.begin() + static_cast<std::ptrdiff_t>(3 * cs));
  const Bytes whole = pattern(4 * cs, 4);
  write_ok(fc, fd.get(), whole, 0);
  model = whole;
  REQUIRE(fc.size() == 4 * cs);
  check_reload(tv, "f", model);
}

TEST_CASE("Ten thousand one-byte appends", "[content][append]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  CAPTURE(cipher_label(cipher), chunk);
  TestVolume tv(cipher, chunk);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.create(fd.get()) == 0);
  const Bytes data = pattern(10000, 9);
  for (std::size_t i = 0; i < data.size(); ++i) {
    CAPTURE(i);
    REQUIRE(fc.write(fd.get(), ByteView(&data[i], 1), volume::kAppendOffset) == 1);
    if (i % 997 == 0) {
      auto [n, got] = read_range(fc, fd.get(), 0, i + 1);
      REQUIRE(n == static_cast<ssize_t>(i + 1));
      REQUIRE(first_diff(got, ByteView(data).first(i + 1)) == -1);
    }
  }
  REQUIRE(fc.size() == data.size());
  REQUIRE(reports.list.empty());
  REQUIRE_FALSE(fc.header().has_holes());
  REQUIRE(zero_slots(tv.layout(), backing_bytes(fd.get())).empty());
  check_reload(tv, "f", data);

  // Appending through a freshly loaded FileContent (cold tail cache) continues the file.
  FileContent fc2(*tv.vol);
  REQUIRE(fc2.load(fd.get()) == 0);
  Bytes more = data;
  for (int i = 0; i < 300; ++i) {
    const std::uint8_t b = static_cast<std::uint8_t>(i + 1);
    REQUIRE(fc2.write(fd.get(), ByteView(&b, 1), volume::kAppendOffset) == 1);
    more.push_back(b);
  }
  check_reload(tv, "f", more);
}

TEST_CASE("Edge cases of the FileContent API", "[content]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  UniqueFd fd = tv.open_file("f");

  SECTION("an unloaded FileContent refuses I/O") {
    FileContent fc(*tv.vol);
    REQUIRE_FALSE(fc.loaded());
    Bytes buf(10);
    REQUIRE(fc.read(fd.get(), buf, 0) == -EIO);
    REQUIRE(fc.write(fd.get(), buf, 0) == -EIO);
    REQUIRE(fc.truncate(fd.get(), 5) == -EIO);
  }
  SECTION("empty writes change nothing, even past EOF") {
    FileContent fc(*tv.vol);
    REQUIRE(fc.create(fd.get()) == 0);
    write_ok(fc, fd.get(), pattern(100), 0);
    const Bytes before = backing_bytes(fd.get());
    REQUIRE(fc.write(fd.get(), {}, 50000) == 0);
    REQUIRE(fc.write(fd.get(), {}, volume::kAppendOffset) == 0);
    REQUIRE(fc.size() == 100);
    REQUIRE(backing_bytes(fd.get()) == before);
    REQUIRE_FALSE(fc.header().has_holes());
  }
  SECTION("sizes beyond 2^60 are refused with EFBIG and change nothing") {
    FileContent fc(*tv.vol);
    REQUIRE(fc.create(fd.get()) == 0);
    write_ok(fc, fd.get(), pattern(100), 0);
    const Bytes before = backing_bytes(fd.get());
    const std::uint64_t limit = std::uint64_t{1} << 60;
    const Bytes one = pattern(1);
    REQUIRE(fc.write(fd.get(), one, limit) == -EFBIG);
    REQUIRE(fc.write(fd.get(), one, limit + 12345) == -EFBIG);
    REQUIRE(fc.truncate(fd.get(), limit + 1) == -EFBIG);
    REQUIRE(fc.size() == 100);
    REQUIRE(backing_bytes(fd.get()) == before);
  }
  SECTION("truncate to the same size is a no-op") {
    FileContent fc(*tv.vol);
    REQUIRE(fc.create(fd.get()) == 0);
    write_ok(fc, fd.get(), pattern(5000), 0);
    const Bytes before = backing_bytes(fd.get());
    REQUIRE(fc.truncate(fd.get(), 5000) == 0);
    REQUIRE(backing_bytes(fd.get()) == before);
  }
  SECTION("two creates give different file ids and different ciphertext") {
    UniqueFd fd2 = tv.open_file("g");
    FileContent a(*tv.vol), b(*tv.vol);
    REQUIRE(a.create(fd.get()) == 0);
    REQUIRE(b.create(fd2.get()) == 0);
    REQUIRE(a.header().file_id != b.header().file_id);
    REQUIRE(a.header().generation == tv.vol->keys().active_generation());
    const Bytes data = pattern(3000);
    write_ok(a, fd.get(), data, 0);
    write_ok(b, fd2.get(), data, 0);
    REQUIRE(backing_bytes(fd.get()) != backing_bytes(fd2.get()));
  }
}

TEST_CASE("The tail chunk stays coherent under overwrites, appends, truncates and closes",
          "[content][append]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const std::uint64_t base = GENERATE(0U, 8192U);  // the tail is chunk 0, or chunk 2
  CAPTURE(cipher_label(cipher), base);
  TestVolume tv(cipher, 4096);
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  Bytes model = pattern(static_cast<std::size_t>(base + 100), 1);
  write_ok(fc, fd.get(), model, 0);
  std::uint32_t x = 12345;
  auto next = [&](std::uint32_t n) {
    x = x * 1103515245U + 12345U;
    return (x >> 8) % n;
  };
  for (int i = 0; i < 600; ++i) {
    CAPTURE(i, model.size());
    const std::size_t in_tail = model.size() - static_cast<std::size_t>(base);
    const Bytes data = pattern(1 + next(40), static_cast<std::uint32_t>(i + 2));
    switch (next(4)) {
      case 0: {  // overwrite inside the tail, possibly growing it a little
        const std::size_t at =
            static_cast<std::size_t>(base) + next(static_cast<std::uint32_t>(in_tail + 1));
        write_ok(fc, fd.get(), data, at);
        if (model.size() < at + data.size()) model.resize(at + data.size());
        std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      }
      case 1:
        if (model.size() + data.size() < base + 4096) {
          write_ok(fc, fd.get(), data, volume::kAppendOffset);
          model.insert(model.end(), data.begin(), data.end());
        }
        break;
      case 2: {
        const std::size_t to =
            static_cast<std::size_t>(base) + next(static_cast<std::uint32_t>(in_tail + 1));
        REQUIRE(fc.truncate(fd.get(), to) == 0);
        model.resize(to);
        break;
      }
      default: {
        auto [n, got] = read_range(fc, fd.get(), base, 5000);
        REQUIRE(n == static_cast<ssize_t>(in_tail));
        REQUIRE(first_diff(got, ByteView(model).subspan(static_cast<std::size_t>(base))) == -1);
      }
    }
    if (model.size() > base + 4000) {
      REQUIRE(fc.truncate(fd.get(), base + 50) == 0);
      model.resize(static_cast<std::size_t>(base + 50));
    }
    if (i % 7 == 3) fc.drop_tail_cache();  // a handle closed: the next append re-reads it
  }
  REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
  check_reload(tv, "f", model);
}

TEST_CASE("Large reads and writes cross the engine's batch boundaries", "[content][large]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto chunk = GENERATE(4096U, 65536U);
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  CAPTURE(cipher_label(cipher), chunk, holes_label(holes));
  TestVolume tv(cipher, chunk, holes);
  const std::size_t cs = chunk;
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);
  // 3 MiB and a bit, written in one call at an unaligned offset: batches of 1 MiB.
  Bytes model(100, 0);
  const Bytes big = pattern((3 << 20) + 123, 1);
  write_ok(fc, fd.get(), big, 100);
  model.insert(model.end(), big.begin(), big.end());
  // A gap of more than 1 MiB of whole chunks (filled, or a hole), then more data.
  const std::size_t gap_end = model.size() + (1 << 20) + 3 * cs + 17;
  const Bytes after = pattern(2 * cs + 9, 2);
  write_ok(fc, fd.get(), after, gap_end);
  model.resize(gap_end, 0);
  model.insert(model.end(), after.begin(), after.end());
  REQUIRE(fc.size() == model.size());
  REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
  // Reads that start and end around 1 MiB multiples.
  for (const std::size_t mib : {std::size_t{1} << 20, std::size_t{2} << 20, std::size_t{4} << 20}) {
    for (const std::size_t off : {mib - cs - 1, mib - 1, mib, mib + 1}) {
      CAPTURE(off);
      auto [n, got] = read_range(fc, fd.get(), off, (1 << 20) + cs + 2);
      const std::size_t expect = std::min<std::size_t>((1 << 20) + cs + 2, model.size() - off);
      REQUIRE(n == static_cast<ssize_t>(expect));
      REQUIRE(first_diff(got, ByteView(model).subspan(off, expect)) == -1);
    }
  }
  // Truncate into the first batch, then overwrite across a batch boundary.
  REQUIRE(fc.truncate(fd.get(), (2 << 20) + 5) == 0);
  model.resize((2 << 20) + 5);
  const Bytes patch = pattern((1 << 20) + 2 * cs, 3);
  write_ok(fc, fd.get(), patch, (1 << 20) - cs / 2);
  model.resize(std::max(model.size(), (1 << 20) - cs / 2 + patch.size()), 0);
  std::copy(patch.begin(), patch.end(),
            model.begin() + static_cast<std::ptrdiff_t>((1 << 20) - cs / 2));
  check_reload(tv, "f", model);
}
