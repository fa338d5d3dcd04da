// copy_file_range in the engine (FileContent::copy_to): the destination ends up as a
// byte-for-byte model copy says, through the normal write path (a valid format, holes and
// flags as a write leaves them), with short counts at the source's end, -EINVAL for
// overlapping ranges in one file, and -EIO, with nothing of that block written, when a
// source chunk fails authentication.
#include <algorithm>

#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// What copy_file_range does to `dst` on a plain file system; returns the count.
std::uint64_t model_copy(const Bytes& src, std::uint64_t off, Bytes& dst, std::uint64_t dst_off,
                         std::uint64_t len) {
  if (off >= src.size()) return 0;
  const std::uint64_t n = std::min<std::uint64_t>(len, src.size() - off);
  if (dst.size() < dst_off + n) dst.resize(static_cast<std::size_t>(dst_off + n), 0);
  std::copy(src.begin() + static_cast<std::ptrdiff_t>(off),
            src.begin() + static_cast<std::ptrdiff_t>(off + n),
            dst.begin() + static_cast<std::ptrdiff_t>(dst_off));
  return n;
}

struct Case {
  std::uint64_t src_off;
  std::uint64_t dst_off;
  std::uint64_t len;
};

}  // namespace

TEST_CASE("copy_to copies ranges between files as a plain file system would", "[copy]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  const std::uint64_t cs = 4096;
  CAPTURE(cipher_label(cipher), holes_label(holes));
  TestVolume tv(cipher, static_cast<std::uint32_t>(cs), holes);
  const Bytes src_model = pattern(static_cast<std::size_t>(40 * cs + 123), 3);
  const Bytes dst_start = pattern(static_cast<std::size_t>(10 * cs + 7), 4);

  const std::vector<Case> cases = {
      {0, 0, 40 * cs + 123},          // the whole file onto a shorter one
      {cs, 2 * cs, 3 * cs},           // aligned, inside
      {cs - 1, 2 * cs + 1, cs + 2},   // unaligned around the chunk size
      {5, 3 * cs - 5, 10},            // within one chunk, across a boundary of the other
      {17, 33, 30 * cs},              // both unaligned, several blocks
      {2 * cs, 8 * cs, 5 * cs},       // from inside to past the destination's end
      {3 * cs, 25 * cs + 9, 2 * cs},  // past the destination's end: a gap before it
      {39 * cs, 0, 100 * cs},         // past the source's end: short count
      {40 * cs + 123, 0, 10},         // at the source's end: 0
      {50 * cs, 0, 10},               // past the source's end: 0
      {0, 5, 0},                      // zero length
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    CAPTURE(i, c.src_off, c.dst_off, c.len);
    UniqueFd sfd = tv.open_file("src" + std::to_string(i));
    UniqueFd dfd = tv.open_file("dst" + std::to_string(i));
    make_file(tv, sfd, src_model);
    make_file(tv, dfd, dst_start);
    FileContent src(*tv.vol);
    FileContent dst(*tv.vol);
    Reports reports;
    src.set_reporter(reports.fn());
    dst.set_reporter(reports.fn());
    REQUIRE(src.load(sfd.get()) == 0);
    REQUIRE(dst.load(dfd.get()) == 0);
    Bytes want = dst_start;
    const std::uint64_t n = model_copy(src_model, c.src_off, want, c.dst_off, c.len);
    REQUIRE(src.copy_to(sfd.get(), c.src_off, dst, dfd.get(), c.dst_off, c.len) ==
            static_cast<ssize_t>(n));
    require_content(tv, dst, dfd.get(), want);
    require_content(tv, src, sfd.get(), src_model);
    INFO(reports.describe());
    REQUIRE(reports.list.empty());
    if (c.dst_off / cs > dst_start.size() / cs + 1 && n > 0)
      REQUIRE(dst.header().has_holes() == (holes == HolesPolicy::allow));
  }
}

