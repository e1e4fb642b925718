// Refusals of names that name nothing, shared by the client (for every provider) and the
// providers that check again for callers that reach them directly (docs/contract.md, C7).
#pragma once

#include <optional>
#include <qrt/error.hpp>
#include <qrt/names.hpp>
#include <string>
#include <string_view>

namespace qrt::detail {

/// A name an error refuses (a queue's, a provider's), as the error shows it: at most its first 64
/// bytes ("..." after), bytes outside printable ASCII (and '\\') as \xHH, so a name from a flag, a
/// file or the environment cannot drive the terminal that shows the error.
std::string printable_name(std::string_view text);

/// `text` as printable_name shows it, cut at `limit` bytes instead of 64: for a refused value,
/// which may be longer than a name (an endpoint URL) and comes from the same places.
std::string printable_text(std::string_view text, std::size_t limit);

/// Text a peer sent (a server's error message or code, an AMQP condition or description) as an
/// error, a log line or a terminal may show it: the first `limit` bytes, cut between characters,
/// with "... (N more bytes)" after when cut; printable ASCII and well-formed UTF-8 kept; control
/// characters (C0, DEL, C1) and every byte of malformed UTF-8 (stray, overlong, surrogate or cut
/// short) replaced by '?'. The output is always valid UTF-8 without control characters, so a
/// hostile peer can neither drive a terminal nor forge log lines, and non-English text survives.
/// Every provider passes a peer's text through this one function before it reaches an error.
std::string peer_text(std::string_view text, std::size_t limit);

/// `invalid_argument` for an empty (default-constructed) `name`; `what` says which name it is
/// ("queue name", "topic name", "session id", ...). nullopt for any other name.
template <class Name>
std::optional<error> unnamed(const Name& name, std::string_view what) {
  if (!name.str().empty()) return std::nullopt;
  return fail(errc::invalid_argument, "the " + std::string(what) +
                                          " is empty (default-constructed): give a name made "
                                          "by parse() or from()");
}

/// The refusal of delete_queue on a dead-letter queue, which goes only with its queue.
inline error dead_letter_queue_not_deletable(const queue_name& queue) {
  return fail(errc::invalid_argument,
              "cannot delete '" + queue.to_string() +
                  "' on its own: a dead-letter queue goes with its queue (delete_queue of '" +
                  queue.parent().to_string() + "' removes both)");
}

}  // namespace qrt::detail
