// SPDX-License-Identifier: Apache-2.0
#include "core/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace berth::core {
namespace {

using nlohmann::json;

constexpr std::string_view kTopKeys[] = {"version", "root",      "state",
                                         "socket",  "log_level", "plugin_dirs",
                                         "plugins", "runtimes",  "default_runtime"};
constexpr std::string_view kRuntimeKeys[] = {"plugin", "snapshotter", "cni_conf_dir", "options"};
constexpr std::string_view kLogLevelNames[] = {"trace", "debug", "info", "warn", "error"};

// Limits on what a configuration may expand to (aliases can multiply a small file).
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxValues = 100000;
constexpr std::size_t kMaxFileSize = 16 << 20;

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

// ---- Small helpers ------------------------------------------------------------------------

// Debian's Abseil is built with its own absl::string_view (not std::string_view).
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

template <typename Range>
std::string JoinViews(const Range& items, std::string_view sep) {
  std::string out;
  bool first = true;
  for (std::string_view item : items) {
    if (!first) out += sep;
    out += item;
    first = false;
  }
  return out;
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// A value for a message: quoted, escaped (keeping valid UTF-8 readable), shortened.
std::string Quote(std::string_view s) {
  constexpr std::size_t kMax = 80;
  const bool shortened = s.size() > kMax;
  if (shortened) {
    s = s.substr(0, kMax);
    // Do not cut a UTF-8 sequence in two.
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) {
      s.remove_suffix(1);
    }
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.remove_suffix(1);
  }
  const std::string escaped = IsValidUtf8(s) ? absl::Utf8SafeCEscape(AV(s)) : absl::CEscape(AV(s));
  return absl::StrCat("\"", escaped, shortened ? "...\"" : "\"");
}

int LineOf(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : 0;
}

// What a node is, for "expected X, got Y".
std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") {
        return absl::StrCat("the string ", Quote(n.Scalar()));
      }
      return Quote(n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "an undefined value";
  }
}

std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

template <std::size_t N>
std::string UnknownKeyMessage(std::string_view key, const std::string_view (&known)[N]) {
  std::string_view best;
  std::size_t best_distance = 3;
  const std::string lower = absl::AsciiStrToLower(AV(key));
  for (std::string_view k : known) {
    const std::size_t d = EditDistance(lower, k);
    if (d < best_distance && d < k.size()) {
      best = k;
      best_distance = d;
    }
  }
  std::string msg;
  if (!best.empty()) msg = absl::StrCat(", did you mean \"", AV(best), "\"?");
  absl::StrAppend(&msg, " (known keys: ", JoinViews(known, ", "), ")");
  return msg;
}

// ---- YAML 1.2 core schema scalars ---------------------------------------------------------

enum class ScalarKind { kNull, kBool, kInt, kFloat, kString };

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}

bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }
bool IsHexDigit(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

bool IsCoreFloat(std::string_view s) {
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return true;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s == ".inf" || s == ".Inf" || s == ".INF") return true;
  // ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  std::size_t i = 0;
  auto digits = [&] {
    const std::size_t start = i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    return i - start;
  };
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

ScalarKind ClassifyPlain(std::string_view s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return ScalarKind::kNull;
  }
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return ScalarKind::kBool;
  }
  std::string_view unsigned_part = s;
  if (s[0] == '-' || s[0] == '+') unsigned_part.remove_prefix(1);
  if (AllOf(unsigned_part, IsDigit)) return ScalarKind::kInt;
  if (s.size() > 2 && s.substr(0, 2) == "0o" && AllOf(s.substr(2), IsOctalDigit)) {
    return ScalarKind::kInt;
  }
  if (s.size() > 2 && s.substr(0, 2) == "0x" && AllOf(s.substr(2), IsHexDigit)) {
    return ScalarKind::kInt;
  }
  if (IsCoreFloat(s)) return ScalarKind::kFloat;
  return ScalarKind::kString;
}

