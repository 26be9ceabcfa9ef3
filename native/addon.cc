// The Node-API surface of spillway_native: argument validation and errors. src/native.ts is the only
// module that loads it and documents the JS API.
//
// Rules: bad arguments throw TypeError (wrong kind) or RangeError (out of range) and never reach the
// C++ code below; operating-system failures throw an Error shaped like Node's own system errors:
// message 'ENOSPC: no space left on device, fallocate', code 'ENOSPC', errno -28 (negative, as in
// Node), syscall 'fallocate'. Built with C++ exceptions disabled: every failure path throws into
// JavaScript and returns an empty value.

#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include "crc32c.h"
#include "file_calls.h"

namespace spillway {
namespace {

// 2^53 - 1: the largest integer a JS number holds exactly; file offsets and lengths stay below it.
constexpr double kMaxSafeInteger = 9007199254740991.0;

const char* errno_name(int error_number) {
  switch (error_number) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ETXTBSY: return "ETXTBSY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";  // also ENOTSUP on Linux
#if defined(EDQUOT)
    case EDQUOT: return "EDQUOT";
#endif
#if defined(EHWPOISON)
    case EHWPOISON: return "EHWPOISON";
#endif
    default: break;
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(error_number);
  if (name != nullptr) return name;
#endif
  return "UNKNOWN";
}

// An Error like Node's own system errors: code ('ENOSPC'...), errno (negative), syscall.
Napi::Value system_error_value(Napi::Env env, int error_number, const char* syscall) {
  const char* code = errno_name(error_number);
  const std::string message = std::string(code) + ": " + std::strerror(error_number) + ", " + syscall;
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object object = error.Value();
  object.Set("code", Napi::String::New(env, code));
  object.Set("errno", Napi::Number::New(env, -error_number));
  object.Set("syscall", Napi::String::New(env, syscall));
  return object;
}

void throw_system_error(Napi::Env env, int error_number, const char* syscall) {
  Napi::Error(env, system_error_value(env, error_number, syscall)).ThrowAsJavaScriptException();
}

void throw_type_error(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

void throw_range_error(Napi::Env env, const std::string& message) {
  Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
}

bool is_integer(double value) { return std::isfinite(value) && std::trunc(value) == value; }

// A required integer argument in [minimum, maximum]. False after throwing a TypeError (missing or not
// a number) or a RangeError.
bool read_integer(const Napi::CallbackInfo& info, size_t index, const char* name, double minimum,
                  double maximum, double* result) {
  Napi::Env env = info.Env();
  if (index >= info.Length() || !info[index].IsNumber()) {
    throw_type_error(env, std::string("The \"") + name + "\" argument must be a number");
    return false;
  }
  *result = info[index].As<Napi::Number>().DoubleValue();
  if (!is_integer(*result) || *result < minimum || *result > maximum) {
    throw_range_error(env, std::string("The \"") + name + "\" argument must be an integer in [" +
                               std::to_string(static_cast<int64_t>(minimum)) + ", " +
                               std::to_string(static_cast<int64_t>(maximum)) + "], got " +
                               std::to_string(*result));
    return false;
  }
  return true;
}

bool read_fd(const Napi::CallbackInfo& info, size_t index, int* fd) {
  double value;
  if (!read_integer(info, index, "fd", 0, 2147483647.0, &value)) return false;
  *fd = static_cast<int>(value);
  return true;
}

// fd, offset, length: the first three arguments of every file call.
bool read_file_range(const Napi::CallbackInfo& info, int* fd, int64_t* offset, int64_t* length) {
  double offset_value;
  double length_value;
  if (!read_fd(info, 0, fd)) return false;
  if (!read_integer(info, 1, "offset", 0, kMaxSafeInteger, &offset_value)) return false;
  if (!read_integer(info, 2, "length", 0, kMaxSafeInteger, &length_value)) return false;
  if (offset_value + length_value > kMaxSafeInteger) {
    throw_range_error(info.Env(), "offset + length exceeds Number.MAX_SAFE_INTEGER");
    return false;
  }
  *offset = static_cast<int64_t>(offset_value);
  *length = static_cast<int64_t>(length_value);
  return true;
}

// A Uint8Array (or Buffer) argument. False after throwing a TypeError.
bool read_bytes(const Napi::CallbackInfo& info, size_t index, const char* name, uint8_t** data,
                size_t* length) {
  Napi::Env env = info.Env();
  napi_typedarray_type type;
  void* pointer = nullptr;
  bool is_typed_array = false;
  if (index < info.Length()) napi_is_typedarray(env, info[index], &is_typed_array);
  if (is_typed_array) {
    napi_get_typedarray_info(env, info[index], &type, length, &pointer, nullptr, nullptr);
  }
  if (!is_typed_array || type != napi_uint8_array) {
    throw_type_error(env, std::string("The \"") + name + "\" argument must be a Uint8Array or Buffer");
    return false;
  }
  *data = static_cast<uint8_t*>(pointer);
  return true;
}

// Optional number argument `index` of crc32c: `fallback` when missing or undefined. False after
// throwing a TypeError. This path runs once per checksum, so it makes as few Node-API calls as it can
// (a failed napi_get_value_double plus napi_typeof cost as much as checksumming 1 KiB).
bool read_optional_number(napi_env env, const napi_value* arguments, size_t argument_count, size_t index,
                          const char* name, double fallback, double* result) {
  if (index >= argument_count) {
    *result = fallback;
    return true;
  }
  if (napi_get_value_double(env, arguments[index], result) == napi_ok) return true;
  napi_valuetype type;
  if (napi_typeof(env, arguments[index], &type) == napi_ok && type == napi_undefined) {
    *result = fallback;
    return true;
  }
  const std::string message = std::string("The \"") + name + "\" argument must be a number";
  napi_throw_type_error(env, nullptr, message.c_str());
  return false;
}

// crc32c(bytes, previous = 0, start = 0, end = bytes.length) with the given implementation. Written
// against the Node-API C interface with the fewest calls, since small inputs are common: a call costs
// ~50 ns with one argument, ~70 ns with four (the node-addon-api version took ~95-130 ns).
template <uint32_t (*Implementation)(uint32_t, const uint8_t*, size_t)>
napi_value crc32c_binding(napi_env env, napi_callback_info info) {
  size_t argument_count = 4;
  napi_value arguments[4];
  if (napi_get_cb_info(env, info, &argument_count, arguments, nullptr, nullptr) != napi_ok) return nullptr;
  if (argument_count > 4) argument_count = 4;  // napi_get_cb_info reports the actual count
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* pointer = nullptr;
  if (napi_get_typedarray_info(env, arguments[0], &type, &length, &pointer, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, nullptr, "The \"bytes\" argument must be a Uint8Array or Buffer");
    return nullptr;
  }
  double previous;
  double start;
  double end;
  if (!read_optional_number(env, arguments, argument_count, 1, "previous", 0, &previous)) return nullptr;
  if (!read_optional_number(env, arguments, argument_count, 2, "start", 0, &start)) return nullptr;
  if (!read_optional_number(env, arguments, argument_count, 3, "end", static_cast<double>(length), &end)) {
    return nullptr;
  }
  // A running checksum is an unsigned 32-bit value; a signed one (from `| 0`) is accepted too.
  if (!is_integer(previous) || previous < -2147483648.0 || previous > 4294967295.0) {
    const std::string message =
        "The \"previous\" argument must be a 32-bit integer, got " + std::to_string(previous);
    napi_throw_range_error(env, nullptr, message.c_str());
    return nullptr;
  }
  if (!is_integer(start) || !is_integer(end) || start < 0 || start > end ||
      end > static_cast<double>(length)) {
    const std::string message =
        "The \"start\" and \"end\" arguments must be integers with 0 <= start <= end <= " +
        std::to_string(length) + ", got start " + std::to_string(start) + ", end " + std::to_string(end);
    napi_throw_range_error(env, nullptr, message.c_str());
    return nullptr;
  }
  const uint32_t previous_bits = static_cast<uint32_t>(static_cast<int64_t>(previous));
  const size_t first = static_cast<size_t>(start);
  const uint8_t* data = static_cast<const uint8_t*>(pointer);
  const uint32_t checksum = Implementation(previous_bits, data + first, static_cast<size_t>(end) - first);
  napi_value result = nullptr;
  napi_create_uint32(env, checksum, &result);
  return result;
}

// Adds a function written against the Node-API C interface to `exports`.
void export_c_function(Napi::Env env, Napi::Object exports, const char* name, napi_callback callback) {
  napi_value function = nullptr;
  NAPI_THROW_IF_FAILED_VOID(env,
                            napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, nullptr, &function));
  exports.Set(name, Napi::Value(env, function));
}

Napi::Value crc32c_implementation_binding(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), crc32c_implementation());
}

