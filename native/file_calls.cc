// See file_calls.h.

#include "file_calls.h"

#include <cerrno>
#include <cstdint>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/falloc.h>
#endif

#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older C library headers may not name it
#endif

namespace spillway {

int try_lock_file(int fd, bool* acquired, const char** syscall) {
  *syscall = "flock";
  int result;
  do {
    result = flock(fd, LOCK_EX | LOCK_NB);
  } while (result != 0 && errno == EINTR);
  if (result == 0) {
    *acquired = true;
    return 0;
  }
  const int error = errno;
  *acquired = false;
  return error == EWOULDBLOCK ? 0 : error;
}

#if defined(__linux__)

int allocate_file_range(int fd, int64_t offset, int64_t length, const char** syscall) {
  *syscall = "fallocate";
  int result;
  do {
    result = fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (result != 0 && errno == EINTR);
  if (result == 0) return 0;
  if (errno != EOPNOTSUPP) return errno;
  // The file system cannot preallocate natively; posix_fallocate writes to every block instead.
  *syscall = "posix_fallocate";
  int error;
  do {
    error = posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (error == EINTR);
  return error;
}

int punch_file_hole(int fd, int64_t offset, int64_t length, const char** syscall) {
  *syscall = "fallocate";
  int result;
  do {
    result = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                       static_cast<off_t>(length));
  } while (result != 0 && errno == EINTR);
  return result == 0 ? 0 : errno;
}

int sync_file_byte_range(int fd, int64_t offset, int64_t length, unsigned flags, const char** syscall) {
  *syscall = "sync_file_range";
  int result;
  do {
    result = sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(length), flags);
  } while (result != 0 && errno == EINTR);
  return result == 0 ? 0 : errno;
}

int populate_write(void* address, size_t length, const char** syscall) {
  *syscall = "madvise";
  const uintptr_t page = static_cast<uintptr_t>(page_size_bytes());
  // The first and last pages hold bytes of the range, so they are mapped: widening is safe.
  const uintptr_t first = reinterpret_cast<uintptr_t>(address) & ~(page - 1);
  const uintptr_t last = (reinterpret_cast<uintptr_t>(address) + length + page - 1) & ~(page - 1);
  int result;
  do {
    result = madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
  } while (result != 0 && errno == EINTR);
  return result == 0 ? 0 : errno;
}

int advise_file_range(int fd, int64_t offset, int64_t length, FileAdvice advice, const char** syscall) {
  *syscall = "posix_fadvise";
  int native_advice = POSIX_FADV_NORMAL;
  switch (advice) {
    case FileAdvice::kNormal: native_advice = POSIX_FADV_NORMAL; break;
    case FileAdvice::kSequential: native_advice = POSIX_FADV_SEQUENTIAL; break;
    case FileAdvice::kRandom: native_advice = POSIX_FADV_RANDOM; break;
    case FileAdvice::kWillNeed: native_advice = POSIX_FADV_WILLNEED; break;
    case FileAdvice::kDontNeed: native_advice = POSIX_FADV_DONTNEED; break;
    case FileAdvice::kNoReuse: native_advice = POSIX_FADV_NOREUSE; break;
  }
  int error;
  do {
    error = posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), native_advice);
  } while (error == EINTR);
  return error;
}

static_assert(kSyncWaitBefore == SYNC_FILE_RANGE_WAIT_BEFORE && kSyncWrite == SYNC_FILE_RANGE_WRITE &&
                  kSyncWaitAfter == SYNC_FILE_RANGE_WAIT_AFTER,
              "sync_file_range flags differ from Linux's");

#else  // not Linux: none of these calls exist (the addon is built and tested on Linux)

int allocate_file_range(int, int64_t, int64_t, const char** syscall) {
  *syscall = "fallocate";
  return ENOSYS;
}

int punch_file_hole(int, int64_t, int64_t, const char** syscall) {
  *syscall = "fallocate";
  return ENOSYS;
}

int sync_file_byte_range(int, int64_t, int64_t, unsigned, const char** syscall) {
  *syscall = "sync_file_range";
  return ENOSYS;
}

int advise_file_range(int, int64_t, int64_t, FileAdvice, const char** syscall) {
  *syscall = "posix_fadvise";
  return ENOSYS;
}

int populate_write(void*, size_t, const char** syscall) {
  *syscall = "madvise";
  return EINVAL;
}

#endif

size_t page_size_bytes() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace spillway