TEST_CASE("copy_to within one file: apart ranges copy, overlapping ones are EINVAL", "[copy]") {
  const std::uint64_t cs = 4096;
  TestVolume tv(CipherId::aes256gcm, static_cast<std::uint32_t>(cs), HolesPolicy::allow);
  UniqueFd fd = tv.open_file("f");
  Bytes model = pattern(static_cast<std::size_t>(12 * cs + 50), 8);
  make_file(tv, fd, model);
  FileContent fc(*tv.vol);
  REQUIRE(fc.load(fd.get()) == 0);

  SECTION("forward, backward, and growing the file") {
    for (const Case& c : std::vector<Case>{{0, 6 * cs + 3, 5 * cs},
                                           {7 * cs + 1, 10, 2 * cs},
                                           {cs, 12 * cs + 50, 3 * cs + 1},
                                           {2 * cs, 30 * cs, cs}}) {
      CAPTURE(c.src_off, c.dst_off, c.len);
      const Bytes before = model;
      const std::uint64_t n = model_copy(before, c.src_off, model, c.dst_off, c.len);
      REQUIRE(fc.copy_to(fd.get(), c.src_off, fc, fd.get(), c.dst_off, c.len) ==
              static_cast<ssize_t>(n));
      require_content(tv, fc, fd.get(), model);
    }
  }
  SECTION("overlap is EINVAL and changes nothing") {
    REQUIRE(fc.copy_to(fd.get(), 0, fc, fd.get(), cs, 2 * cs) == -EINVAL);
    REQUIRE(fc.copy_to(fd.get(), cs, fc, fd.get(), 0, 2 * cs) == -EINVAL);
    REQUIRE(fc.copy_to(fd.get(), 5, fc, fd.get(), 5, 1) == -EINVAL);
    require_content(tv, fc, fd.get(), model);
  }
  SECTION("a length past the end counts only what exists when checking overlap") {
    // [12cs, 12cs+50) to [12cs+50, 12cs+100): apart once cut at the end, as the kernel cuts.
    const std::uint64_t n = model_copy(Bytes(model), 12 * cs, model, 12 * cs + 50, 10 * cs);
    REQUIRE(n == 50);
    REQUIRE(fc.copy_to(fd.get(), 12 * cs, fc, fd.get(), 12 * cs + 50, 10 * cs) == 50);
    require_content(tv, fc, fd.get(), model);
  }
}

TEST_CASE("copy_to: a tampered source chunk is EIO and writes nothing of its block",
          "[copy][tamper]") {
  const std::uint64_t cs = 4096;
  TestVolume tv(CipherId::xchacha20poly1305, static_cast<std::uint32_t>(cs), HolesPolicy::allow);
  const auto& layout = tv.layout();
  UniqueFd sfd = tv.open_file("src");
  UniqueFd dfd = tv.open_file("dst");
  // Three 1 MiB blocks' worth of source; chunk 300 sits in the second block.
  const Bytes src_model = pattern(static_cast<std::size_t>(3 * volume::kBatchBytes), 5);
  const Bytes dst_start = pattern(static_cast<std::size_t>(3 * volume::kBatchBytes), 6);
  make_file(tv, sfd, src_model);
  make_file(tv, dfd, dst_start);
  flip_byte(sfd.get(), layout.slot_offset(300) + 50);
  FileContent src(*tv.vol);
  FileContent dst(*tv.vol);
  Reports reports;
  src.set_reporter(reports.fn());
  REQUIRE(src.load(sfd.get()) == 0);
  REQUIRE(dst.load(dfd.get()) == 0);
  Bytes want = dst_start;

  SECTION("tampered chunk in the first block: EIO, destination unchanged") {
    REQUIRE(src.copy_to(sfd.get(), 290 * cs, dst, dfd.get(), 0, 2 * cs * 100) == -EIO);
  }
  SECTION("tampered chunk in a later block: the blocks before it, then EIO") {
    const std::uint64_t first_block = volume::kBatchBytes;
    REQUIRE(src.copy_to(sfd.get(), 0, dst, dfd.get(), 0, src_model.size()) ==
            static_cast<ssize_t>(first_block));
    model_copy(src_model, 0, want, 0, first_block);
    REQUIRE(src.copy_to(sfd.get(), first_block, dst, dfd.get(), first_block,
                        src_model.size() - first_block) == -EIO);
  }
  REQUIRE(reports.has(300));
  require_content(tv, dst, dfd.get(), want);
}
