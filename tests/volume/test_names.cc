// NameMapper: encrypted entry names and long names in real backing directories, listing
// and its reports, symlink targets and xattrs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "crypto/volume_keys.h"
#include "volume/names.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;
using volume::NameMapper;
using volume::ResolvedName;

namespace {

struct Dir {
  UniqueFd fd;
  crypto::DirId id{};
};

Dir open_dir(const std::filesystem::path& path) {
  Dir d;
  d.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(d.fd);
  REQUIRE(volume::read_dir_id(d.fd.get(), d.id) == 0);
  return d;
}

Dir make_subdir(const std::filesystem::path& path) {
  REQUIRE(::mkdir(path.c_str(), 0700) == 0);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(fd);
  REQUIRE(volume::write_new_dir_id(fd.get()) == 0);
  return open_dir(path);
}

void touch(int dir_fd, const std::string& name) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(fd);
}

// Resolves a new name, writes its sidecar if long, and creates the entry.
ResolvedName create_entry(const NameMapper& names, const Dir& dir, const std::string& name) {
  ResolvedName r;
  REQUIRE(names.resolve(dir.fd.get(), dir.id, name, r) == 0);
  REQUIRE_FALSE(r.exists);
  REQUIRE(names.write_sidecar(dir.fd.get(), r) == 0);
  touch(dir.fd.get(), r.backing);
  return r;
}

struct Listing {
  std::map<std::string, std::string> names;  // plaintext -> backing
  std::vector<std::pair<std::string, std::string>> reported;
};

Listing list_dir(const NameMapper& names, const Dir& dir) {
  Listing out;
  std::vector<volume::DirEntry> entries;
  REQUIRE(names.list(dir.fd.get(), dir.id, entries,
                     [&](std::string_view backing, std::string_view reason) {
                       out.reported.emplace_back(std::string(backing), std::string(reason));
                     }) == 0);
  for (const auto& e : entries) {
    REQUIRE(out.names.emplace(e.name, e.backing).second);
  }
  return out;
}

bool was_reported(const Listing& l, const std::string& backing) {
  return std::any_of(l.reported.begin(), l.reported.end(),
                     [&](const auto& r) { return r.first == backing; });
}

}  // namespace

