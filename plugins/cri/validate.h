// SPDX-License-Identifier: Apache-2.0
// Checks of the names and maps the kubelet sends in PodSandboxConfig and ContainerConfig, and
// the label selector of the List* filters. Errors are INVALID_ARGUMENT naming the field.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace berth::cri {

// A name part of pod or container metadata: 1-253 bytes, no whitespace, control character
// or '/' (names key the records; '/' separates them there).
[[nodiscard]] absl::Status ValidateName(const std::string& value, absl::string_view field);

// A label key as Kubernetes qualifies it: [prefix/]name, the name 1-63 bytes of [A-Za-z0-9._-]
// beginning and ending alphanumeric, the prefix a DNS subdomain of at most 253 bytes.
[[nodiscard]] absl::Status ValidateLabelKey(const std::string& key, absl::string_view field);

// Every key as above; values at most 4096 bytes.
[[nodiscard]] absl::Status ValidateLabels(
    const google::protobuf::Map<std::string, std::string>& labels, absl::string_view field);

// Keys 1-317 bytes; keys and values 256 KiB in all (the Kubernetes limit).
[[nodiscard]] absl::Status ValidateAnnotations(
    const google::protobuf::Map<std::string, std::string>& annotations, absl::string_view field);

// Does every selector entry appear in `labels` with the same value? (An empty selector
// matches everything.)
[[nodiscard]] bool MatchLabels(const google::protobuf::Map<std::string, std::string>& selector,
                               const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace berth::cri
