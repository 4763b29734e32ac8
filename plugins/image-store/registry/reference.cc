// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/reference.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"

namespace berth::image {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool HasUpper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

absl::Status Invalid(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", std::string(text), "\": ", std::string(why)));
}

// One path component: [a-z0-9]+ ((. | _ | __ | -+) [a-z0-9]+)*
bool ValidPathComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    // A separator run, followed by an alphanumeric (the last char is alphanumeric).
    size_t j = i;
    while (j < c.size() && !IsLowerAlnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" ||
              std::all_of(sep.begin(), sep.end(), [](char ch) { return ch == '-'; });
    if (!ok) return false;
    i = j;
  }
  return true;
}

// host[:port] where host is DNS-ish labels or a bracketed IPv6 address.
bool ValidDomain(std::string_view d) {
  std::string_view host = d;
  std::string_view port;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    std::string_view addr = d.substr(1, close - 1);
    for (char c : addr) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':') return false;
    }
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    port = rest.substr(1);
    return !port.empty() && std::all_of(port.begin(), port.end(), ::isdigit);
  }
  size_t colon = d.find(':');
  if (colon != std::string_view::npos) {
    host = d.substr(0, colon);
    port = d.substr(colon + 1);
    if (port.empty() || !std::all_of(port.begin(), port.end(), ::isdigit)) return false;
  }
  if (host.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || !IsAlnum(label.front()) || !IsAlnum(label.back())) return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// [\w][\w.-]{0,127}
bool ValidTag(std::string_view t) {
  auto word = [](char c) { return IsAlnum(c) || c == '_'; };
  if (t.empty() || t.size() > kMaxTagLength || !word(t.front())) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

}  // namespace

absl::Status ValidateDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", std::string(digest),
                     "\": want <algorithm>:<hex>, e.g. sha256:<64 hex>"));
  }
  std::string_view algo = digest.substr(0, colon);
  std::string_view hex = digest.substr(colon + 1);
  size_t want;
  if (algo == "sha256") {
    want = 64;
  } else if (algo == "sha512") {
    want = 128;
  } else {
    bool well_formed =
        std::all_of(algo.begin(), algo.end(),
                    [](char c) {
                      return IsLowerAlnum(c) || c == '+' || c == '.' || c == '_' || c == '-';
                    }) &&
        !hex.empty() && std::all_of(hex.begin(), hex.end(), [](char c) { return IsAlnum(c); });
    std::string msg = absl::StrCat("digest \"", std::string(digest), "\": algorithm \"",
                                   std::string(algo), "\" is not supported (sha256, sha512 are)");
    return well_formed ? absl::UnimplementedError(msg) : absl::InvalidArgumentError(msg);
  }
  if (hex.size() != want || !std::all_of(hex.begin(), hex.end(), IsLowerHex)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", std::string(digest), "\": ", std::string(algo), " wants ",
                     want, " lowercase hex digits, got \"", std::string(hex), "\""));
  }
  return absl::OkStatus();
}

std::string Reference::Name() const { return absl::StrCat(domain, "/", repository); }

std::string Reference::String() const {
  std::string s = Name();
  if (!tag.empty()) absl::StrAppend(&s, ":", tag);
  if (!digest.empty()) absl::StrAppend(&s, "@", digest);
  return s;
}

absl::StatusOr<Reference> ParseReference(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("invalid image reference: it is empty");
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return Invalid(text, "it contains whitespace or control characters");
    }
  }
  Reference ref;
  std::string_view name = text;
  if (size_t at = text.find('@'); at != std::string_view::npos) {
    name = text.substr(0, at);
    std::string_view digest = text.substr(at + 1);
    if (digest.find('@') != std::string_view::npos) return Invalid(text, "more than one '@'");
    if (absl::Status s = ValidateDigest(digest); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("invalid image reference \"", std::string(text),
                                                 "\": ", std::string(s.message())));
    }
    ref.digest = std::string(digest);
  }
  size_t last_slash = name.rfind('/');
  size_t last_colon = name.rfind(':');
  if (last_colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || last_colon > last_slash)) {
    std::string_view tag = name.substr(last_colon + 1);
    if (!ValidTag(tag)) {
      return Invalid(text, absl::StrCat("tag \"", std::string(tag),
                                        "\" is invalid (want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"));
    }
    ref.tag = std::string(tag);
    name = name.substr(0, last_colon);
  }
  if (name.empty()) return Invalid(text, "the repository name is empty");

  std::string_view path = name;
  size_t slash = name.find('/');
  std::string_view first = name.substr(0, slash);
  bool has_domain = slash != std::string_view::npos &&
                    (first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
                     HasUpper(first) || first.front() == '[');
  if (has_domain) {
    if (!ValidDomain(first)) {
      return Invalid(text, absl::StrCat("registry host \"", std::string(first), "\" is invalid"));
    }
    ref.domain = std::string(first);
    path = name.substr(slash + 1);
  } else {
    ref.domain = kDockerHubDomain;
  }
  if (ref.domain == "index.docker.io") ref.domain = kDockerHubDomain;
  if (path.empty()) return Invalid(text, "the repository name is empty");
  if (!has_domain && path.size() == 64 && std::all_of(path.begin(), path.end(), IsLowerHex)) {
    return Invalid(text,
                   "a repository name cannot be a 64-character hexadecimal string "
                   "(did you mean an image ID?)");
  }
  if (HasUpper(path)) return Invalid(text, "the repository name must be lowercase");
  size_t start = 0;
  while (true) {
    size_t next = path.find('/', start);
    std::string_view comp =
        path.substr(start, next == std::string_view::npos ? std::string_view::npos : next - start);
    if (!ValidPathComponent(comp)) {
      return Invalid(text, comp.empty()
                               ? std::string("the repository name has an empty path component")
                               : absl::StrCat("path component \"", std::string(comp),
                                              "\" is invalid (want lowercase letters and digits "
                                              "separated by '.', '_', '__' or '-')"));
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  ref.repository = std::string(path);
  if (ref.domain == kDockerHubDomain && ref.repository.find('/') == std::string::npos) {
    ref.repository = absl::StrCat("library/", ref.repository);
  }
  if (ref.Name().size() > kMaxNameLength) {
    return Invalid(text, absl::StrCat("the name is longer than ", kMaxNameLength, " characters"));
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = kDefaultTag;
  return ref;
}

}  // namespace berth::image
