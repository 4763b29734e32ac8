// SPDX-License-Identifier: Apache-2.0
// Small CRI requests and an image config for the spec-builder tests.
#pragma once

#include "cri/v1/api.pb.h"
#include "nlohmann/json.hpp"

namespace berth::cri::testing {

inline runtime::v1::PodSandboxConfig MinimalPod() {
  runtime::v1::PodSandboxConfig s;
  s.mutable_metadata()->set_name("p");
  s.mutable_metadata()->set_uid("u");
  s.mutable_metadata()->set_namespace_("n");
  s.set_hostname("p");
  return s;
}

inline runtime::v1::ContainerConfig MinimalContainer() {
  runtime::v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_image()->set_image("sha256:abc");
  return c;
}

// An image config whose Cmd is `sh`.
inline const nlohmann::json& ShImage() {
  static const nlohmann::json image = {{"config", {{"Cmd", {"sh"}}}}};
  return image;
}

}  // namespace berth::cri::testing