// The JSON value of a plain (untagged, unquoted) scalar. Errors carry only the "what".
absl::StatusOr<json> PlainScalarToJson(std::string_view s) {
  switch (ClassifyPlain(s)) {
    case ScalarKind::kNull:
      return json(nullptr);
    case ScalarKind::kBool:
      return json(s[0] == 't' || s[0] == 'T');
    case ScalarKind::kInt: {
      int base = 10;
      bool negative = false;
      std::string_view digits = s;
      if (s.size() > 2 && (s.substr(0, 2) == "0o" || s.substr(0, 2) == "0x")) {
        base = s[1] == 'o' ? 8 : 16;
        digits.remove_prefix(2);
      } else if (s[0] == '-' || s[0] == '+') {
        negative = s[0] == '-';
        digits.remove_prefix(1);
      }
      std::uint64_t magnitude = 0;
      const auto [ptr, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
      constexpr std::uint64_t kMinMagnitude =
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1;
      if (ec != std::errc() || ptr != digits.data() + digits.size() ||
          (negative && magnitude > kMinMagnitude)) {
        return absl::InvalidArgumentError(
            absl::StrCat("integer ", Quote(s), " is out of the 64-bit range"));
      }
      if (!negative) return json(magnitude);
      if (magnitude == kMinMagnitude) return json(std::numeric_limits<std::int64_t>::min());
      return json(-static_cast<std::int64_t>(magnitude));
    }
    case ScalarKind::kFloat: {
      std::string_view num = s;
      if (num[0] == '+') num.remove_prefix(1);
      if (num.find_first_of("iInN") != std::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(Quote(s),
                         " (infinity / not-a-number) cannot be represented in JSON; quote it "
                         "if it is meant as a string"));
      }
      double d = 0;
      const auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), d);
      if (ec != std::errc() || ptr != num.data() + num.size() || !std::isfinite(d)) {
        return absl::InvalidArgumentError(
            absl::StrCat("number ", Quote(s), " is out of the range of a double"));
      }
      return json(d);
    }
    case ScalarKind::kString:
      break;
  }
  return json(std::string(s));
}

// The JSON value of a scalar node, honouring quotes and the core schema's tags.
absl::StatusOr<json> ScalarToJson(const YAML::Node& n) {
  const std::string& tag = n.Tag();
  const std::string& s = n.Scalar();
  if (!IsValidUtf8(s)) return absl::InvalidArgumentError("value is not valid UTF-8");
  if (tag == "!" || tag == absl::StrCat(AV(kTagPrefix), "str")) return json(s);
  if (tag == "?" || tag.empty()) return PlainScalarToJson(s);
  if (tag.size() > kTagPrefix.size() && tag.substr(0, kTagPrefix.size()) == kTagPrefix) {
    const std::string_view type = std::string_view(tag).substr(kTagPrefix.size());
    const ScalarKind kind = ClassifyPlain(s);
    const bool fits = (type == "null" && kind == ScalarKind::kNull) ||
                      (type == "bool" && kind == ScalarKind::kBool) ||
                      (type == "int" && kind == ScalarKind::kInt) ||
                      (type == "float" && (kind == ScalarKind::kFloat || kind == ScalarKind::kInt));
    if (fits) {
      ASSIGN_OR_RETURN(json v, PlainScalarToJson(s));
      if (type == "float" && !v.is_number_float()) v = v.get<double>();
      return v;
    }
    if (type == "null" || type == "bool" || type == "int" || type == "float") {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(s), " is not a valid !!", AV(type), " value"));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported tag ", Quote(tag), " (only the YAML core schema tags are understood)"));
}

// ---- The parser ---------------------------------------------------------------------------

class Parser {
 public:
  Parser(std::string_view file, Config& cfg) : file_(file), cfg_(cfg) {}

  absl::Status Parse(const YAML::Node& root);

 private:
  using EntryFn =
      std::function<absl::Status(const std::string& key, int line, const YAML::Node& value)>;

  // "FILE:LINE: key "KEY": what"
  absl::Status Fail(int line, std::string_view key, std::string_view what) const {
    return FailAt(line, absl::StrCat("key \"", AV(key), "\": ", AV(what)));
  }
  absl::Status FailAt(int line, std::string_view what) const {
    if (line > 0) return absl::InvalidArgumentError(absl::StrCat(file_, ":", line, ": ", AV(what)));
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ", AV(what)));
  }

  void Record(const std::string& path, int line) {
    if (line > 0) cfg_.lines.emplace(path, line);
  }

  static std::string Join(std::string_view path, std::string_view key) {
    return path.empty() ? std::string(key) : absl::StrCat(AV(path), ".", AV(key));
  }

  absl::Status ForEachEntry(const YAML::Node& map, std::string_view path, const EntryFn& fn);
  absl::StatusOr<std::string> Text(const YAML::Node& v, std::string_view key, int line,
                                   std::string_view expected);
  absl::StatusOr<std::filesystem::path> AbsolutePath(const YAML::Node& v, std::string_view key,
                                                     int line);
  // `dir` (absolute) without "." or ".." components, repeated or trailing '/'.
  absl::StatusOr<std::string> NormalDirectory(const std::string& dir, std::string_view key,
                                              int line);
  absl::StatusOr<json> ToJson(const YAML::Node& n, const std::string& path, int line, int depth);
  absl::StatusOr<json> Settings(const YAML::Node& n, const std::string& path, int line,
                                std::string_view what);