// fallocate(fd, offset, length) preallocates; punchHole(fd, offset, length) deallocates, the range
// reading as zeros. For both, length 0 does nothing (the kernel would say EINVAL).
template <int (*call)(int, int64_t, int64_t, const char**)>
Napi::Value file_range_binding(const Napi::CallbackInfo& info) {
  int fd;
  int64_t offset;
  int64_t length;
  if (!read_file_range(info, &fd, &offset, &length)) return Napi::Value();
  if (length == 0) return info.Env().Undefined();
  const char* syscall = "";
  const int error = call(fd, offset, length, &syscall);
  if (error != 0) {
    throw_system_error(info.Env(), error, syscall);
    return Napi::Value();
  }
  return info.Env().Undefined();
}

bool parse_advice(const std::string& name, FileAdvice* advice) {
  if (name == "normal") *advice = FileAdvice::kNormal;
  else if (name == "sequential") *advice = FileAdvice::kSequential;
  else if (name == "random") *advice = FileAdvice::kRandom;
  else if (name == "willneed") *advice = FileAdvice::kWillNeed;
  else if (name == "dontneed") *advice = FileAdvice::kDontNeed;
  else if (name == "noreuse") *advice = FileAdvice::kNoReuse;
  else return false;
  return true;
}

// fadvise(fd, offset, length, advice): length 0 means to the end of the file.
Napi::Value fadvise_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset;
  int64_t length;
  if (!read_file_range(info, &fd, &offset, &length)) return Napi::Value();
  if (info.Length() < 4 || !info[3].IsString()) {
    throw_type_error(env, "The \"advice\" argument must be a string");
    return Napi::Value();
  }
  const std::string name = info[3].As<Napi::String>().Utf8Value();
  FileAdvice advice;
  if (!parse_advice(name, &advice)) {
    throw_range_error(env, "The \"advice\" argument must be one of 'normal', 'sequential', 'random', "
                           "'willneed', 'dontneed', 'noreuse', got '" + name + "'");
    return Napi::Value();
  }
  const char* syscall = "";
  const int error = advise_file_range(fd, offset, length, advice, &syscall);
  if (error != 0) {
    throw_system_error(env, error, syscall);
    return Napi::Value();
  }
  return env.Undefined();
}

