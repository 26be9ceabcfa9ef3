// CRC32C implementations and their selection at load time. See crc32c.h for the contract.
//
// Terms: the "register" is the CRC state while bytes are being fed in (inverted at both ends to give
// the finished checksum). Feeding bytes into the register is linear over GF(2) once the inversions are
// taken off, so the register after A ++ B equals shift(register after A, |B|) XOR (register of B fed
// from 0), where shift(r, n) feeds n zero bytes into r. shift(., n) is a 32x32 bit matrix (the "zeros
// operator" for n bytes); it is applied with four 256-entry tables, one per byte of the register.
//
// The 3-lane x86-64 path uses this: a block of 3 * L bytes is split into three runs of L bytes, each
// fed into its own register by crc32q in the same loop (the instruction has a latency of 3 cycles but
// a throughput of 1 per cycle, so one dependent chain uses a third of the unit), then the three
// registers are combined with the zeros operator for L bytes.

#include "crc32c.h"

#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define SPILLWAY_CRC32C_X86_64 1
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define SPILLWAY_CRC32C_AARCH64 1
#endif

namespace spillway {
namespace {

constexpr uint32_t kPolynomialReflected = 0x82F63B78u;

// Block lengths of the 3-lane path: long blocks for the bulk, short blocks for what is left, so that
// at most 3 * kShortBlockBytes - 1 bytes go through a single lane.
constexpr size_t kLongBlockBytes = 8192;
constexpr size_t kShortBlockBytes = 256;

// slicing[k][n]: register after feeding byte n then k zero bytes into a zero register (k = 0..7).
uint32_t slicing[8][256];

// Zeros operator for a fixed number of bytes: shift(r) = t[0][r & 0xff] ^ t[1][(r >> 8) & 0xff] ^
// t[2][(r >> 16) & 0xff] ^ t[3][r >> 24].
struct ZerosOperator {
  uint32_t table[4][256];
};

ZerosOperator long_block_zeros;
ZerosOperator short_block_zeros;

using Crc32cFunction = uint32_t (*)(uint32_t, const uint8_t*, size_t);
Crc32cFunction selected_function = nullptr;
const char* selected_name = "uninitialized";
std::once_flag initialize_once;

inline uint64_t load_64(const uint8_t* bytes) {
  uint64_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

// Little-endian 32-bit word from bytes, whatever the host byte order (compiles to a plain load on
// little-endian hosts).
inline uint32_t load_32_little_endian(const uint8_t* bytes) {
  return static_cast<uint32_t>(bytes[0]) | (static_cast<uint32_t>(bytes[1]) << 8) |
         (static_cast<uint32_t>(bytes[2]) << 16) | (static_cast<uint32_t>(bytes[3]) << 24);
}

inline uint32_t apply_zeros(const ZerosOperator& zeros, uint32_t crc_register) {
  return zeros.table[0][crc_register & 0xff] ^ zeros.table[1][(crc_register >> 8) & 0xff] ^
         zeros.table[2][(crc_register >> 16) & 0xff] ^ zeros.table[3][crc_register >> 24];
}

// ---- GF(2) matrices: matrix[i] is the image of register bit i (a column). ----

struct BitMatrix {
  uint32_t column[32];
};

uint32_t matrix_times_vector(const BitMatrix& matrix, uint32_t vector) {
  uint32_t result = 0;
  for (int bit = 0; vector != 0; bit++, vector >>= 1) {
    if (vector & 1) result ^= matrix.column[bit];
  }
  return result;
}

BitMatrix matrix_times_matrix(const BitMatrix& left, const BitMatrix& right) {
  BitMatrix result;
  for (int bit = 0; bit < 32; bit++) result.column[bit] = matrix_times_vector(left, right.column[bit]);
  return result;
}

// The operator that feeds `byte_count` zero bytes into a register, by square-and-multiply on the
// operator for one zero bit.
BitMatrix zeros_matrix(size_t byte_count) {
  BitMatrix one_bit;
  one_bit.column[0] = kPolynomialReflected;
  for (int bit = 1; bit < 32; bit++) one_bit.column[bit] = 1u << (bit - 1);
  BitMatrix power = matrix_times_matrix(one_bit, one_bit);  // 2 bits
  power = matrix_times_matrix(power, power);                 // 4 bits
  power = matrix_times_matrix(power, power);                 // 8 bits = one byte
  BitMatrix result;
  for (int bit = 0; bit < 32; bit++) result.column[bit] = 1u << bit;  // identity
  for (size_t remaining = byte_count; remaining != 0; remaining >>= 1) {
    if (remaining & 1) result = matrix_times_matrix(power, result);
    power = matrix_times_matrix(power, power);
  }
  return result;
}

void build_zeros_operator(ZerosOperator& zeros, size_t byte_count) {
  const BitMatrix matrix = zeros_matrix(byte_count);
  for (int slice = 0; slice < 4; slice++) {
    for (uint32_t byte = 0; byte < 256; byte++) {
      zeros.table[slice][byte] = matrix_times_vector(matrix, byte << (8 * slice));
    }
  }
}

void build_slicing_tables() {
  for (uint32_t byte = 0; byte < 256; byte++) {
    uint32_t crc_register = byte;
    for (int bit = 0; bit < 8; bit++) {
      crc_register = (crc_register & 1) ? (crc_register >> 1) ^ kPolynomialReflected : crc_register >> 1;
    }
    slicing[0][byte] = crc_register;
  }
  for (int slice = 1; slice < 8; slice++) {
    for (uint32_t byte = 0; byte < 256; byte++) {
      const uint32_t previous = slicing[slice - 1][byte];
      slicing[slice][byte] = (previous >> 8) ^ slicing[0][previous & 0xff];
    }
  }
}

// ---- Software: slicing-by-8. ----

uint32_t software_update(uint32_t previous, const uint8_t* data, size_t length) {
  uint32_t crc_register = ~previous;
  while (length >= 8) {
    const uint32_t low = crc_register ^ load_32_little_endian(data);
    crc_register = slicing[7][low & 0xff] ^ slicing[6][(low >> 8) & 0xff] ^ slicing[5][(low >> 16) & 0xff] ^
                   slicing[4][low >> 24] ^ slicing[3][data[4]] ^ slicing[2][data[5]] ^ slicing[1][data[6]] ^
                   slicing[0][data[7]];
    data += 8;
    length -= 8;
  }
  while (length != 0) {
    crc_register = slicing[0][(crc_register ^ *data) & 0xff] ^ (crc_register >> 8);
    data++;
    length--;
  }
  return ~crc_register;
}

// ---- x86-64 SSE4.2: three interleaved lanes. ----

#if defined(SPILLWAY_CRC32C_X86_64)

// Feeds three consecutive runs of `block_bytes` each into three registers at once and combines them.
// Returns the register after all 3 * block_bytes bytes.
__attribute__((target("sse4.2"))) inline uint32_t sse42_three_lanes(uint32_t crc_register,
                                                                      const uint8_t* data,
                                                                      size_t block_bytes,
                                                                      const ZerosOperator& zeros) {
  uint64_t lane0 = crc_register;
  uint64_t lane1 = 0;
  uint64_t lane2 = 0;
  const uint8_t* const end = data + block_bytes;
  do {
    lane0 = _mm_crc32_u64(lane0, load_64(data));
    lane1 = _mm_crc32_u64(lane1, load_64(data + block_bytes));
    lane2 = _mm_crc32_u64(lane2, load_64(data + 2 * block_bytes));
    data += 8;
  } while (data != end);
  const uint32_t first_two = apply_zeros(zeros, static_cast<uint32_t>(lane0)) ^ static_cast<uint32_t>(lane1);
  return apply_zeros(zeros, first_two) ^ static_cast<uint32_t>(lane2);
}

__attribute__((target("sse4.2"))) uint32_t sse42_update(uint32_t previous, const uint8_t* data,
                                                        size_t length) {
  uint32_t crc_register = ~previous;
  // Align the lanes' loads to 8 bytes (unaligned loads work but can split cache lines).
  while (length != 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    crc_register = _mm_crc32_u8(crc_register, *data);
    data++;
    length--;
  }
  while (length >= 3 * kLongBlockBytes) {
    crc_register = sse42_three_lanes(crc_register, data, kLongBlockBytes, long_block_zeros);
    data += 3 * kLongBlockBytes;
    length -= 3 * kLongBlockBytes;
  }
  while (length >= 3 * kShortBlockBytes) {
    crc_register = sse42_three_lanes(crc_register, data, kShortBlockBytes, short_block_zeros);
    data += 3 * kShortBlockBytes;
    length -= 3 * kShortBlockBytes;
  }
  uint64_t wide_register = crc_register;
  while (length >= 8) {
    wide_register = _mm_crc32_u64(wide_register, load_64(data));
    data += 8;
    length -= 8;
  }
  crc_register = static_cast<uint32_t>(wide_register);
  while (length != 0) {
    crc_register = _mm_crc32_u8(crc_register, *data);
    data++;
    length--;
  }
  return ~crc_register;
}

#endif  // SPILLWAY_CRC32C_X86_64

// ---- aarch64 with the CRC32 extension: one lane (not tested on the development machine). ----

#if defined(SPILLWAY_CRC32C_AARCH64)

#if defined(__clang__)
#define SPILLWAY_TARGET_CRC __attribute__((target("crc")))
#else
#define SPILLWAY_TARGET_CRC __attribute__((target("+crc")))
#endif

SPILLWAY_TARGET_CRC uint32_t armv8_update(uint32_t previous, const uint8_t* data, size_t length) {
  uint32_t crc_register = ~previous;
  while (length >= 8) {
    crc_register = __crc32cd(crc_register, load_64(data));
    data += 8;
    length -= 8;
  }
  while (length != 0) {
    crc_register = __crc32cb(crc_register, *data);
    data++;
    length--;
  }
  return ~crc_register;
}

#endif  // SPILLWAY_CRC32C_AARCH64

void initialize_once_body() {
  build_slicing_tables();
  build_zeros_operator(long_block_zeros, kLongBlockBytes);
  build_zeros_operator(short_block_zeros, kShortBlockBytes);
  selected_function = software_update;
  selected_name = "software";
#if defined(SPILLWAY_CRC32C_X86_64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    selected_function = sse42_update;
    selected_name = "sse4.2-3way";
  }
#elif defined(SPILLWAY_CRC32C_AARCH64)
  if ((getauxval(AT_HWCAP) & HWCAP_CRC32) != 0) {
    selected_function = armv8_update;
    selected_name = "armv8";
  }
#endif
}

}  // namespace

void crc32c_initialize() { std::call_once(initialize_once, initialize_once_body); }

const char* crc32c_implementation() { return selected_name; }

uint32_t crc32c(uint32_t previous, const uint8_t* data, size_t length) {
  return selected_function(previous, data, length);
}

uint32_t crc32c_software(uint32_t previous, const uint8_t* data, size_t length) {
  return software_update(previous, data, length);
}

}  // namespace spillway