  absl::Status TopLevel(const std::string& key, int line, const YAML::Node& v);
  absl::Status Version(const YAML::Node& v, int line);
  absl::Status PluginDirs(const YAML::Node& v, int line);
  absl::Status Plugins(const YAML::Node& v, int line);
  absl::Status Runtimes(const YAML::Node& v, int line);
  absl::Status Runtime(const std::string& name, int line, const YAML::Node& v);
  absl::Status Finish();

  std::string file_;
  Config& cfg_;
  std::size_t values_ = 0;
  bool default_runtime_given_ = false;
};

absl::Status Parser::ForEachEntry(const YAML::Node& map, std::string_view path, const EntryFn& fn) {
  std::map<std::string, int> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: the iterator hands out a temporary pair.
    const YAML::Node k = it->first;
    const YAML::Node value = it->second;
    const int line = LineOf(k) > 0 ? LineOf(k) : LineOf(map);
    if (!k.IsScalar()) {
      const std::string what =
          k.IsNull() ? "a null or empty key is not allowed (quote it if it is meant as a string)"
                     : absl::StrCat("keys must be scalars, got ", Describe(k), " as a key");
      return path.empty() ? FailAt(line, what) : Fail(line, path, what);
    }
    const std::string& key = k.Scalar();
    if (!IsValidUtf8(key)) {
      return Fail(line, Join(path, absl::CEscape(key)), "key is not valid UTF-8");
    }
    const auto [prev, inserted] = seen.emplace(key, line);
    if (!inserted) {
      return Fail(line, Join(path, key),
                  absl::StrCat("duplicate key (first at line ", prev->second, ")"));
    }
    RETURN_IF_ERROR(fn(key, line, value));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Parser::Text(const YAML::Node& v, std::string_view key, int line,
                                         std::string_view expected) {
  if (!v.IsScalar()) {
    return Fail(line, key, absl::StrCat("expected ", AV(expected), ", got ", Describe(v)));
  }
  if (!IsValidUtf8(v.Scalar())) return Fail(line, key, "value is not valid UTF-8");
  return v.Scalar();
}

absl::StatusOr<std::filesystem::path> Parser::AbsolutePath(const YAML::Node& v,
                                                           std::string_view key, int line) {
  ASSIGN_OR_RETURN(std::string s, Text(v, key, line, "an absolute path"));
  if (s.empty() || s[0] != '/' || s.find('\0') != std::string::npos) {
    return Fail(line, key, absl::StrCat("expected an absolute path, got ", Quote(s)));
  }
  return std::filesystem::path(std::move(s));
}

absl::StatusOr<std::string> Parser::NormalDirectory(const std::string& dir, std::string_view key,
                                                    int line) {
  std::string out;
  std::size_t i = 0;
  while (i < dir.size()) {
    while (i < dir.size() && dir[i] == '/') ++i;
    const std::size_t end = std::min(dir.find('/', i), dir.size());
    const std::string_view segment = std::string_view(dir).substr(i, end - i);
    if (segment == "." || segment == "..") {
      return Fail(line, key,
                  absl::StrCat("expected an absolute directory without \".\" or \"..\" "
                               "components, got ",
                               Quote(dir)));
    }
    if (!segment.empty()) absl::StrAppend(&out, "/", AV(segment));
    i = end;
  }
  return out.empty() ? std::string("/") : out;
}

absl::StatusOr<json> Parser::ToJson(const YAML::Node& n, const std::string& path, int line,
                                    int depth) {
  if (++values_ > kMaxValues) {
    return Fail(line, path,
                absl::StrCat("the configuration holds more than ", kMaxValues,
                             " values (after expanding aliases)"));
  }
  if (depth > kMaxDepth) {
    return Fail(line, path,
                absl::StrCat("nested deeper than ", kMaxDepth, " levels (a recursive alias?)"));
  }
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return json(nullptr);
    case YAML::NodeType::Scalar: {
      absl::StatusOr<json> v = ScalarToJson(n);
      if (!v.ok()) return Fail(line, path, SV(v.status().message()));
      return v;
    }
    case YAML::NodeType::Sequence: {
      json array = json::array();
      std::size_t i = 0;
      for (auto it = n.begin(); it != n.end(); ++it, ++i) {
        const YAML::Node element = *it;
        const std::string p = absl::StrCat(path, "[", i, "]");
        const int l = LineOf(element) > 0 ? LineOf(element) : line;
        Record(p, l);
        ASSIGN_OR_RETURN(json e, ToJson(element, p, l, depth + 1));
        array.push_back(std::move(e));
      }
      return array;
    }
    case YAML::NodeType::Map: {
      json object = json::object();
      RETURN_IF_ERROR(ForEachEntry(
          n, path, [&](const std::string& key, int l, const YAML::Node& v) -> absl::Status {
            const std::string p = Join(path, key);
            Record(p, l);
            ASSIGN_OR_RETURN(json e, ToJson(v, p, l, depth + 1));
            object[key] = std::move(e);
            return absl::OkStatus();
          }));
      return object;
    }
    default:
      return Fail(line, path, "undefined value");
  }
}

