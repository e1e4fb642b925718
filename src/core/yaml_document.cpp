#include "yaml_document.hpp"

#include <yaml-cpp/eventhandler.h>

#include <sstream>
#include <string>

namespace qrt::detail {
namespace {

// Walks through a document's events, keeping only where it starts.
class document_start final : public YAML::EventHandler {
 public:
  YAML::Mark mark;

  void OnDocumentStart(const YAML::Mark& at) override { mark = at; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

result<YAML::Node> load_single_document(std::string_view text, std::string_view what) {
  const std::string copy(text);
  std::istringstream in(copy);
  YAML::Parser parser(in);
  document_start first, second;
  if (parser.HandleNextDocument(first) && parser.HandleNextDocument(second)) {
    // A token no rule of the parser takes (a ',' outside brackets) reads as an empty document
    // that consumes nothing, again and again: the first "document" was none.
    if (second.mark.pos == first.mark.pos) {
      throw YAML::ParserException(first.mark, "no YAML value starts here");
    }
    // (Spelled out: a YAML::Node converts from anything, an error included.)
    return result<YAML::Node>(
        boost::system::in_place_error, errc::configuration_error,
        std::string(what) +
            " holds more than one YAML document (separated by --- or ...): put "
            "everything in one");
  }
  return YAML::Load(copy);
}

}  // namespace qrt::detail