bool parse_sync_flag(const std::string& name, unsigned* flag) {
  if (name == "wait_before") *flag = kSyncWaitBefore;
  else if (name == "write") *flag = kSyncWrite;
  else if (name == "wait_after") *flag = kSyncWaitAfter;
  else return false;
  return true;
}

// Flags as a bitmask of the exported constants or an array of names. False after throwing.
bool read_sync_flags(const Napi::CallbackInfo& info, size_t index, unsigned* flags) {
  Napi::Env env = info.Env();
  const unsigned all = kSyncWaitBefore | kSyncWrite | kSyncWaitAfter;
  if (index < info.Length() && info[index].IsArray()) {
    Napi::Array names = info[index].As<Napi::Array>();
    *flags = 0;
    for (uint32_t i = 0; i < names.Length(); i++) {
      Napi::Value element = names.Get(i);
      if (env.IsExceptionPending()) return false;  // a throwing getter
      unsigned flag = 0;
      if (!element.IsString() || !parse_sync_flag(element.As<Napi::String>().Utf8Value(), &flag)) {
        throw_range_error(env, "The \"flags\" array may hold only 'wait_before', 'write' and 'wait_after'");
        return false;
      }
      *flags |= flag;
    }
    return true;
  }
  if (index < info.Length() && info[index].IsNumber()) {
    const double value = info[index].As<Napi::Number>().DoubleValue();
    if (!is_integer(value) || value < 0 || value > all) {
      throw_range_error(env, "The \"flags\" bitmask may combine only SYNC_FILE_RANGE_WAIT_BEFORE (1), "
                             "SYNC_FILE_RANGE_WRITE (2) and SYNC_FILE_RANGE_WAIT_AFTER (4)");
      return false;
    }
    *flags = static_cast<unsigned>(value);
    return true;
  }
  throw_type_error(env, "The \"flags\" argument must be an array of flag names or a bitmask");
  return false;
}