// A plugin's settings or a runtime's options: a mapping, or nothing for {}.
absl::StatusOr<json> Parser::Settings(const YAML::Node& n, const std::string& path, int line,
                                      std::string_view what) {
  if (n.IsNull()) return json::object();
  if (!n.IsMap()) {
    return Fail(line, path,
                absl::StrCat("expected a mapping (", AV(what), ") or nothing, got ", Describe(n)));
  }
  return ToJson(n, path, line, 1);
}

absl::Status Parser::Parse(const YAML::Node& root) {
  if (root.IsNull()) return Finish();
  if (!root.IsMap()) {
    return FailAt(LineOf(root), absl::StrCat("expected a mapping of configuration keys at the "
                                             "top level, got ",
                                             Describe(root)));
  }
  RETURN_IF_ERROR(
      ForEachEntry(root, "", [this](const std::string& key, int line, const YAML::Node& v) {
        return TopLevel(key, line, v);
      }));
  return Finish();
}

absl::Status Parser::TopLevel(const std::string& key, int line, const YAML::Node& v) {
  Record(key, line);
  if (key == "version") return Version(v, line);
  if (key == "root" || key == "state" || key == "socket") {
    ASSIGN_OR_RETURN(std::filesystem::path p, AbsolutePath(v, key, line));
    if (key == "socket" && p.native().size() > kMaxSocketPathLength) {
      return Fail(
          line, key,
          absl::StrCat("socket path is ", p.native().size(),
                       " bytes long; a unix socket path must be at most ", kMaxSocketPathLength));
    }
    (key == "root" ? cfg_.root : key == "state" ? cfg_.state : cfg_.socket) = std::move(p);
    return absl::OkStatus();
  }
  if (key == "log_level") {
    const std::string expected = absl::StrCat("one of ", JoinViews(kLogLevelNames, ", "));
    ASSIGN_OR_RETURN(std::string s, Text(v, key, line, expected));
    absl::StatusOr<LogLevel> level = ParseLogLevel(s);
    if (!level.ok()) return Fail(line, key, SV(level.status().message()));
    cfg_.log_level = *level;
    return absl::OkStatus();
  }
  if (key == "plugin_dirs") return PluginDirs(v, line);
  if (key == "plugins") return Plugins(v, line);
  if (key == "runtimes") return Runtimes(v, line);
  if (key == "default_runtime") {
    ASSIGN_OR_RETURN(cfg_.default_runtime, Text(v, key, line, "a runtime handler name"));
    default_runtime_given_ = true;
    return absl::OkStatus();
  }
  std::string msg = absl::StrCat("unknown key ", Quote(key), UnknownKeyMessage(key, kTopKeys));
  if (IsValidPluginId(key)) absl::StrAppend(&msg, "; plugin settings belong under \"plugins:\"");
  return FailAt(line, msg);
}

absl::Status Parser::Version(const YAML::Node& v, int line) {
  if (v.IsScalar() && v.Tag() == "?" && ClassifyPlain(v.Scalar()) == ScalarKind::kInt) {
    absl::StatusOr<json> n = PlainScalarToJson(v.Scalar());
    if (n.ok() && *n == 1) {
      cfg_.version = 1;
      return absl::OkStatus();
    }
    return Fail(line, "version",
                absl::StrCat("expected 1, got ", v.Scalar(),
                             " (this berthd knows configuration version 1 only)"));
  }
  return Fail(line, "version", absl::StrCat("expected the integer 1, got ", Describe(v)));
}

