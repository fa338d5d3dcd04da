// A mount following a config that another mount changed (volume::adopt_config_changes):
// rotations and retirements are taken on, a replayed older config is refused.
#include <fstream>
#include <sstream>

#include "base/errors.h"
#include "crypto/volume_keys.h"
#include "volume/config_file.h"
#include "volume/rotation.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

std::string config_text(const std::filesystem::path& dir) {
  std::ifstream in(dir / "wardfs.conf", std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void put_config_text(const std::filesystem::path& dir, const std::string& text) {
  std::ofstream(dir / "wardfs.conf", std::ios::binary | std::ios::trunc) << text;
}

ErrorKind adopt_error(volume::Volume& vol, keystore::Keystore& ks) {
  try {
    volume::adopt_config_changes(vol, ks);
  } catch (const WardError& e) {
    return e.kind();
  }
  FAIL("adopt_config_changes accepted the config");
  return ErrorKind::io;
}

}  // namespace

TEST_CASE("a reader takes on a rotation and a retirement made by another mount",
          "[volume][follow]") {
  TestVolume writer(CipherId::aes256gcm, 4096);
  auto reader = volume::unlock_volume(writer.dir, volume::load_config(writer.dir), *writer.ks);

  CHECK_FALSE(volume::adopt_config_changes(*reader, *writer.ks).any());

  REQUIRE(volume::rotate_generation(*writer.vol, *writer.ks) == 2);
  const auto rotated = volume::adopt_config_changes(*reader, *writer.ks);
  CHECK(rotated.active_changed);
  CHECK(rotated.added == std::vector<std::uint32_t>{2});
  CHECK(reader->keys().active_generation() == 2);
  CHECK(reader->config().active_generation == 2);
  // The reader now opens what the writer seals under generation 2.
  const auto file_id = crypto::FileId{};
  CHECK(reader->keys().file_keys(2, file_id) != nullptr);

  volume::retire_generation(*writer.vol, 1);
  const auto retired = volume::adopt_config_changes(*reader, *writer.ks);
  CHECK(retired.removed == std::vector<std::uint32_t>{1});
  CHECK_FALSE(reader->keys().generation(1));
  CHECK(reader->keys().generation(2));
}

TEST_CASE("a replayed older config is refused and the reader's keys stay", "[volume][follow]") {
  TestVolume writer(CipherId::xchacha20poly1305, 4096);
  auto reader = volume::unlock_volume(writer.dir, volume::load_config(writer.dir), *writer.ks);
  const std::string first = config_text(writer.dir);  // generation 1 active
  volume::rotate_generation(*writer.vol, *writer.ks);
  const std::string both = config_text(writer.dir);  // 1 and 2, 2 active
  volume::retire_generation(*writer.vol, 1);
  const std::string latest = config_text(writer.dir);
  volume::adopt_config_changes(*reader, *writer.ks);
  REQUIRE(reader->keys().active_generation() == 2);
  REQUIRE_FALSE(reader->keys().generation(1));

  SECTION("an older active generation") {
    put_config_text(writer.dir, first);
    CHECK(adopt_error(*reader, *writer.ks) == ErrorKind::corrupt_volume);
  }
  SECTION("a retired generation brought back") {
    put_config_text(writer.dir, both);
    CHECK(adopt_error(*reader, *writer.ks) == ErrorKind::corrupt_volume);
  }
  CHECK(reader->keys().active_generation() == 2);
  CHECK_FALSE(reader->keys().generation(1));
  put_config_text(writer.dir, latest);
  CHECK_FALSE(volume::adopt_config_changes(*reader, *writer.ks).any());
}

TEST_CASE("a config of another volume is refused", "[volume][follow]") {
  TestVolume mine(CipherId::aes256gcm, 4096);
  TestVolume other(CipherId::aes256gcm, 4096);
  put_config_text(mine.dir, config_text(other.dir));
  CHECK(adopt_error(*mine.vol, *mine.ks) == ErrorKind::corrupt_volume);
}
