// The library's version, compiled in so that a program can ask the keel it
// links with, not only the headers it was built against (keel/version.h).
#include <keel/version.h>

namespace keel {

std::string_view Version() { return KEEL_VERSION_STRING; }

}  // namespace keel
