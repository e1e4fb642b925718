// CRC32C (Castagnoli), the checksum that frames every persistence-log record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qrt::memory::log {

/// Continues a CRC32C over `size` bytes; start with crc = 0. crc32c("123456789") == 0xE3069283.
/// Uses the CPU's CRC32C instruction where there is one (x86-64 with SSE4.2), else
/// crc32c_portable: the same function, so a log reads the same on every machine.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

/// The table-driven software CRC32C (slice-by-8), for CPUs without the instruction, and for
/// tests that check both agree.
std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t size) noexcept;

inline std::uint32_t crc32c(std::string_view bytes) noexcept {
  return crc32c(0, bytes.data(), bytes.size());
}

}  // namespace qrt::memory::log
