// SPDX-License-Identifier: Apache-2.0
// Debian's Abseil is built with its own absl::string_view, which does not convert from
// std::string_view; the plugin boundary uses std::string_view.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace berth::cgroupfs {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace berth::cgroupfs