// syncFileRange(fd, offset, length, flags): length 0 means to the end of the file.
Napi::Value sync_file_range_binding(const Napi::CallbackInfo& info) {
  int fd;
  int64_t offset;
  int64_t length;
  unsigned flags;
  if (!read_file_range(info, &fd, &offset, &length)) return Napi::Value();
  if (!read_sync_flags(info, 3, &flags)) return Napi::Value();
  const char* syscall = "";
  const int error = sync_file_byte_range(fd, offset, length, flags, &syscall);
  if (error != 0) {
    throw_system_error(info.Env(), error, syscall);
    return Napi::Value();
  }
  return info.Env().Undefined();
}

// populateWrite(buffer, offset, length): true when the pages are prefaulted, false when the kernel or
// the mapping does not support MADV_POPULATE_WRITE (EINVAL). Other failures throw (EFAULT: a page
// lies beyond the end of the mapped file; ENOMEM).
Napi::Value populate_write_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t byte_length;
  if (!read_bytes(info, 0, "buffer", &data, &byte_length)) return Napi::Value();
  double offset;
  double length;
  if (!read_integer(info, 1, "offset", 0, kMaxSafeInteger, &offset)) return Napi::Value();
  if (!read_integer(info, 2, "length", 0, kMaxSafeInteger, &length)) return Napi::Value();
  if (offset + length > static_cast<double>(byte_length)) {
    throw_range_error(env, "offset + length (" + std::to_string(static_cast<int64_t>(offset + length)) +
                               ") exceeds the buffer's length (" + std::to_string(byte_length) + ")");
    return Napi::Value();
  }
  if (length == 0) return Napi::Boolean::New(env, true);
  const char* syscall = "";
  const int error = populate_write(data + static_cast<size_t>(offset), static_cast<size_t>(length), &syscall);
  if (error == EINVAL) return Napi::Boolean::New(env, false);
  if (error != 0) {
    throw_system_error(env, error, syscall);
    return Napi::Value();
  }
  return Napi::Boolean::New(env, true);
}

// populateWriteAsync(buffer, offset, length, callback): the same as populateWrite, in libuv's thread
// pool, so the event loop never waits for the kernel to allocate and zero page-cache pages. The
// callback gets (error | null, supported: boolean). The buffer is referenced until the callback, so
// the mapping cannot be released while the kernel works on it.
class PopulateWriteWorker : public Napi::AsyncWorker {
 public:
  PopulateWriteWorker(Napi::Function& callback, Napi::Object buffer, uint8_t* address, size_t length)
      : Napi::AsyncWorker(callback, "spillway.populateWrite"), address_(address), length_(length) {
    buffer_ = Napi::Persistent(buffer);
  }

