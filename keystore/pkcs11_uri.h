// RFC 7512 PKCS#11 URIs, the subset a wardfs keystore needs:
//   pkcs11:token=LABEL;object=KEY-LABEL[;serial=S][?module-path=SO&pin-source=file:PATH]
#pragma once

#include <string>
#include <string_view>

namespace wardfs::keystore {

inline constexpr std::string_view kDefaultPkcs11Module = "/usr/lib/softhsm/libsofthsm2.so";

struct Pkcs11Uri {
  std::string token;        // token label (CKA token info label)
  std::string serial;       // token serial number; optional
  std::string object;       // CKA_LABEL of the AES key
  std::string module_path;  // empty: env WARDFS_PKCS11_MODULE, else kDefaultPkcs11Module
  std::string pin_source;   // a file path ("file:" prefix removed); optional
};

// Throws WardError(usage) naming what is wrong, e.g. a missing token or object, or a
// pin-value (a PIN must not end up in wardfs.conf).
Pkcs11Uri parse_pkcs11_uri(std::string_view uri);

// The module to load: the URI's module-path, else $WARDFS_PKCS11_MODULE, else the default.
std::string pkcs11_module_for(const Pkcs11Uri& uri);

}  // namespace wardfs::keystore
