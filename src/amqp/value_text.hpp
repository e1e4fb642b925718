// AMQP 1.0 values as text, the way from_proton renders them through Proton (mapping.hpp), so
// the pure codec and the Proton path give a message the same fields: scalars as
// proton::to_string prints them, ids as id_to_string does, and any other value (a body that is
// not a string, symbol or binary) in Proton's notation. Internal to the codec.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "amqp/value_reader.hpp"

namespace qrt::amqp::detail::codec {

/// A scalar as from_proton renders a non-string application property (proton::to_string).
/// Strings and symbols are their text; binary its raw bytes. False for non-scalars.
bool scalar_text(const value_view& v, std::string& out);

/// An id as id_to_string renders it: text as it is, ulong in decimal, uuid canonical, binary as
/// lowercase hex; other scalars as Proton prints them. False, with the reason, for the rest.
bool id_text(const value_view& v, std::string& out, std::string_view field, std::string& problem);

/// A string or symbol field (null leaves `out` alone); false, with the reason, for the rest.
bool text_field(const value_view& v, std::string& out, std::string_view field,
                std::string& problem);

/// Renders any value `v` of `input` at the end of `out` in Proton's notation, charging what it
/// writes to `budget`; false, with the reason in `problem`, when it is malformed or over budget.
bool render_text(std::span<const std::uint8_t> input, output_budget& budget, const value_view& v,
                 std::string& out, std::string& problem);

}  // namespace qrt::amqp::detail::codec
