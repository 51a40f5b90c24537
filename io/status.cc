// Status: the wording of errors. Messages are one line and name what failed
// and where; the code name in front lets a reader tell a bad option from a
// bad disk without parsing the rest.
#include <keel/io/status.h>

#include <cerrno>
#include <cstring>

namespace keel {

namespace {

std::string_view CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "ok";
    case Status::Code::kInvalidArgument: return "invalid argument";
    case Status::Code::kNotFound: return "not found";
    case Status::Code::kCorruption: return "corruption";
    case Status::Code::kIoError: return "I/O error";
    case Status::Code::kFailed: return "failed";
    case Status::Code::kNotSupported: return "not supported";
    case Status::Code::kRefused: return "refused";
    case Status::Code::kNotPrimary: return "not primary";
  }
  return "unknown";
}

}  // namespace

Status Status::FromErrno(std::string_view what, int error_number) {
  std::string message(what);
  message += ": ";
  // strerror is not required to be thread-safe; strerror_r (GNU flavour,
  // which _GNU_SOURCE gives us under g++) writes into our buffer or returns
  // a static string, either of which is safe to copy.
  char buffer[128];
  message += strerror_r(error_number, buffer, sizeof(buffer));
  if (error_number == ENOENT) return NotFound(std::move(message));
  return IoError(std::move(message));
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string text(CodeName(code_));
  text += ": ";
  text += message_;
  return text;
}

}  // namespace keel