  void Execute() override { error_ = populate_write(address_, length_, &syscall_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    buffer_.Reset();
    if (error_ == 0 || error_ == EINVAL) {
      Callback().Call({env.Null(), Napi::Boolean::New(env, error_ == 0)});
      return;
    }
    Callback().Call({system_error_value(env, error_, syscall_), Napi::Boolean::New(env, false)});
  }

 private:
  Napi::ObjectReference buffer_;
  uint8_t* address_;
  size_t length_;
  int error_ = 0;
  const char* syscall_ = "";
};

Napi::Value populate_write_async_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t byte_length;
  if (!read_bytes(info, 0, "buffer", &data, &byte_length)) return Napi::Value();
  double offset;
  double length;
  if (!read_integer(info, 1, "offset", 0, kMaxSafeInteger, &offset)) return Napi::Value();
  if (!read_integer(info, 2, "length", 0, kMaxSafeInteger, &length)) return Napi::Value();
  if (offset + length > static_cast<double>(byte_length)) {
    throw_range_error(env, "offset + length exceeds the buffer's length");
    return Napi::Value();
  }
  if (info.Length() < 4 || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  Napi::Function callback = info[3].As<Napi::Function>();
  auto* worker = new PopulateWriteWorker(callback, info[0].As<Napi::Object>(),
                                         data + static_cast<size_t>(offset), static_cast<size_t>(length));
  worker->Queue();
  return env.Undefined();
}

// tryLockFile(fd): true when this process now holds the exclusive advisory lock (flock) of the file,
// false when another process (or another open of the file) holds it. Released when fd is closed.
Napi::Value try_lock_file_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw_type_error(env, "fd must be a number");
    return Napi::Value();
  }
  const double fd = info[0].As<Napi::Number>().DoubleValue();
  if (fd < 0 || fd > 2147483647 || fd != static_cast<double>(static_cast<int>(fd))) {
    throw_range_error(env, "fd must be a non-negative integer");
    return Napi::Value();
  }
  bool acquired = false;
  const char* syscall = "";
  const int error = try_lock_file(static_cast<int>(fd), &acquired, &syscall);
  if (error != 0) {
    throw_system_error(env, error, syscall);
    return Napi::Value();
  }
  return Napi::Boolean::New(env, acquired);
}

Napi::Value page_size_binding(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(page_size_bytes()));
}

Napi::Object initialize(Napi::Env env, Napi::Object exports) {
  crc32c_initialize();
  export_c_function(env, exports, "crc32c", crc32c_binding<crc32c>);
  export_c_function(env, exports, "crc32cSoftware", crc32c_binding<crc32c_software>);
  exports.Set("crc32cImplementation",
              Napi::Function::New<crc32c_implementation_binding>(env, "crc32cImplementation"));
  exports.Set("fallocate", Napi::Function::New<file_range_binding<allocate_file_range>>(env, "fallocate"));
  exports.Set("punchHole", Napi::Function::New<file_range_binding<punch_file_hole>>(env, "punchHole"));
  exports.Set("fadvise", Napi::Function::New<fadvise_binding>(env, "fadvise"));
  exports.Set("syncFileRange", Napi::Function::New<sync_file_range_binding>(env, "syncFileRange"));
  exports.Set("populateWrite", Napi::Function::New<populate_write_binding>(env, "populateWrite"));
  exports.Set("populateWriteAsync", Napi::Function::New<populate_write_async_binding>(env, "populateWriteAsync"));
  exports.Set("tryLockFile", Napi::Function::New<try_lock_file_binding>(env, "tryLockFile"));
  exports.Set("pageSize", Napi::Function::New<page_size_binding>(env, "pageSize"));
  exports.Set("SYNC_FILE_RANGE_WAIT_BEFORE", Napi::Number::New(env, kSyncWaitBefore));
  exports.Set("SYNC_FILE_RANGE_WRITE", Napi::Number::New(env, kSyncWrite));
  exports.Set("SYNC_FILE_RANGE_WAIT_AFTER", Napi::Number::New(env, kSyncWaitAfter));
  return exports;
}

}  // namespace
}  // namespace spillway

// NODE_API_MODULE pastes the name into an identifier, so it must be unqualified.
static Napi::Object InitializeSpillwayNative(Napi::Env env, Napi::Object exports) {
  return spillway::initialize(env, exports);
}

NODE_API_MODULE(spillway_native, InitializeSpillwayNative)
