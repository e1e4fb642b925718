// The one YAML document of a file a user wrote (a configuration, benchmark targets).
#pragma once

#include <yaml-cpp/yaml.h>

#include <qrt/error.hpp>
#include <string_view>

namespace qrt::detail {

/// The document `text` holds, as YAML::Load reads it (a null node when it holds none).
/// YAML::Load reads the first document and stops: whatever follows a "---" or a "..." would be
/// dropped without a word, so a text of more than one document is refused with a
/// configuration_error that says so, `what` ("the configuration") naming the text. The second
/// document is found from the parser's events, at most two documents' worth, without building
/// either (yaml-cpp's LoadAll builds every document and, on some malformed input, an endless
/// run of empty ones). Malformed YAML throws YAML::Exception, as YAML::Load does.
result<YAML::Node> load_single_document(std::string_view text, std::string_view what);

}  // namespace qrt::detail