TEST_CASE("NameMapper resolves, creates and lists names", "[names]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  NameMapper names(*tv.vol);
  Dir root = open_dir(tv.dir);

  SECTION("a new name uses the active generation's encoding; once created it exists") {
    ResolvedName r;
    REQUIRE(names.resolve(root.fd.get(), root.id, "hello.txt", r) == 0);
    REQUIRE_FALSE(r.exists);
    REQUIRE_FALSE(r.is_long());
    REQUIRE(r.backing == tv.vol->keys().active()->names->encrypt(root.id, "hello.txt"));
    REQUIRE(r.backing.find("hello") == std::string::npos);
    REQUIRE_FALSE(volume::is_metadata_entry(r.backing));
    touch(root.fd.get(), r.backing);
    ResolvedName again;
    REQUIRE(names.resolve(root.fd.get(), root.id, "hello.txt", again) == 0);
    REQUIRE(again.exists);
    REQUIRE(again.backing == r.backing);
    REQUIRE(S_ISREG(again.st.st_mode));
    // Deterministic within a directory, different in another.
    Dir sub = make_subdir(tv.dir / "sub");
    ResolvedName other;
    REQUIRE(names.resolve(sub.fd.get(), sub.id, "hello.txt", other) == 0);
    REQUIRE_FALSE(other.exists);
    REQUIRE(other.backing != r.backing);
  }
  SECTION("invalid names are refused") {
    ResolvedName r;
    REQUIRE(names.resolve(root.fd.get(), root.id, "", r) == -EINVAL);
    REQUIRE(names.resolve(root.fd.get(), root.id, "a/b", r) == -EINVAL);
    REQUIRE(names.resolve(root.fd.get(), root.id, std::string(256, 'x'), r) == -ENAMETOOLONG);
    REQUIRE(names.resolve(root.fd.get(), root.id, std::string(255, 'x'), r) == 0);
  }
  SECTION("long names use the L. scheme with a sidecar") {
    const std::string name(200, 'n');
    ResolvedName r;
    REQUIRE(names.resolve(root.fd.get(), root.id, name, r) == 0);
    REQUIRE(r.is_long());
    REQUIRE(r.encoded.size() > 255);
    REQUIRE(r.backing.size() == 45);
    REQUIRE(r.backing.rfind("L.", 0) == 0);
    REQUIRE(r.backing == crypto::long_name_for(r.encoded));
    REQUIRE(names.write_sidecar(root.fd.get(), r) == 0);
    REQUIRE(std::filesystem::exists(tv.dir / (r.backing + ".n")));
    touch(root.fd.get(), r.backing);
    ResolvedName again;
    REQUIRE(names.resolve(root.fd.get(), root.id, name, again) == 0);
    REQUIRE(again.exists);
    REQUIRE(again.backing == r.backing);
    const Listing l = list_dir(names, root);
    REQUIRE(l.reported.empty());
    REQUIRE(l.names.size() == 1);
    REQUIRE(l.names.at(name) == r.backing);
    names.remove_sidecar(root.fd.get(), r);
    REQUIRE_FALSE(std::filesystem::exists(tv.dir / (r.backing + ".n")));
  }
  SECTION("the long-name threshold is 160 bytes") {
    ResolvedName r;
    REQUIRE(names.resolve(root.fd.get(), root.id, std::string(159, 'a'), r) == 0);
    REQUIRE_FALSE(r.is_long());
    REQUIRE(r.backing.size() <= 255);
    REQUIRE(names.resolve(root.fd.get(), root.id, std::string(160, 'a'), r) == 0);
    REQUIRE(r.is_long());
  }
  SECTION("list returns plaintext names and skips wardfs metadata") {
    const std::vector<std::string> plain = {
        "a", "b.txt", std::string(170, 'L'), "ünïcødé", std::string(255, 'z'), "x y"};
    for (const auto& p : plain) create_entry(names, root, p);
    REQUIRE(::mkdir((tv.dir / "wardfs.tmp.abc123").c_str(), 0700) == 0);
    touch(root.fd.get(), "wardfs.conf.tmp");
    const Listing l = list_dir(names, root);
    CAPTURE(l.reported.size());
    REQUIRE(l.reported.empty());
    REQUIRE(l.names.size() == plain.size());
    for (const auto& p : plain) REQUIRE(l.names.count(p) == 1);
  }
}