absl::Status Parser::PluginDirs(const YAML::Node& v, int line) {
  cfg_.plugin_dirs.clear();
  if (v.IsNull()) return absl::OkStatus();
  if (!v.IsSequence()) {
    return Fail(line, "plugin_dirs",
                absl::StrCat("expected a list of absolute paths, got ", Describe(v)));
  }
  std::size_t i = 0;
  for (auto it = v.begin(); it != v.end(); ++it, ++i) {
    const YAML::Node element = *it;
    const std::string p = absl::StrCat("plugin_dirs[", i, "]");
    const int l = LineOf(element) > 0 ? LineOf(element) : line;
    Record(p, l);
    ASSIGN_OR_RETURN(std::filesystem::path dir, AbsolutePath(element, p, l));
    cfg_.plugin_dirs.push_back(std::move(dir));
  }
  return absl::OkStatus();
}

absl::Status Parser::Plugins(const YAML::Node& v, int line) {
  cfg_.plugins_given = true;
  cfg_.plugins.clear();
  if (v.IsNull()) return absl::OkStatus();
  if (!v.IsMap()) {
    return Fail(line, "plugins",
                absl::StrCat("expected a mapping of plugin id to settings, got ", Describe(v)));
  }
  return ForEachEntry(v, "plugins", [&](const std::string& id, int l, const YAML::Node& s) {
    const std::string path = Join("plugins", id);
    Record(path, l);
    if (!IsValidPluginId(id)) {
      return Fail(l, path,
                  "invalid plugin id: expected reverse-DNS such as \"io.berth.cri\" (at most 128 "
                  "bytes, at least two '.'-separated segments of a-z, 0-9, '-' and '_', each starting and "
                  "ending with a letter or digit)");
    }
    ASSIGN_OR_RETURN(json config, Settings(s, path, l, "the plugin's settings"));
    cfg_.plugins[id] = PluginSection{.id = id, .config = std::move(config), .line = l};
    return absl::OkStatus();
  });
}

absl::Status Parser::Runtimes(const YAML::Node& v, int line) {
  cfg_.runtimes_given = true;
  cfg_.runtimes.clear();
  if (v.IsNull()) return absl::OkStatus();
  if (!v.IsMap()) {
    return Fail(line, "runtimes",
                absl::StrCat("expected a mapping of RuntimeClass handler to runtime entry, got ",
                             Describe(v)));
  }
  return ForEachEntry(v, "runtimes", [this](const std::string& name, int l, const YAML::Node& e) {
    return Runtime(name, l, e);
  });
}

absl::Status Parser::Runtime(const std::string& name, int line, const YAML::Node& v) {
  const std::string path = Join("runtimes", name);
  Record(path, line);
  if (!IsValidHandlerName(name)) {
    return Fail(line, path,
                "invalid handler name: RuntimeClass handlers are DNS-1123 labels (a-z, 0-9 and "
                "'-', starting and ending with a letter or digit, at most 63 characters)");
  }
  if (!v.IsMap()) {
    return Fail(line, path,
                absl::StrCat("expected a mapping with keys plugin, snapshotter, cni_conf_dir, "
                             "options, got ",
                             Describe(v)));
  }
  RuntimeEntry entry{.name = name, .plugin = {}, .options = json::object(), .line = line};
  bool have_plugin = false;
  RETURN_IF_ERROR(ForEachEntry(v, path, [&](const std::string& key, int l, const YAML::Node& x) {
    const std::string p = Join(path, key);
    if (key == "plugin") {
      Record(p, l);
      ASSIGN_OR_RETURN(entry.plugin, Text(x, p, l, "a plugin id"));
      if (!IsValidPluginId(entry.plugin)) {
        return Fail(l, p,
                    absl::StrCat("invalid plugin id ", Quote(entry.plugin),
                                 ": expected reverse-DNS such as \"io.berth.runtime.runc\""));
      }
      have_plugin = true;
      return absl::OkStatus();
    }
    if (key == "options") {
      Record(p, l);
      ASSIGN_OR_RETURN(entry.options, Settings(x, p, l, "the runtime plugin's options"));
      return absl::OkStatus();
    }
    if (key == "snapshotter") {
      Record(p, l);
      ASSIGN_OR_RETURN(entry.snapshotter, Text(x, p, l, "a snapshotter name"));
      const bool plain =
          !entry.snapshotter.empty() && entry.snapshotter.size() <= 128 &&
          std::all_of(entry.snapshotter.begin(), entry.snapshotter.end(), [](char c) {
            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                   c == '_';
          });
      if (!plain) {
        return Fail(l, p,
                    absl::StrCat("expected the name of a snapshotter (\"overlayfs\", \"native\") "
                                 "or its plugin id, got ",
                                 Quote(entry.snapshotter)));
      }
      return absl::OkStatus();
    }
    if (key == "cni_conf_dir") {
      Record(p, l);
      ASSIGN_OR_RETURN(std::filesystem::path dir, AbsolutePath(x, p, l));
      ASSIGN_OR_RETURN(entry.cni_conf_dir, NormalDirectory(dir.native(), p, l));
      return absl::OkStatus();
    }
    return FailAt(l, absl::StrCat("unknown key ", Quote(p), UnknownKeyMessage(key, kRuntimeKeys)));
  }));
  if (!have_plugin) {
    return Fail(line, path,
                "missing required key \"plugin\" (the id of the runtime plugin, such as "
                "\"io.berth.runtime.runc\")");
  }
  cfg_.runtimes[name] = std::move(entry);
  return absl::OkStatus();
}

