// File-system calls Node.js lacks. Each returns 0 on success or an errno value (never sets or relies on
// the caller's errno), retrying on EINTR. `syscall` receives the name of the call that failed.
// On systems without a call (anything but Linux for most of them) the result is ENOSYS.
#ifndef SPILLWAY_NATIVE_FILE_CALLS_H_
#define SPILLWAY_NATIVE_FILE_CALLS_H_

#include <cstddef>
#include <cstdint>

namespace spillway {

// Allocates disk blocks for [offset, offset + length) (mode 0: the file grows if needed), so a full
// disk fails here rather than later as SIGBUS on a write through a memory map. Falls back to
// posix_fallocate when the file system does not support fallocate (EOPNOTSUPP).
int allocate_file_range(int fd, int64_t offset, int64_t length, const char** syscall);

// Deallocates [offset, offset + length) without changing the file size; the range reads as zeros.
int punch_file_hole(int fd, int64_t offset, int64_t length, const char** syscall);

enum class FileAdvice { kNormal, kSequential, kRandom, kWillNeed, kDontNeed, kNoReuse };

// posix_fadvise over [offset, offset + length); length 0 means to the end of the file.
int advise_file_range(int fd, int64_t offset, int64_t length, FileAdvice advice, const char** syscall);

// Flags of sync_file_range, with Linux's values (they are also the JS API's bitmask).
constexpr unsigned kSyncWaitBefore = 1;
constexpr unsigned kSyncWrite = 2;
constexpr unsigned kSyncWaitAfter = 4;

// sync_file_range over [offset, offset + length) (length 0: to the end of the file) with a combination
// of the kSync* flags.
int sync_file_byte_range(int fd, int64_t offset, int64_t length, unsigned flags, const char** syscall);

// madvise(MADV_POPULATE_WRITE) over the pages holding [address, address + length): prefaults them
// writable. EINVAL means the kernel (before 5.14) or the mapping does not support it.
int populate_write(void* address, size_t length, const char** syscall);

// flock(LOCK_EX | LOCK_NB): an advisory lock held until the descriptor is closed (or the process
// dies). `*acquired` is false when another open file description holds it.
int try_lock_file(int fd, bool* acquired, const char** syscall);

// The size of a memory page in bytes.
size_t page_size_bytes();

}  // namespace spillway

#endif  // SPILLWAY_NATIVE_FILE_CALLS_H_
