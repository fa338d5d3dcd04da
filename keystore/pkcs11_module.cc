#include "keystore/pkcs11_module.h"

#include <dlfcn.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <utility>

#include "base/errors.h"

namespace wardfs::keystore::detail {

namespace {

struct RvName {
  CK_RV rv;
  const char* name;
};

constexpr RvName kRvNames[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
};

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

// dlclose on scope exit unless released: the module is closed on every failure path.
class DlHandle {
 public:
  explicit DlHandle(void* h) : h_(h) {}
  ~DlHandle() {
    if (h_ != nullptr) ::dlclose(h_);
  }
  DlHandle(const DlHandle&) = delete;
  DlHandle& operator=(const DlHandle&) = delete;
  void* get() const { return h_; }
  void* release() { return std::exchange(h_, nullptr); }

 private:
  void* h_;
};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, std::weak_ptr<Pkcs11Module>>& registry() {
  static std::map<std::string, std::weak_ptr<Pkcs11Module>> modules;
  return modules;
}

}  // namespace

std::string rv_name(CK_RV rv) {
  for (const auto& entry : kRvNames) {
    if (entry.rv == rv) return entry.name;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKR 0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

std::string padded_text(const unsigned char* field, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  const auto end = text.find_last_not_of(" \0", std::string::npos, 2);
  return end == std::string::npos ? std::string() : text.substr(0, end + 1);
}

std::shared_ptr<Pkcs11Module> Pkcs11Module::load(const std::string& path) {
  std::lock_guard lock(registry_mutex());
  if (auto existing = registry()[path].lock()) return existing;
  DlHandle handle(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (handle.get() == nullptr) {
    const char* why = ::dlerror();
    fail(ErrorKind::usage, "cannot load the PKCS#11 module " + path + ": " +
                               (why != nullptr ? why : "unknown error") +
                               " (set module-path in the URI or WARDFS_PKCS11_MODULE)");
  }
  auto get_list =
      reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle.get(), "C_GetFunctionList"));
  CK_FUNCTION_LIST* fn = nullptr;
  if (get_list == nullptr || get_list(&fn) != CKR_OK || fn == nullptr) {
    fail(ErrorKind::usage, path + " is not a PKCS#11 module (no usable C_GetFunctionList)");
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  const CK_RV rv = fn->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    fail(ErrorKind::usage, "the PKCS#11 module " + path + " failed to initialise: " + rv_name(rv));
  }
  std::shared_ptr<Pkcs11Module> module(new Pkcs11Module(path, handle.release(), fn, rv == CKR_OK));
  registry()[path] = module;
  return module;
}

Pkcs11Module::Pkcs11Module(std::string path, void* handle, CK_FUNCTION_LIST* fn, bool finalize)
    : path_(std::move(path)), handle_(handle), fn_(fn), finalize_(finalize) {}

Pkcs11Module::~Pkcs11Module() {
  if (finalize_) fn_->C_Finalize(nullptr);
  ::dlclose(handle_);
}

std::vector<CK_SLOT_ID> Pkcs11Module::token_slots() const {
  CK_ULONG count = 0;
  CK_RV rv = fn_->C_GetSlotList(CK_TRUE, nullptr, &count);
  std::vector<CK_SLOT_ID> slots(count);
  if (rv == CKR_OK && count > 0) rv = fn_->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) fail(ErrorKind::io, "C_GetSlotList failed: " + rv_name(rv));
  slots.resize(count);
  return slots;
}

CK_TOKEN_INFO Pkcs11Module::token_info(CK_SLOT_ID slot) const {
  CK_TOKEN_INFO info{};
  const CK_RV rv = fn_->C_GetTokenInfo(slot, &info);
  if (rv != CKR_OK) fail(ErrorKind::io, "C_GetTokenInfo failed: " + rv_name(rv));
  return info;
}

Pkcs11Session::Pkcs11Session(std::shared_ptr<Pkcs11Module> module, CK_SLOT_ID slot, bool read_write)
    : module_(std::move(module)) {
  CK_FLAGS flags = CKF_SERIAL_SESSION;
  if (read_write) flags |= CKF_RW_SESSION;
  const CK_RV rv = fn()->C_OpenSession(slot, flags, nullptr, nullptr, &handle_);
  if (rv != CKR_OK) fail(ErrorKind::io, "C_OpenSession failed: " + rv_name(rv));
}

Pkcs11Session::~Pkcs11Session() { fn()->C_CloseSession(handle_); }

}  // namespace wardfs::keystore::detail
