// CRC32C (Castagnoli): reflected polynomial 0x82F63B78, register pre- and post-inverted, so
// crc32c("123456789") == 0xE3069283. `previous` continues a running checksum:
// crc32c(a ++ b, 0) == crc32c(b, crc32c(a, 0)).
//
// Three implementations, one chosen once at load time (crc32c_initialize):
//   'sse4.2-3way'  x86-64 with SSE4.2: three interleaved crc32q lanes, combined with zeros operators.
//   'armv8'        aarch64 Linux with the CRC32 extension: one lane of crc32cx.
//   'software'     slicing-by-8 tables; always available and callable directly for tests.
#ifndef SPILLWAY_NATIVE_CRC32C_H_
#define SPILLWAY_NATIVE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace spillway {

// Builds the tables and picks the implementation. Idempotent and thread-safe; call before the others.
void crc32c_initialize();

// The implementation crc32c() uses: "sse4.2-3way", "armv8" or "software".
const char* crc32c_implementation();

// CRC32C of data[0, length), continuing from the finished checksum `previous` (0 to start).
uint32_t crc32c(uint32_t previous, const uint8_t* data, size_t length);

// The same with the portable slicing-by-8 code, whatever the CPU offers.
uint32_t crc32c_software(uint32_t previous, const uint8_t* data, size_t length);

}  // namespace spillway

#endif  // SPILLWAY_NATIVE_CRC32C_H_
