// error.h: the one error type hyoracle throws for bad input.
//
// Every message is one line that names the file and the tensor or field and says what was
// expected. The command line catches it, prints "hyoracle: error: <message>" and exits 2.
#pragma once
#include <stdexcept>
#include <string>

namespace hyoracle {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws Error(message). A function, not a macro, so call sites stay plain C++.
[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace hyoracle
