// Random identifiers qrt makes up itself: message ids a caller left empty, SQS deduplication and
// receive-attempt ids, Service Bus tracking ids, per-provider id prefixes. One generator per
// thread, seeded with 256 bits from std::random_device, so ids made by different processes (or
// threads) do not collide in practice. Not for secrets: nothing here is a key or a token.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace qrt::detail {

/// 64 random bits.
std::uint64_t random_u64();
/// Fills `out` with random bytes.
void random_bytes(std::span<std::uint8_t> out);
/// 32 lower-case hex digits (128 random bits).
std::string random_hex_id();
/// The 16 bytes of a random version-4 UUID.
std::array<std::uint8_t, 16> random_uuid_bytes();
/// A random version-4 UUID as text: "xxxxxxxx-xxxx-4xxx-Yxxx-xxxxxxxxxxxx", lower case.
std::string random_uuid();

}  // namespace qrt::detail
