// Internal: a loaded PKCS#11 module (dlopen'd, initialised once per process and shared)
// and an RAII session on one of its tokens. Uses only the PKCS#11 header.
#pragma once

#include <p11-kit/pkcs11.h>

#include <memory>
#include <string>
#include <vector>

namespace wardfs::keystore::detail {

// Symbolic name of a PKCS#11 return value, e.g. "CKR_PIN_INCORRECT".
std::string rv_name(CK_RV rv);

class Pkcs11Module {
 public:
  // The same module path yields the same object while someone holds it, so two
  // keystores on one module (rewrap from one token key to another) share C_Initialize.
  // Throws WardError(usage) when the module cannot be loaded or initialised.
  static std::shared_ptr<Pkcs11Module> load(const std::string& path);
  ~Pkcs11Module();
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::string& path() const { return path_; }

  // Slots with a token, and the trimmed label / serial of a slot's token.
  std::vector<CK_SLOT_ID> token_slots() const;
  CK_TOKEN_INFO token_info(CK_SLOT_ID slot) const;

 private:
  Pkcs11Module(std::string path, void* handle, CK_FUNCTION_LIST* fn, bool finalize);

  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fn_;
  bool finalize_;
};

// Blank-padded fixed-size PKCS#11 text field -> std::string without the padding.
std::string padded_text(const unsigned char* field, std::size_t size);

class Pkcs11Session {
 public:
  Pkcs11Session(std::shared_ptr<Pkcs11Module> module, CK_SLOT_ID slot, bool read_write);
  ~Pkcs11Session();
  Pkcs11Session(const Pkcs11Session&) = delete;
  Pkcs11Session& operator=(const Pkcs11Session&) = delete;

  CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  CK_SESSION_HANDLE handle() const { return handle_; }

 private:
  std::shared_ptr<Pkcs11Module> module_;
  CK_SESSION_HANDLE handle_ = 0;
};

}  // namespace wardfs::keystore::detail
