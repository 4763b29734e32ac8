// SPDX-License-Identifier: Apache-2.0
// absl::Status <-> sdk::Status for plugins written with Abseil inside. The codes are the
// same google.rpc values on both sides.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "berth/plugin.hpp"

namespace berth::plugins {

inline sdk::Status ToSdk(const absl::Status& s) {
  return sdk::Status(static_cast<int32_t>(s.code()), std::string(s.message()));
}

inline absl::Status FromSdk(const sdk::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

}  // namespace berth::plugins
