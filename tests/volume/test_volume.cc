// Volume setup: init_volume, unlock_volume with right and wrong keys, config edits that
// must stop the unlock, and file contents across key generations.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/errors.h"
#include "crypto/kdf.h"
#include "crypto/volume_keys.h"
#include "volume/config_file.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

ErrorKind unlock_error(const std::filesystem::path& dir, keystore::Keystore& ks) {
  const crypto::VolumeConfig cfg = volume::load_config(dir);
  try {
    volume::unlock_volume(dir, cfg, ks);
  } catch (const WardError& e) {
    return e.kind();
  }
  FAIL("unlock_volume succeeded");
  return ErrorKind::io;
}

}  // namespace

TEST_CASE("init_volume writes a config and a root directory id", "[volume]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto holes = GENERATE(HolesPolicy::allow, HolesPolicy::never);
  CAPTURE(cipher_label(cipher), holes_label(holes));
  TestVolume tv(cipher, 65536, holes);
  const auto& cfg = tv.vol->config();
  REQUIRE(cfg.cipher == cipher);
  REQUIRE(cfg.chunk_size == 65536);
  REQUIRE(cfg.holes == holes);
  REQUIRE(cfg.active_generation == 1);
  REQUIRE(cfg.keys.size() == 1);
  REQUIRE(tv.vol->holes_allowed() == (holes == HolesPolicy::allow));
  REQUIRE(tv.vol->layout().chunk_size() == 65536);
  REQUIRE(tv.vol->keys().active_generation() == 1);
  REQUIRE(tv.vol->cipher_dir() == tv.dir);
  REQUIRE(tv.vol->keystore_identity() == "test");
  REQUIRE(std::filesystem::file_size(tv.dir / "wardfs.dirid") == crypto::kDirIdSize);
  REQUIRE(std::filesystem::exists(tv.dir / "wardfs.conf"));
  // The config holds no key in the clear: it unlocks again with the same keystore.
  REQUIRE_NOTHROW(volume::unlock_volume(tv.dir, volume::load_config(tv.dir), *tv.ks));
}

TEST_CASE("init_volume refuses unusable directories and options", "[volume]") {
  TempDir tmp;
  auto ks = keystore::make_local_keystore(crypto::SecretBytes::random(32), "test");
  const auto opts = init_options(CipherId::aes256gcm, 4096, HolesPolicy::allow);
  auto kind_of = [&](const std::filesystem::path& dir, const volume::InitOptions& o) {
    try {
      volume::init_volume(dir, o, *ks);
    } catch (const WardError& e) {
      return e.kind();
    }
    FAIL("init_volume succeeded");
    return ErrorKind::io;
  };

  SECTION("a non-empty directory") {
    const auto dir = tmp.path() / "full";
    std::filesystem::create_directory(dir);
    std::ofstream(dir / "something") << "x";
    REQUIRE(kind_of(dir, opts) == ErrorKind::usage);
    REQUIRE_FALSE(std::filesystem::exists(dir / "wardfs.conf"));
    REQUIRE_FALSE(std::filesystem::exists(dir / "wardfs.dirid"));
  }
  SECTION("an existing volume") {
    const auto dir = tmp.path() / "vol";
    volume::init_volume(dir, opts, *ks);
    const std::string before = read_text(dir / "wardfs.conf");
    REQUIRE(kind_of(dir, opts) == ErrorKind::usage);
    REQUIRE(read_text(dir / "wardfs.conf") == before);
  }
  SECTION("a regular file") {
    std::ofstream(tmp.path() / "file") << "x";
    REQUIRE(kind_of(tmp.path() / "file", opts) == ErrorKind::usage);
  }
  SECTION("invalid chunk sizes") {
    const std::uint32_t bad = GENERATE(0U, 1024U, 4095U, 5000U, 2U << 20);
    auto o = opts;
    o.chunk_size = bad;
    REQUIRE(kind_of(tmp.path() / "new", o) == ErrorKind::usage);
  }
  SECTION("an empty or missing directory works") {
    std::filesystem::create_directory(tmp.path() / "empty");
    REQUIRE_NOTHROW(volume::init_volume(tmp.path() / "empty", opts, *ks));
    REQUIRE_NOTHROW(volume::init_volume(tmp.path() / "a" / "b", opts, *ks));
  }
}

TEST_CASE("unlock_volume with another KEK fails with wrong_key", "[volume]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  auto other = keystore::make_local_keystore(crypto::SecretBytes::random(32), "other");
  REQUIRE(unlock_error(tv.dir, *other) == ErrorKind::wrong_key);
}

