// Internal: the constructors of the keystore backends that open_keystore and
// create_keystore pick from.
#pragma once

#include <memory>
#include <string>

#include "keystore/keystore.h"

namespace wardfs::keystore::detail {

// `location` is "PROG ARGS..." or "sh:SHELL-LINE"; the program prints the KEK.
std::unique_ptr<Keystore> open_command_keystore(const std::string& location,
                                                const Credentials& creds);

// `uri` is an RFC 7512 PKCS#11 URI naming the token and the AES key (object).
std::unique_ptr<Keystore> open_pkcs11_keystore(const std::string& uri, const Credentials& creds,
                                               bool create_key);

}  // namespace wardfs::keystore::detail