absl::Status Parser::Finish() {
  auto where = [&](std::string_view key) {
    const auto it = cfg_.lines.find(std::string(key));
    return it == cfg_.lines.end() ? 0 : it->second;
  };
  if (cfg_.runtimes.empty()) {
    if (!IsValidHandlerName(cfg_.default_runtime)) {
      return Fail(where("default_runtime"), "default_runtime",
                  absl::StrCat("expected a RuntimeClass handler name (a DNS-1123 label), got ",
                               Quote(cfg_.default_runtime)));
    }
    return absl::OkStatus();
  }
  if (cfg_.runtimes.contains(cfg_.default_runtime)) return absl::OkStatus();
  // Named in the order of the file.
  std::vector<const RuntimeEntry*> entries;
  for (const auto& [name, entry] : cfg_.runtimes) entries.push_back(&entry);
  std::stable_sort(entries.begin(), entries.end(),
                   [](const RuntimeEntry* a, const RuntimeEntry* b) { return a->line < b->line; });
  std::vector<std::string_view> names;
  for (const RuntimeEntry* e : entries) names.push_back(e->name);
  if (!default_runtime_given_) {
    if (cfg_.runtimes.size() == 1) {
      cfg_.default_runtime = cfg_.runtimes.begin()->first;
      return absl::OkStatus();
    }
    return Fail(
        where("runtimes"), "default_runtime",
        absl::StrCat("not set, and the built-in default ", Quote(cfg_.default_runtime),
                     " is not among runtimes (", JoinViews(names, ", "), "); set default_runtime"));
  }
  return Fail(where("default_runtime"), "default_runtime",
              absl::StrCat(Quote(cfg_.default_runtime), " is not among runtimes (",
                           JoinViews(names, ", "), ")"));
}

// ---- Emitting -----------------------------------------------------------------------------

// A string that a plain scalar would turn into something else is double-quoted.
void EmitString(YAML::Emitter& out, const std::string& s) {
  if (ClassifyPlain(s) != ScalarKind::kString) out << YAML::DoubleQuoted;
  out << s;
}

void EmitJson(YAML::Emitter& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const auto& [key, value] : j.items()) {
        out << YAML::Key;
        EmitString(out, key);
        out << YAML::Value;
        EmitJson(out, value);
      }
      out << YAML::EndMap;
      return;
    case json::value_t::array:
      out << (j.empty() ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
      for (const json& e : j) EmitJson(out, e);
      out << YAML::EndSeq;
      return;
    case json::value_t::string:
      EmitString(out, j.get_ref<const std::string&>());
      return;
    case json::value_t::boolean:
      out << (j.get<bool>() ? "true" : "false");
      return;
    case json::value_t::number_integer:
      out << j.get<std::int64_t>();
      return;
    case json::value_t::number_unsigned:
      out << j.get<std::uint64_t>();
      return;
    case json::value_t::number_float: {
      const double d = j.get<double>();
      if (std::isnan(d)) {
        out << ".nan";
      } else if (std::isinf(d)) {
        out << (d < 0 ? "-.inf" : ".inf");
      } else {
        char buf[64];
        const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), d);
        std::string s(buf, ec == std::errc() ? ptr : buf);
        // Keep it a float when read back: "3" would be an integer.
        if (s.find_first_of(".e") == std::string::npos) s += ".0";
        out << s;
      }
      return;
    }
    default:  // null, binary, discarded
      out << YAML::Null;
      return;
  }
}