TEST_CASE("Editing a security field of the config makes unlock fail with wrong_key",
          "[volume][tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096, HolesPolicy::allow);
  crypto::VolumeConfig cfg = volume::load_config(tv.dir);
  const std::string field =
      GENERATE(as<std::string>{}, "chunk_size", "cipher", "holes", "volume_id", "generation");
  CAPTURE(field);
  if (field == "chunk_size") cfg.chunk_size = 65536;
  if (field == "cipher") {
    cfg.cipher = cipher == CipherId::aes256gcm ? CipherId::xchacha20poly1305 : CipherId::aes256gcm;
  }
  if (field == "holes") cfg.holes = HolesPolicy::never;
  if (field == "volume_id") cfg.volume_id[0] ^= 1;
  if (field == "generation") {
    cfg.keys[0].generation = 2;
    cfg.active_generation = 2;
  }
  // Rewrite the JSON through the serializer, as an attacker with a text editor would.
  {
    std::filesystem::permissions(tv.dir / "wardfs.conf", std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    std::ofstream out(tv.dir / "wardfs.conf", std::ios::trunc);
    out << crypto::serialize_config(cfg);
  }
  REQUIRE(unlock_error(tv.dir, *tv.ks) == ErrorKind::wrong_key);
}

TEST_CASE("Unauthenticated config fields can change without breaking unlock", "[volume]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  crypto::VolumeConfig cfg = volume::load_config(tv.dir);
  cfg.keys[0].created = "2001-01-01T00:00:00Z";
  cfg.keystore.location = "/elsewhere/key";
  volume::save_config_atomic(tv.dir, cfg);
  REQUIRE_NOTHROW(volume::unlock_volume(tv.dir, volume::load_config(tv.dir), *tv.ks));
}

TEST_CASE("File contents across key generations", "[volume][content]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const auto& cfg = tv.vol->config();
  const std::uint64_t cs = 4096;
  auto gen1_dek = [&] {
    return crypto::SecretBytes::copy_of(tv.vol->keys().generation(1)->dek.view());
  };
  auto gen2 = crypto::SecretBytes::random(32);
  auto keys = std::make_unique<crypto::VolumeKeys>(cfg.cipher, cfg.volume_id);
  keys->add_generation(1, gen1_dek());
  keys->add_generation(2, crypto::SecretBytes::copy_of(gen2.view()));
  keys->set_active(2);
  volume::Volume rotated(tv.dir, cfg, std::move(keys), "test");

  UniqueFd fd = tv.open_file("f");
  Bytes model = pattern(3 * cs + 10, 1);
  make_file(tv, fd, model);  // header and chunks under generation 1
  {
    FileContent fc(rotated);
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE(fc.header().generation == 1);
    const Bytes patch = pattern(cs, 2);
    write_ok(fc, fd.get(), patch, cs);  // chunk 1 now under generation 2
    std::copy(patch.begin(), patch.end(), model.begin() + static_cast<std::ptrdiff_t>(cs));
    REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
  }
  REQUIRE(crypto::get_le32(peek(fd.get(), tv.layout().slot_offset(1), 4).data()) == 2);
  REQUIRE(crypto::get_le32(peek(fd.get(), tv.layout().slot_offset(0), 4).data()) == 1);

  SECTION("a volume holding both generations reads the mixed file") {
    FileContent fc(rotated);
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE(first_diff(read_all(fc, fd.get()), model) == -1);
  }
  SECTION("without generation 2 (retired), its chunk is EIO and reported; the rest reads") {
    FileContent fc(*tv.vol);
    Reports reports;
    fc.set_reporter(reports.fn());
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE(read_range(fc, fd.get(), cs, 10).first == -EIO);
    REQUIRE(reports.has(1));
    auto [n, got] = read_range(fc, fd.get(), 0, static_cast<std::size_t>(cs));
    REQUIRE(n == static_cast<ssize_t>(cs));
    REQUIRE(first_diff(got, ByteView(model).first(cs)) == -1);
  }
  SECTION("without generation 1 (retired), the header is EIO") {
    auto only2 = std::make_unique<crypto::VolumeKeys>(cfg.cipher, cfg.volume_id);
    only2->add_generation(2, crypto::SecretBytes::copy_of(gen2.view()));
    volume::Volume shredded(tv.dir, cfg, std::move(only2), "test");
    FileContent fc(shredded);
    Reports reports;
    fc.set_reporter(reports.fn());
    REQUIRE(fc.load(fd.get()) == -EIO);
    REQUIRE(reports.has(volume::kHeaderChunk));
  }
  SECTION("a chunk relabelled with another generation is EIO") {
    Bytes g = peek(fd.get(), tv.layout().slot_offset(0), 4);
    crypto::put_le32(g.data(), 2);
    poke(fd.get(), tv.layout().slot_offset(0), g);
    FileContent fc(rotated);
    Reports reports;
    fc.set_reporter(reports.fn());
    REQUIRE(fc.load(fd.get()) == 0);
    REQUIRE(read_range(fc, fd.get(), 0, 10).first == -EIO);
    REQUIRE(reports.has(0));
  }
}

TEST_CASE("the audit root opens only with the keystore that wrapped it, for its volume",
          "[volume]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  const crypto::VolumeConfig cfg = volume::load_config(tv.dir);
  REQUIRE(cfg.audit_key);
  const auto root = volume::open_audit_root(cfg, *tv.ks);
  REQUIRE(root);
  const auto mac_key = crypto::derive_audit_mac_key(root->view(), cfg.volume_id);
  CHECK(std::equal(mac_key.view().begin(), mac_key.view().end(),
                   tv.vol->audit_mac_key().view().begin(), tv.vol->audit_mac_key().view().end()));

  auto other = keystore::make_local_keystore(crypto::SecretBytes::random(32), "other");
  crypto::VolumeConfig moved = cfg;
  moved.audit_key->wrapped = volume::wrap_audit_root(moved, *other, root->view());
  const auto reopened = volume::open_audit_root(moved, *other);
  REQUIRE(reopened);
  CHECK(std::equal(root->view().begin(), root->view().end(), reopened->view().begin(),
                   reopened->view().end()));
  CHECK_FALSE(volume::open_audit_root(moved, *tv.ks));

  crypto::VolumeConfig elsewhere = moved;
  elsewhere.volume_id[0] ^= 1;
  CHECK_FALSE(volume::open_audit_root(elsewhere, *other));

  crypto::VolumeConfig before_audit = cfg;
  before_audit.audit_key.reset();
  CHECK_FALSE(volume::open_audit_root(before_audit, *tv.ks));
}
