#include "crypto/config.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"
#include "crypto/file_format.h"

namespace wardfs::crypto {

using nlohmann::json;

namespace {

[[noreturn]] void bad_field(const std::string& field, const std::string& why) {
  throw WardError(ErrorKind::corrupt_volume, "config field '" + field + "': " + why);
}

const json& require(const json& obj, const std::string& field, json::value_t type,
                    const std::string& path) {
  const std::string full = path.empty() ? field : path + "." + field;
  const auto it = obj.find(field);
  if (it == obj.end()) bad_field(full, "missing");
  const bool number_ok = type == json::value_t::number_unsigned && it->is_number_unsigned();
  if (!number_ok && it->type() != type)
    bad_field(full, std::string("must be a ") + json(type).type_name());
  return *it;
}

std::uint64_t require_uint(const json& obj, const std::string& field, const std::string& path,
                           std::uint64_t min, std::uint64_t max) {
  const json& v = require(obj, field, json::value_t::number_unsigned, path);
  const auto n = v.get<std::uint64_t>();
  if (n < min || n > max) {
    bad_field(path.empty() ? field : path + "." + field,
              "out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  return n;
}

Bytes require_b64(const json& obj, const std::string& field, const std::string& path,
                  std::size_t min_len, std::size_t max_len) {
  const std::string full = path.empty() ? field : path + "." + field;
  const auto& text = require(obj, field, json::value_t::string, path).get_ref<const std::string&>();
  auto bytes = base64url_decode(text);
  if (!bytes) bad_field(full, "not base64url");
  if (bytes->size() < min_len || bytes->size() > max_len) bad_field(full, "wrong length");
  return *bytes;
}

KeystoreSpec parse_keystore(const json& obj) {
  KeystoreSpec spec;
  spec.type = require(obj, "type", json::value_t::string, "keystore").get<std::string>();
  if (spec.type != "passphrase" && spec.type != "keyfile" && spec.type != "command" &&
      spec.type != "pkcs11") {
    bad_field("keystore.type", "unknown keystore '" + spec.type + "'");
  }
  if (const auto it = obj.find("location"); it != obj.end()) {
    if (!it->is_string()) bad_field("keystore.location", "must be a string");
    spec.location = it->get<std::string>();
  }
  if (spec.type == "passphrase") {
    const json& kdf = require(obj, "kdf", json::value_t::object, "keystore");
    const auto alg = require(kdf, "algorithm", json::value_t::string, "keystore.kdf");
    if (alg != "argon2id13") bad_field("keystore.kdf.algorithm", "must be argon2id13");
    KdfParams p;
    p.opslimit = require_uint(kdf, "opslimit", "keystore.kdf", 1, 1U << 20);
    p.memlimit = require_uint(kdf, "memlimit", "keystore.kdf", 8192, 1ULL << 40);
    p.salt = require_b64(kdf, "salt", "keystore.kdf", 16, 16);
    spec.kdf = std::move(p);
  }
  return spec;
}

}  // namespace

bool valid_chunk_size(std::uint64_t size) {
  return size >= kMinChunkSize && size <= kMaxChunkSize && (size & (size - 1)) == 0;
}

Bytes VolumeConfig::wrap_ad(std::uint32_t generation) const {
  static constexpr std::string_view kLabel = "wardfs v1 dek wrap";
  Bytes ad(kLabel.begin(), kLabel.end());
  ad.push_back(0);
  ad.insert(ad.end(), volume_id.begin(), volume_id.end());
  // The active generation is bound too: otherwise an attacker who edits the config
  // could point new writes back at an old, perhaps leaked, generation.
  std::uint8_t fields[4 + 2 + 1 + 4 + 1 + 4];
  put_le32(fields, generation);
  put_le16(fields + 4, static_cast<std::uint16_t>(version));
  fields[6] = static_cast<std::uint8_t>(cipher);
  put_le32(fields + 7, chunk_size);
  fields[11] = holes == HolesPolicy::never ? 1 : 0;
  put_le32(fields + 12, active_generation);
  ad.insert(ad.end(), std::begin(fields), std::end(fields));
  return ad;
}

Bytes VolumeConfig::audit_wrap_ad() const {
  static constexpr std::string_view kLabel = "wardfs v1 audit key wrap";
  Bytes ad(kLabel.begin(), kLabel.end());
  ad.push_back(0);
  ad.insert(ad.end(), volume_id.begin(), volume_id.end());
  return ad;
}

const WrappedKey* VolumeConfig::key_for(std::uint32_t generation) const {
  for (const auto& k : keys) {
    if (k.generation == generation) return &k;
  }
  return nullptr;
}

VolumeConfig parse_config(std::string_view json_text) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {
    throw WardError(ErrorKind::corrupt_volume,
                    std::string("config is not valid JSON (") + e.what() + ")");
  }
  if (!doc.is_object()) bad_field("(top level)", "must be a JSON object");
  VolumeConfig cfg;
  if (require(doc, "format", json::value_t::string, "") != "wardfs") {
    bad_field("format", "must be \"wardfs\"");
  }
  cfg.version = static_cast<int>(require_uint(doc, "version", "", 0, 1U << 16));
  if (cfg.version != kFormatVersion) {
    bad_field("version", "unsupported format version " + std::to_string(cfg.version) +
                             " (this wardfs reads version " + std::to_string(kFormatVersion) + ")");
  }
  cfg.volume_id = require_b64(doc, "volume_id", "", kVolumeIdSize, kVolumeIdSize);
  const auto cipher =
      cipher_from_name(require(doc, "cipher", json::value_t::string, "").get<std::string>());
  if (!cipher) bad_field("cipher", "must be aes-256-gcm or xchacha20-poly1305");
  cfg.cipher = *cipher;
  const auto chunk = require_uint(doc, "chunk_size", "", 0, UINT32_MAX);
  if (!valid_chunk_size(chunk))
    bad_field("chunk_size", "must be a power of two from 4096 to 1048576");
  cfg.chunk_size = static_cast<std::uint32_t>(chunk);
  const auto holes = require(doc, "holes", json::value_t::string, "").get<std::string>();
  if (holes != "allow" && holes != "never") bad_field("holes", "must be allow or never");
  cfg.holes = holes == "never" ? HolesPolicy::never : HolesPolicy::allow;
  cfg.keystore = parse_keystore(require(doc, "keystore", json::value_t::object, ""));
  cfg.active_generation =
      static_cast<std::uint32_t>(require_uint(doc, "active_generation", "", 1, UINT32_MAX));
  const json& keys = require(doc, "keys", json::value_t::array, "");
  if (keys.empty()) bad_field("keys", "must hold at least one wrapped key");
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string path = "keys[" + std::to_string(i) + "]";
    if (!keys[i].is_object()) bad_field(path, "must be an object");
    WrappedKey k;
    k.generation =
        static_cast<std::uint32_t>(require_uint(keys[i], "generation", path, 1, UINT32_MAX));
    k.wrapped = require_b64(keys[i], "wrapped", path, kDekSize, 4096);
    if (const auto it = keys[i].find("created"); it != keys[i].end() && it->is_string()) {
      k.created = it->get<std::string>();
    }
    if (cfg.key_for(k.generation) != nullptr)
      bad_field(path + ".generation", "duplicate generation");
    cfg.keys.push_back(std::move(k));
  }
  if (const auto it = doc.find("audit_key"); it != doc.end()) {
    if (!it->is_object()) bad_field("audit_key", "must be an object");
    WrappedKey k;
    k.wrapped = require_b64(*it, "wrapped", "audit_key", kDekSize, 4096);
    if (const auto c = it->find("created"); c != it->end() && c->is_string())
      k.created = c->get<std::string>();
    cfg.audit_key = std::move(k);
  }
  if (cfg.key_for(cfg.active_generation) == nullptr) {
    bad_field("active_generation",
              "no wrapped key for generation " + std::to_string(cfg.active_generation));
  }
  return cfg;
}

std::string serialize_config(const VolumeConfig& cfg) {
  json keystore = {{"type", cfg.keystore.type}};
  if (!cfg.keystore.location.empty()) keystore["location"] = cfg.keystore.location;
  if (cfg.keystore.kdf) {
    keystore["kdf"] = {{"algorithm", "argon2id13"},
                       {"opslimit", cfg.keystore.kdf->opslimit},
                       {"memlimit", cfg.keystore.kdf->memlimit},
                       {"salt", base64url_encode(cfg.keystore.kdf->salt)}};
  }
  json keys = json::array();
  for (const auto& k : cfg.keys) {
    keys.push_back({{"generation", k.generation},
                    {"wrapped", base64url_encode(k.wrapped)},
                    {"created", k.created}});
  }
  json doc = {{"format", "wardfs"},
              {"version", cfg.version},
              {"volume_id", base64url_encode(cfg.volume_id)},
              {"cipher", std::string(cipher_name(cfg.cipher))},
              {"chunk_size", cfg.chunk_size},
              {"holes", cfg.holes == HolesPolicy::never ? "never" : "allow"},
              {"keystore", keystore},
              {"active_generation", cfg.active_generation},
              {"keys", keys}};
  if (cfg.audit_key) {
    doc["audit_key"] = {{"wrapped", base64url_encode(cfg.audit_key->wrapped)},
                        {"created", cfg.audit_key->created}};
  }
  return doc.dump(2) + "\n";
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace wardfs::crypto