absl::Status FileError(int err, const std::filesystem::path& file, std::string_view action) {
  const std::string msg = absl::StrCat("cannot ", AV(action), " config file ", Quote(file.native()),
                                       ": ", std::generic_category().message(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::Status(absl::ErrnoToStatusCode(err), msg);
  }
}

// yaml-cpp 0.7 never gets past some stray tokens (a ',' outside a flow collection, at the
// start of a document): YAML::Load then returns an empty document and YAML::LoadAll loops
// forever, reporting empty documents without consuming input. So the documents are counted
// first, and one that does not start after the previous one is "malformed".
struct StuckParser {
  YAML::Mark mark;
  std::string what;
};

class DocumentCounter : public YAML::EventHandler {
 public:
  explicit DocumentCounter(const std::string& text) : text_(text) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (count_ > 0 && mark.pos <= last_.pos) {
      std::string what = "unexpected character";
      if (mark.pos >= 0 && static_cast<std::size_t>(mark.pos) < text_.size()) {
        absl::StrAppend(&what, " ", Quote(text_.substr(static_cast<std::size_t>(mark.pos), 1)));
      }
      throw StuckParser{mark, std::move(what)};
    }
    if (++count_ == 2) second_ = mark;
    last_ = mark;
  }
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

  int count() const { return count_; }
  const YAML::Mark& second() const { return second_; }

 private:
  const std::string& text_;
  int count_ = 0;
  YAML::Mark last_ = YAML::Mark::null_mark();
  YAML::Mark second_ = YAML::Mark::null_mark();
};

// OK when `text` holds at most one document. Throws YAML::Exception or StuckParser for
// malformed YAML.
absl::Status CheckDocuments(const std::string& text, std::string_view file) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter(text);
  while (counter.count() < 1000 && parser.HandleNextDocument(counter)) {
  }
  if (counter.count() <= 1) return absl::OkStatus();
  const int line = counter.second().line >= 0 ? counter.second().line + 1 : 0;
  return absl::InvalidArgumentError(absl::StrCat(
      AV(file), line > 0 ? absl::StrCat(":", line) : "", ": expected one YAML document, found ",
      counter.count() >= 1000 ? "1000 or more" : absl::StrCat(counter.count())));
}

}  // namespace

