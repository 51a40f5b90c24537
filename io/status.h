// Status: errors are values in keel, never exceptions across the API.
//
// A Status is OK or carries a code and a one-line message that names what
// failed and where (file, offset, LSN, option). Callers test ok() or the
// specific predicate; tools map codes to exit codes (corruption -> 1, the
// rest -> 2).
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace keel {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // a bad option, flag or call; nothing was changed
    kNotFound,         // a file or directory that should exist does not
    kCorruption,       // bytes on disk (or the wire) fail validation
    kIoError,          // the operating system refused or failed an operation
    kFailed,           // the log is in the failed state (P5); reopen to recover
    kNotSupported,     // the requested backend or feature is unavailable here
    kRefused,          // the application's state machine refused the command; nothing was logged
    kNotPrimary,       // a write sent to a node that does not lead; the message names the primary
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) { return Status(Code::kInvalidArgument, std::move(message)); }
  static Status NotFound(std::string message) { return Status(Code::kNotFound, std::move(message)); }
  static Status Corruption(std::string message) { return Status(Code::kCorruption, std::move(message)); }
  static Status IoError(std::string message) { return Status(Code::kIoError, std::move(message)); }
  static Status Failed(std::string message) { return Status(Code::kFailed, std::move(message)); }
  static Status NotSupported(std::string message) { return Status(Code::kNotSupported, std::move(message)); }
  static Status Refused(std::string message) { return Status(Code::kRefused, std::move(message)); }
  static Status NotPrimary(std::string message) { return Status(Code::kNotPrimary, std::move(message)); }
  // An I/O error from errno, worded "<what>: <strerror>".
  static Status FromErrno(std::string_view what, int error_number);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsIoError() const { return code_ == Code::kIoError; }
  bool IsFailed() const { return code_ == Code::kFailed; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }
  bool IsRefused() const { return code_ == Code::kRefused; }
  bool IsNotPrimary() const { return code_ == Code::kNotPrimary; }
  const std::string& message() const { return message_; }
  // "corruption: <message>", or "ok".
  std::string ToString() const;
  // The same error, same code, with "<context>: " in front of its message; OK stays OK.
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return Status(code_, std::string(context) + ": " + message_);
  }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace keel

// Returns the status from the enclosing function when it is not OK.
#define KEEL_RETURN_IF_ERROR(expr)           \
  do {                                       \
    ::keel::Status keel_status_ = (expr);    \
    if (!keel_status_.ok()) return keel_status_; \
  } while (0)
