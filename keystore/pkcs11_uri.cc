#include "keystore/pkcs11_uri.h"

#include <cstdlib>
#include <vector>

#include "base/errors.h"

namespace wardfs::keystore {

namespace {

[[noreturn]] void bad_uri(const std::string& why) {
  throw WardError(ErrorKind::usage, "bad PKCS#11 URI: " + why);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    const int hi = i + 2 < text.size() ? hex_digit(text[i + 1]) : -1;
    const int lo = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad_uri("bad percent-escape in '" + std::string(text) + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (!text.empty()) {
    const auto pos = text.find(sep);
    const auto part = text.substr(0, pos);
    if (!part.empty()) parts.push_back(part);
    if (pos == std::string_view::npos) break;
    text.remove_prefix(pos + 1);
  }
  return parts;
}

void set_path_attribute(Pkcs11Uri& uri, std::string_view name, std::string value) {
  if (name == "token") {
    uri.token = std::move(value);
  } else if (name == "object") {
    uri.object = std::move(value);
  } else if (name == "serial") {
    uri.serial = std::move(value);
  } else if (name == "pin-value") {
    bad_uri(
        "pin-value would store the PIN in wardfs.conf; use pin-source=file:PATH or "
        "WARDFS_PKCS11_PIN");
  } else if (name == "type" && value != "secret-key") {
    bad_uri("the key must be a secret-key (an AES key), not " + value);
  }
  // Other standard attributes (manufacturer, model, id, library-*) do not narrow the search.
}

void set_query_attribute(Pkcs11Uri& uri, std::string_view name, std::string value) {
  if (name == "module-path") {
    uri.module_path = std::move(value);
  } else if (name == "pin-source") {
    uri.pin_source = value.starts_with("file:") ? value.substr(5) : std::move(value);
    if (uri.pin_source.starts_with("//")) uri.pin_source.erase(0, 2);  // file:///path
  } else if (name == "pin-value") {
    bad_uri(
        "pin-value would store the PIN in wardfs.conf; use pin-source=file:PATH or "
        "WARDFS_PKCS11_PIN");
  }
}

}  // namespace

Pkcs11Uri parse_pkcs11_uri(std::string_view text) {
  if (!text.starts_with("pkcs11:")) bad_uri("it must start with 'pkcs11:'");
  text.remove_prefix(7);
  const auto qpos = text.find('?');
  const std::string_view path = text.substr(0, qpos);
  const std::string_view query = qpos == std::string_view::npos ? "" : text.substr(qpos + 1);
  Pkcs11Uri uri;
  for (const auto part : split(path, ';')) {
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) bad_uri("'" + std::string(part) + "' is not NAME=VALUE");
    set_path_attribute(uri, part.substr(0, eq), percent_decode(part.substr(eq + 1)));
  }
  for (const auto part : split(query, '&')) {
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) bad_uri("'" + std::string(part) + "' is not NAME=VALUE");
    set_query_attribute(uri, part.substr(0, eq), percent_decode(part.substr(eq + 1)));
  }
  if (uri.token.empty() && uri.serial.empty()) {
    bad_uri("name the token with token=LABEL (or serial=NUMBER)");
  }
  if (uri.object.empty()) bad_uri("name the AES key with object=LABEL");
  return uri;
}

std::string pkcs11_module_for(const Pkcs11Uri& uri) {
  if (!uri.module_path.empty()) return uri.module_path;
  const char* env = std::getenv("WARDFS_PKCS11_MODULE");
  if (env != nullptr && *env != '\0') return env;
  return std::string(kDefaultPkcs11Module);
}

}  // namespace wardfs::keystore