// ---- Public functions ---------------------------------------------------------------------

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view s) {
  const std::string lower = absl::AsciiStrToLower(AV(s));
  for (std::size_t i = 0; i < std::size(kLogLevelNames); ++i) {
    if (lower == kLogLevelNames[i]) return static_cast<LogLevel>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected one of ", JoinViews(kLogLevelNames, ", "), ", got ", Quote(s)));
}

std::string_view LogLevelName(LogLevel level) {
  const auto i = static_cast<std::size_t>(level);
  return i < std::size(kLogLevelNames) ? kLogLevelNames[i] : "unknown";
}

bool IsValidPluginId(std::string_view id) {
  if (id.size() > 128) return false;
  std::size_t segments = 0;
  for (;;) {
    const std::size_t dot = id.find('.');
    const std::string_view seg = id.substr(0, dot);
    ++segments;
    if (seg.empty() || !IsLowerAlnum(seg.front()) || !IsLowerAlnum(seg.back())) return false;
    for (char c : seg) {
      if (!IsLowerAlnum(c) && c != '-' && c != '_') return false;
    }
    if (dot == std::string_view::npos) break;
    id.remove_prefix(dot + 1);
  }
  return segments >= 2;
}

bool IsValidHandlerName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!IsLowerAlnum(name.front()) || !IsLowerAlnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

std::string Config::Where(std::string_view key_path) const {
  std::string p(key_path);
  while (!p.empty()) {
    const auto it = lines.find(p);
    if (it != lines.end()) return absl::StrCat(file, ":", it->second);
    const std::size_t cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  return file;
}

std::string Config::ToYaml() const {
  try {
    YAML::Emitter out;
    out.SetIndent(2);
    out << YAML::BeginMap;
    out << YAML::Key << "version" << YAML::Value << version;
    out << YAML::Key << "root" << YAML::Value;
    EmitString(out, root.string());
    out << YAML::Key << "state" << YAML::Value;
    EmitString(out, state.string());
    out << YAML::Key << "socket" << YAML::Value;
    EmitString(out, socket.string());
    out << YAML::Key << "log_level" << YAML::Value << std::string(LogLevelName(log_level));
    out << YAML::Key << "plugin_dirs" << YAML::Value;
    out << (plugin_dirs.empty() ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
    for (const auto& dir : plugin_dirs) EmitString(out, dir.string());
    out << YAML::EndSeq;
    if (plugins_given || !plugins.empty()) {
      out << YAML::Key << "plugins" << YAML::Value;
      out << (plugins.empty() ? YAML::Flow : YAML::Block) << YAML::BeginMap;
      for (const auto& [id, section] : plugins) {
        out << YAML::Key;
        EmitString(out, id);
        out << YAML::Value;
        EmitJson(out, section.config);
      }
      out << YAML::EndMap;
    }
    if (runtimes_given || !runtimes.empty()) {
      out << YAML::Key << "runtimes" << YAML::Value;
      out << (runtimes.empty() ? YAML::Flow : YAML::Block) << YAML::BeginMap;
      for (const auto& [name, entry] : runtimes) {
        out << YAML::Key;
        EmitString(out, name);
        out << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "plugin" << YAML::Value;
        EmitString(out, entry.plugin);
        if (!entry.snapshotter.empty()) {
          out << YAML::Key << "snapshotter" << YAML::Value;
          EmitString(out, entry.snapshotter);
        }
        if (!entry.cni_conf_dir.empty()) {
          out << YAML::Key << "cni_conf_dir" << YAML::Value;
          EmitString(out, entry.cni_conf_dir);
        }
        out << YAML::Key << "options" << YAML::Value;
        EmitJson(out, entry.options);
        out << YAML::EndMap;
      }
      out << YAML::EndMap;
    }
    out << YAML::Key << "default_runtime" << YAML::Value;
    EmitString(out, default_runtime);
    out << YAML::EndMap;

    std::string text = "# berthd configuration\n";
    if (!plugins_given && plugins.empty()) {
      absl::StrAppend(&text, "# plugins: not set: the built-in default plugin set applies\n");
    }
    if (!runtimes_given && runtimes.empty()) {
      absl::StrAppend(&text, "# runtimes: not set: the built-in default runtimes apply\n");
    }
    absl::StrAppend(&text, out.c_str(), "\n");
    return text;
  } catch (const std::exception& e) {
    return absl::StrCat("# cannot emit the configuration: ", e.what(), "\n");
  }
}

bool SameSettings(const Config& a, const Config& b) {
  auto same_plugins = [](const auto& x, const auto& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const auto& p, const auto& q) {
      return p.first == q.first && p.second.id == q.second.id && p.second.config == q.second.config;
    });
  };
  auto same_runtimes = [](const auto& x, const auto& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const auto& p, const auto& q) {
      return p.first == q.first && p.second.name == q.second.name &&
             p.second.plugin == q.second.plugin && p.second.snapshotter == q.second.snapshotter &&
             p.second.cni_conf_dir == q.second.cni_conf_dir && p.second.options == q.second.options;
    });
  };
  return a.version == b.version && a.root == b.root && a.state == b.state && a.socket == b.socket &&
         a.log_level == b.log_level && a.plugin_dirs == b.plugin_dirs &&
         a.plugins_given == b.plugins_given && same_plugins(a.plugins, b.plugins) &&
         a.runtimes_given == b.runtimes_given && same_runtimes(a.runtimes, b.runtimes) &&
         a.default_runtime == b.default_runtime;
}

absl::StatusOr<Config> ParseConfig(std::string_view text, std::string_view file_name) {
  const std::string file = file_name.empty() ? "<config>" : std::string(file_name);
  try {
    auto malformed = [&](const YAML::Mark& mark, std::string_view what) {
      if (mark.is_null()) {
        return absl::InvalidArgumentError(absl::StrCat(file, ": malformed YAML: ", AV(what)));
      }
      return absl::InvalidArgumentError(absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1,
                                                     ": malformed YAML: ", AV(what)));
    };
    const std::string input(text);
    YAML::Node root;
    try {
      RETURN_IF_ERROR(CheckDocuments(input, file));
      root = YAML::Load(input);
    } catch (const YAML::Exception& e) {
      return malformed(e.mark, e.msg);
    } catch (const StuckParser& e) {
      return malformed(e.mark, e.what);
    }
    Config cfg;
    cfg.file = file;
    Parser parser(file, cfg);
    RETURN_IF_ERROR(parser.Parse(root));
    return cfg;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": cannot read the configuration: ", e.what()));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::filesystem::path& file) {
  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return FileError(errno, file, "open");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) return FileError(errno, file, "inspect");
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", Quote(file.native()), " is a directory, not a YAML file"));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError(errno, file, "read");
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxFileSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config file ", Quote(file.native()), " is larger than ", kMaxFileSize >> 20, " MiB"));
    }
  }
  return ParseConfig(text, file.native());
}

}  // namespace berth::core
