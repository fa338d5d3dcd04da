#include "service/rewrap.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "audit/append.h"
#include "base/errors.h"
#include "crypto/kdf.h"
#include "keystore/known_volumes.h"
#include "volume/config_file.h"
#include "volume/volume.h"

namespace wardfs::service {

namespace {

// Generation 0 stands for the audit key: it moves to the new keystore with the DEKs.
using Dek = std::pair<std::uint32_t, crypto::SecretBytes>;
constexpr std::uint32_t kAuditSlot = 0;

std::vector<Dek> unwrap_all(const crypto::VolumeConfig& cfg, keystore::Keystore& ks,
                            const std::string& cipher_dir) {
  std::vector<Dek> deks;
  for (const auto& k : cfg.keys) {
    auto dek = ks.unwrap(k.wrapped, cfg.wrap_ad(k.generation));
    if (!dek) {
      throw WardError(ErrorKind::wrong_key, "wrong passphrase or key for " + cipher_dir +
                                                ": cannot unwrap the key of generation " +
                                                std::to_string(k.generation));
    }
    deks.emplace_back(k.generation, std::move(*dek));
  }
  if (cfg.audit_key) {
    auto root = volume::open_audit_root(cfg, ks);
    if (!root) {
      throw WardError(ErrorKind::corrupt_volume,
                      "the audit key of " + cipher_dir +
                          " does not unwrap although the data keys do: its "
                          "audit_key field was edited");
    }
    deks.emplace_back(kAuditSlot, std::move(*root));
  }
  return deks;
}

// Throws unless the new keystore gave back `key`: a keystore that cannot open what it
// wrapped must not win.
void check_round_trip(const crypto::SecretBytes& key,
                      const std::optional<crypto::SecretBytes>& back) {
  if (!back || back->size() != key.size() ||
      !std::equal(key.view().begin(), key.view().end(), back->view().begin())) {
    throw WardError(ErrorKind::io,
                    "the new keystore did not give back the key it wrapped; "
                    "the volume was left unchanged");
  }
}

// Wraps every DEK and the audit root under the new keystore into `cfg`, which nothing
// has saved yet, checking that each unwraps again before anything is written.
void wrap_all(crypto::VolumeConfig& cfg, keystore::Keystore& ks, const std::vector<Dek>& deks) {
  for (const auto& [generation, key] : deks) {
    if (generation == kAuditSlot) {
      cfg.audit_key->wrapped = volume::wrap_audit_root(cfg, ks, key.view());
      check_round_trip(key, volume::open_audit_root(cfg, ks));
      continue;
    }
    for (auto& k : cfg.keys) {
      if (k.generation != generation) continue;
      k.wrapped = ks.wrap(key.view(), cfg.wrap_ad(generation));
      check_round_trip(key, ks.unwrap(k.wrapped, cfg.wrap_ad(generation)));
    }
  }
}

void record_rewrap(const crypto::VolumeConfig& cfg, const std::vector<Dek>& deks,
                   const std::string& from, const std::string& to) {
  const auto root =
      std::find_if(deks.begin(), deks.end(), [](const Dek& d) { return d.first == kAuditSlot; });
  if (root == deks.end())
    return;  // a volume from before the audit log; its first mount adds the key
  const nlohmann::json detail = {
      {"from_keystore", from}, {"to_keystore", to}, {"reason", "rewrap"}};
  std::vector<audit::Event> events;
  for (const std::string event : {"rewrap", "config_change"})
    events.push_back(audit::volume_event(event, to, std::nullopt, "ok", detail));
  audit::append_now(cfg.volume_id, crypto::derive_audit_mac_key(root->second.view(), cfg.volume_id),
                    std::move(events));
}

}  // namespace

RewrapDone rewrap_volume(const std::filesystem::path& cipher_dir,
                         const keystore::Credentials& current, crypto::KeystoreSpec to,
                         const keystore::Credentials& to_credentials,
                         const keystore::NewKeystoreOptions& options) {
  const volume::ConfigLock lock(cipher_dir);
  crypto::VolumeConfig cfg = volume::load_config(cipher_dir);
  keystore::require_known_volume(cipher_dir, cfg.volume_id);
  RewrapDone done;
  std::vector<Dek> deks;
  {
    const auto old_ks = keystore::open_keystore(cfg.keystore, current);
    done.from = old_ks->identity();
    deks = unwrap_all(cfg, *old_ks, cipher_dir.string());
  }
  const auto new_ks = keystore::create_keystore(to, to_credentials, options);
  cfg.keystore = to;
  wrap_all(cfg, *new_ks, deks);
  volume::save_config_atomic(cipher_dir, cfg);
  keystore::remember_volume(cipher_dir, cfg.volume_id);
  done.to = new_ks->identity();
  record_rewrap(cfg, deks, done.from, done.to);
  done.data_keys = cfg.keys.size();
  done.audit_key = cfg.audit_key.has_value();
  return done;
}

}  // namespace wardfs::service