TEST_CASE("NameMapper reports and hides bad entries", "[names][tamper]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  NameMapper names(*tv.vol);
  Dir root = open_dir(tv.dir);
  const ResolvedName good = create_entry(names, root, "good");

  SECTION("garbage names") {
    const std::string bad =
        GENERATE(as<std::string>{}, "garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                 "not-base64!", "L.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    CAPTURE(bad);
    touch(root.fd.get(), bad);
    const Listing l = list_dir(names, root);
    REQUIRE(was_reported(l, bad));
    REQUIRE(l.names.size() == 1);
    REQUIRE(l.names.count("good") == 1);
  }
  SECTION("a tampered encoded name") {
    const ResolvedName r = create_entry(names, root, "victim-name");
    std::string bad = r.backing;
    bad[bad.size() / 2] = bad[bad.size() / 2] == 'A' ? 'B' : 'A';
    REQUIRE(::renameat(root.fd.get(), r.backing.c_str(), root.fd.get(), bad.c_str()) == 0);
    const Listing l = list_dir(names, root);
    REQUIRE(was_reported(l, bad));
    REQUIRE(l.names.count("victim-name") == 0);
    REQUIRE(l.names.size() == 1);
  }
  SECTION("a long-form entry whose sidecar holds a short name's encoding") {
    // It would list a second copy of "good": a short name must never come in the long form.
    const std::string alias = crypto::long_name_for(good.encoded);
    const std::string sidecar = alias + ".n";
    UniqueFd fd(::openat(root.fd.get(), sidecar.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(pwrite_full(fd.get(), good.encoded.data(), good.encoded.size(), 0) ==
            static_cast<ssize_t>(good.encoded.size()));
    touch(root.fd.get(), alias);
    const Listing l = list_dir(names, root);
    REQUIRE(was_reported(l, alias));
    REQUIRE(l.names.size() == 1);
    REQUIRE(l.names.at("good") == good.backing);
  }
  SECTION("an entry moved from another directory") {
    Dir sub = make_subdir(tv.dir / "sub");
    const ResolvedName moved = create_entry(names, sub, "secret-plan");
    REQUIRE(::renameat(sub.fd.get(), moved.backing.c_str(), root.fd.get(), moved.backing.c_str()) ==
            0);
    const Listing l = list_dir(names, root);
    REQUIRE(was_reported(l, moved.backing));
    REQUIRE(l.names.count("secret-plan") == 0);
    ResolvedName r;
    REQUIRE(names.resolve(root.fd.get(), root.id, "secret-plan", r) == 0);
    REQUIRE_FALSE(r.exists);
  }
  SECTION("long names with a missing, edited or swapped sidecar") {
    const ResolvedName a = create_entry(names, root, std::string(200, 'a'));
    const ResolvedName b = create_entry(names, root, std::string(210, 'b'));
    const std::string sa = a.backing + ".n", sb = b.backing + ".n";
    SECTION("missing") { REQUIRE(::unlinkat(root.fd.get(), sa.c_str(), 0) == 0); }
    SECTION("edited") {
      std::string text = a.encoded;
      text[10] = text[10] == 'A' ? 'B' : 'A';
      REQUIRE(::unlinkat(root.fd.get(), sa.c_str(), 0) == 0);
      UniqueFd fd(::openat(root.fd.get(), sa.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
      REQUIRE(pwrite_full(fd.get(), text.data(), text.size(), 0) ==
              static_cast<ssize_t>(text.size()));
    }
    SECTION("swapped") {
      REQUIRE(::renameat(root.fd.get(), sa.c_str(), root.fd.get(), "tmp.n") == 0);
      REQUIRE(::renameat(root.fd.get(), sb.c_str(), root.fd.get(), sa.c_str()) == 0);
      REQUIRE(::renameat(root.fd.get(), "tmp.n", root.fd.get(), sb.c_str()) == 0);
      const Listing l = list_dir(names, root);
      REQUIRE(was_reported(l, b.backing));
      REQUIRE(l.names.count(std::string(210, 'b')) == 0);
    }
    const Listing l = list_dir(names, root);
    REQUIRE(was_reported(l, a.backing));
    REQUIRE(l.names.count(std::string(200, 'a')) == 0);
    REQUIRE(l.names.count("good") == 1);
  }
  REQUIRE(good.backing.size() > 0);
}

TEST_CASE("Names from an older generation are found and listed after rotation", "[names]") {
  TestVolume tv(CipherId::xchacha20poly1305, 4096);
  const auto& cfg = tv.vol->config();
  auto keys = std::make_unique<crypto::VolumeKeys>(cfg.cipher, cfg.volume_id);
  keys->add_generation(1, crypto::SecretBytes::copy_of(tv.vol->keys().generation(1)->dek.view()));
  keys->add_generation(2, crypto::SecretBytes::random(32));
  keys->set_active(2);
  volume::Volume rotated(tv.dir, cfg, std::move(keys), "test");
  NameMapper old_names(*tv.vol), new_names(rotated);
  Dir root = open_dir(tv.dir);
  const ResolvedName old_entry = create_entry(old_names, root, "old-file");

  ResolvedName r;
  REQUIRE(new_names.resolve(root.fd.get(), root.id, "old-file", r) == 0);
  REQUIRE(r.exists);
  REQUIRE(r.backing == old_entry.backing);
  REQUIRE(new_names.resolve(root.fd.get(), root.id, "new-file", r) == 0);
  REQUIRE_FALSE(r.exists);
  REQUIRE(r.backing == rotated.keys().generation(2)->names->encrypt(root.id, "new-file"));
  touch(root.fd.get(), r.backing);
  const Listing l = list_dir(new_names, root);
  REQUIRE(l.reported.empty());
  REQUIRE(l.names.size() == 2);
  // The old volume keys cannot read the new generation's name.
  const Listing old_view = list_dir(old_names, root);
  REQUIRE(old_view.names.count("old-file") == 1);
  REQUIRE(was_reported(old_view, r.backing));
}

TEST_CASE("Symlink targets round-trip and resist tampering", "[names][symlink]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  NameMapper names(*tv.vol);
  const std::string target =
      GENERATE(as<std::string>{}, "../a/b/c", "/etc/passwd", "x", std::string(3000, 't'));
  const std::string sealed = names.seal_symlink(target);
  REQUIRE(sealed.find('/') == std::string::npos);
  REQUIRE(sealed != target);
  REQUIRE(names.seal_symlink(target) != sealed);  // random nonce
  REQUIRE(names.open_symlink(sealed) == target);
  std::string bad = sealed;
  bad[bad.size() / 2] = bad[bad.size() / 2] == 'A' ? 'B' : 'A';
  REQUIRE_FALSE(names.open_symlink(bad).has_value());
  REQUIRE_FALSE(names.open_symlink(sealed.substr(0, sealed.size() - 4)).has_value());
  REQUIRE_FALSE(names.open_symlink("").has_value());
  REQUIRE_FALSE(names.open_symlink("not base64 !").has_value());
  // Another volume's keys do not open it.
  TestVolume tv2(cipher, 4096);
  REQUIRE_FALSE(NameMapper(*tv2.vol).open_symlink(sealed).has_value());
}

namespace {
bool exists_in(const Dir& d, const std::string& name) {
  struct stat st {};
  return ::fstatat(d.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void write_backing_file(const Dir& d, const std::string& name, const std::string& bytes) {
  ::unlinkat(d.fd.get(), name.c_str(), 0);
  UniqueFd fd(::openat(d.fd.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(fd);
  REQUIRE(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

std::string read_backing_file(const Dir& d, const std::string& name) {
  UniqueFd fd(::openat(d.fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  std::string out(10000, '\0');
  const ssize_t n = ::read(fd.get(), out.data(), out.size());
  REQUIRE(n > 0);
  out.resize(static_cast<std::size_t>(n));
  return out;
}
}  // namespace

TEST_CASE("Symlink targets too long for a backing symlink live in a bound sidecar",
          "[names][symlink]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  NameMapper names(*tv.vol);
  const Dir dir = open_dir(tv.dir);
  const Dir other = make_subdir(tv.dir / "other");
  // The short form keeps every target it ever held, so old volumes read unchanged.
  const std::size_t last_short = cipher == CipherId::aes256gcm ? 3039 : 3027;
  std::string backing;
  REQUIRE(names.make_symlink_target(dir.fd.get(), std::string(last_short, 's'), backing) == 0);
  REQUIRE(backing.size() <= 4095);
  REQUIRE(names.open_symlink(backing) == std::string(last_short, 's'));

  for (const std::size_t length : {last_short + 1, std::size_t{4000}, std::size_t{4095}}) {
    CAPTURE(length);
    const std::string target(length, 'L');
    REQUIRE(names.make_symlink_target(dir.fd.get(), target, backing) == 0);
    REQUIRE(crypto::is_target_sidecar_name(backing));
    REQUIRE(exists_in(dir, backing));
    REQUIRE(names.read_symlink_target(dir.fd.get(), backing) == target);
    REQUIRE_FALSE(names.open_symlink(backing).has_value());  // needs its directory
    REQUIRE_FALSE(names.read_symlink_target(other.fd.get(), backing).has_value());
    REQUIRE(names.share_target_sidecar(dir.fd.get(), other.fd.get(), backing) == 0);
    REQUIRE(names.read_symlink_target(other.fd.get(), backing) == target);
    names.drop_target_sidecar(other.fd.get(), backing);
    REQUIRE_FALSE(exists_in(other, backing));
    REQUIRE(names.read_symlink_target(dir.fd.get(), backing) == target);
  }
  std::string too_long;
  REQUIRE(names.make_symlink_target(dir.fd.get(), std::string(4096, 'x'), too_long) ==
          -ENAMETOOLONG);

  SECTION("an edited, swapped, planted or missing sidecar does not read") {
    std::string a;
    std::string b;
    REQUIRE(names.make_symlink_target(dir.fd.get(), std::string(4000, 'a'), a) == 0);
    REQUIRE(names.make_symlink_target(dir.fd.get(), std::string(4000, 'b'), b) == 0);
    const std::string blob_a = read_backing_file(dir, a);
    const std::string blob_b = read_backing_file(dir, b);
    std::string flipped = blob_a;
    flipped[flipped.size() / 2] ^= 1;
    write_backing_file(dir, a, flipped);
    REQUIRE_FALSE(names.read_symlink_target(dir.fd.get(), a).has_value());
    write_backing_file(dir, a, blob_b);  // another link's valid sidecar
    REQUIRE_FALSE(names.read_symlink_target(dir.fd.get(), a).has_value());
    // A sidecar named after its own edited contents still needs the AEAD tag.
    REQUIRE(::unlinkat(dir.fd.get(), a.c_str(), 0) == 0);
    write_backing_file(dir, crypto::target_sidecar_name(crypto::as_bytes(flipped)), flipped);
    REQUIRE_FALSE(names
                      .read_symlink_target(dir.fd.get(),
                                           crypto::target_sidecar_name(crypto::as_bytes(flipped)))
                      .has_value());
    write_backing_file(dir, "elsewhere", blob_a);
    REQUIRE(::symlinkat("elsewhere", dir.fd.get(), a.c_str()) == 0);
    REQUIRE_FALSE(names.read_symlink_target(dir.fd.get(), a).has_value());  // not followed
    REQUIRE(::unlinkat(dir.fd.get(), a.c_str(), 0) == 0);
    REQUIRE_FALSE(names.read_symlink_target(dir.fd.get(), a).has_value());
    write_backing_file(dir, a, blob_a);
    REQUIRE(names.read_symlink_target(dir.fd.get(), a) == std::string(4000, 'a'));
    REQUIRE(names.symlink_blob(dir.fd.get(), a) == crypto::Bytes(blob_a.begin(), blob_a.end()));
  }
  SECTION("sidecars are metadata: hidden from listings") {
    REQUIRE(volume::is_metadata_entry(backing));
    REQUIRE_FALSE(crypto::is_target_sidecar_name("T.short"));
    REQUIRE_FALSE(crypto::is_target_sidecar_name(std::string("T.") + std::string(43, '!')));
  }
}

TEST_CASE("xattr names and values round-trip; a value is bound to its name", "[names][xattr]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  NameMapper names(*tv.vol);
  const std::uint32_t gen = tv.vol->keys().active_generation();

  const std::string backing = names.xattr_backing_name("user.mime_type", gen);
  REQUIRE(backing.rfind("user.", 0) == 0);
  REQUIRE(backing.find("mime") == std::string::npos);
  REQUIRE(names.xattr_backing_name("user.mime_type", gen) == backing);
  REQUIRE(names.xattr_backing_name("user.other", gen) != backing);
  REQUIRE(names.xattr_plain_name(backing) == std::string("user.mime_type"));
  REQUIRE(names.xattr_backing_name("trusted.x", gen).empty());
  REQUIRE(names.xattr_backing_name("security.selinux", gen).empty());
  REQUIRE(names.xattr_backing_name("user.x", gen + 7).empty());
  std::string bad = backing;
  bad[bad.size() - 3] = bad[bad.size() - 3] == 'A' ? 'B' : 'A';
  REQUIRE_FALSE(names.xattr_plain_name(bad).has_value());
  REQUIRE_FALSE(names.xattr_plain_name("trusted." + backing.substr(5)).has_value());
  REQUIRE_FALSE(names.xattr_plain_name("user.garbage").has_value());

  const Bytes value = pattern(300, 5);
  const Bytes blob = names.seal_xattr_value("user.mime_type", value);
  REQUIRE(blob.size() > value.size());
  REQUIRE(names.open_xattr_value("user.mime_type", blob) == value);
  REQUIRE_FALSE(names.open_xattr_value("user.other", blob).has_value());
  REQUIRE_FALSE(names.open_xattr_value("user.mime_typ", blob).has_value());
  Bytes tampered = blob;
  tampered[tampered.size() / 2] ^= 0x10;
  REQUIRE_FALSE(names.open_xattr_value("user.mime_type", tampered).has_value());
  REQUIRE_FALSE(names.open_xattr_value("user.mime_type", ByteView(blob).first(3)).has_value());
  const Bytes empty = names.seal_xattr_value("user.e", {});
  const auto opened = names.open_xattr_value("user.e", empty);
  REQUIRE(opened.has_value());
  REQUIRE(opened->empty());
}
