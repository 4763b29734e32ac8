// SPDX-License-Identifier: Apache-2.0
#include "core/config.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace berth::core {
namespace {

using nlohmann::json;

constexpr std::string_view kFullConfig = R"(# a complete configuration
version: 1
root: /srv/berth
state: /run/berth-test
socket: /run/berth-test/berth.sock
log_level: debug
plugin_dirs:
  - /usr/lib/berth/plugins
  - /opt/berth/plugins
plugins:
  io.berth.cri:
    cgroup_driver: systemd
    stream:
      address: 127.0.0.1
      port: 10010
    registries: [docker.io, "quay.io"]
  io.berth.snapshotter.overlay:
  io.berth.cni: {}
runtimes:
  runc:
    plugin: io.berth.runtime.runc
    options:
      systemd_cgroup: true
  kata:
    plugin: io.berth.runtime.kata
default_runtime: runc
)";

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Parses `text` as "config.yaml", expects INVALID_ARGUMENT, returns the message.
std::string ErrorOf(std::string_view text) {
  absl::StatusOr<Config> c = ParseConfig(text, "config.yaml");
  if (c.ok()) {
    ADD_FAILURE() << "parsed, expected an error:\n" << text;
    return "";
  }
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return Message(c.status());
}

// Expects an error that starts with `prefix` ("config.yaml:7: ") and holds every `part`.
void ExpectError(std::string_view text, std::string_view prefix,
                 const std::vector<std::string_view>& parts) {
  SCOPED_TRACE(std::string(text));
  const std::string msg = ErrorOf(text);
  EXPECT_EQ(msg.substr(0, prefix.size()), prefix) << msg;
  for (std::string_view part : parts) {
    EXPECT_NE(msg.find(part), std::string::npos) << "missing \"" << part << "\" in: " << msg;
  }
}

Config MustParse(std::string_view text) {
  absl::StatusOr<Config> c = ParseConfig(text, "config.yaml");
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << text;
  return c.ok() ? *std::move(c) : Config{};
}

// The JSON a plain scalar becomes inside a plugin's settings.
json ValueOf(std::string_view yaml_scalar) {
  const Config c =
      MustParse(std::string("plugins:\n  a.b.c:\n    v: ") + std::string(yaml_scalar) + "\n");
  const auto it = c.plugins.find("a.b.c");
  if (it == c.plugins.end() || !it->second.config.contains("v")) return "<missing>";
  return it->second.config["v"];
}

// ---- Log levels ---------------------------------------------------------------------------

TEST(ConfigLogLevelTest, ParsesEveryNameAndNamesRoundTrip) {
  for (LogLevel level :
       {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    absl::StatusOr<LogLevel> parsed = ParseLogLevel(LogLevelName(level));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, level);
  }
  EXPECT_EQ(LogLevelName(LogLevel::kWarn), "warn");
  ASSERT_TRUE(ParseLogLevel("DEBUG").ok());
  EXPECT_EQ(*ParseLogLevel("DEBUG"), LogLevel::kDebug);
}

TEST(ConfigLogLevelTest, RejectsUnknownNamesListingTheKnownOnes) {
  absl::StatusOr<LogLevel> parsed = ParseLogLevel("verbose");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(parsed.status()),
            "expected one of trace, debug, info, warn, error, got \"verbose\"");
  EXPECT_FALSE(ParseLogLevel("").ok());
  EXPECT_FALSE(ParseLogLevel("warning").ok());
}

// ---- Names --------------------------------------------------------------------------------

TEST(ConfigNamesTest, PluginIds) {
  for (std::string_view ok : {"io.berth.cri", "io.berth.runtime.runc", "com.example.my-plugin",
                              "com.example.my_plugin2", "a.b.c", "0.1.2", "io.berth"}) {
    EXPECT_TRUE(IsValidPluginId(ok)) << ok;
  }
  for (std::string_view bad :
       {"", "cri", "Io.berth.cri", "io..berth.cri", ".io.berth.cri", "io.berth.cri.",
        "io.berth.-cri", "io.berth.cri-", "io.berth.c ri", "io.berth.cri/x", "io.berth.crï"}) {
    EXPECT_FALSE(IsValidPluginId(bad)) << bad;
  }
  EXPECT_FALSE(IsValidPluginId("io.berth." + std::string(250, 'x')));
}

TEST(ConfigNamesTest, HandlerNames) {
  const std::string longest(63, 'a'), too_long(64, 'a');
  for (std::string_view ok :
       {std::string_view("runc"), std::string_view("kata-qemu"), std::string_view("a"),
        std::string_view("0"), std::string_view("runc2"), std::string_view(longest)}) {
    EXPECT_TRUE(IsValidHandlerName(ok)) << ok;
  }
  for (std::string_view bad :
       {std::string_view(""), std::string_view("Runc"), std::string_view("-runc"),
        std::string_view("runc-"), std::string_view("run_c"), std::string_view("run.c"),
        std::string_view("ru nc"), std::string_view(too_long)}) {
    EXPECT_FALSE(IsValidHandlerName(bad)) << bad;
  }
}

// ---- Valid input --------------------------------------------------------------------------

TEST(ParseConfigTest, EmptyOrCommentOnlyFileGivesDefaultsAndNoPluginsOrRuntimes) {
  for (std::string_view text : {"", "\n\n", "# only a comment\n# and another\n", "---\n", "~\n"}) {
    SCOPED_TRACE(std::string(text));
    const Config c = MustParse(text);
    EXPECT_TRUE(SameSettings(c, Config{}));
    EXPECT_EQ(c.file, "config.yaml");
    EXPECT_EQ(c.version, 1);
    EXPECT_EQ(c.root, "/var/lib/berth");
    EXPECT_EQ(c.state, "/run/berth");
    EXPECT_EQ(c.socket, "/run/berth/berth.sock");
    EXPECT_EQ(c.log_level, LogLevel::kInfo);
    EXPECT_TRUE(c.plugin_dirs.empty());
    EXPECT_TRUE(c.plugins.empty());
    EXPECT_FALSE(c.plugins_given);
    EXPECT_TRUE(c.runtimes.empty());
    EXPECT_FALSE(c.runtimes_given);
    EXPECT_EQ(c.default_runtime, "runc");
  }
}

TEST(ParseConfigTest, EmptyPluginsAndRuntimesAreGiven) {
  const Config c = MustParse("plugins: {}\nruntimes:\n");
  EXPECT_TRUE(c.plugins_given);
  EXPECT_TRUE(c.plugins.empty());
  EXPECT_TRUE(c.runtimes_given);
  EXPECT_TRUE(c.runtimes.empty());
}

TEST(ParseConfigTest, FullConfig) {
  const Config c = MustParse(kFullConfig);
  EXPECT_EQ(c.version, 1);
  EXPECT_EQ(c.root, "/srv/berth");
  EXPECT_EQ(c.state, "/run/berth-test");
  EXPECT_EQ(c.socket, "/run/berth-test/berth.sock");
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_EQ(c.plugin_dirs,
            (std::vector<std::filesystem::path>{"/usr/lib/berth/plugins", "/opt/berth/plugins"}));
  ASSERT_TRUE(c.plugins_given);
  ASSERT_EQ(c.plugins.size(), 3u);
  const PluginSection& cri = c.plugins.at("io.berth.cri");
  EXPECT_EQ(cri.id, "io.berth.cri");
  EXPECT_EQ(cri.line, 11);
  EXPECT_EQ(cri.config, json::parse(R"({"cgroup_driver": "systemd",
      "stream": {"address": "127.0.0.1", "port": 10010},
      "registries": ["docker.io", "quay.io"]})"));
  EXPECT_EQ(c.plugins.at("io.berth.snapshotter.overlay").config, json::object());
  EXPECT_EQ(c.plugins.at("io.berth.snapshotter.overlay").line, 17);
  EXPECT_EQ(c.plugins.at("io.berth.cni").config, json::object());
  ASSERT_TRUE(c.runtimes_given);
  ASSERT_EQ(c.runtimes.size(), 2u);
  const RuntimeEntry& runc = c.runtimes.at("runc");
  EXPECT_EQ(runc.name, "runc");
  EXPECT_EQ(runc.plugin, "io.berth.runtime.runc");
  EXPECT_EQ(runc.options, json::parse(R"({"systemd_cgroup": true})"));
  EXPECT_EQ(runc.line, 20);
  EXPECT_EQ(c.runtimes.at("kata").plugin, "io.berth.runtime.kata");
  EXPECT_EQ(c.runtimes.at("kata").options, json::object());
  EXPECT_EQ(c.default_runtime, "runc");
  EXPECT_EQ(c.lines.at("version"), 2);
  EXPECT_EQ(c.lines.at("plugin_dirs[1]"), 9);
  EXPECT_EQ(c.lines.at("plugins.io.berth.cri.stream.port"), 15);
  EXPECT_EQ(c.lines.at("runtimes.runc.options.systemd_cgroup"), 23);
}

TEST(ParseConfigTest, DefaultRuntimeWhenUnset) {
  // The one entry of a one-entry table.
  EXPECT_EQ(MustParse("runtimes:\n  crun:\n    plugin: io.berth.runtime.crun\n").default_runtime,
            "crun");
  // "runc" when present.
  EXPECT_EQ(MustParse("runtimes:\n  crun: {plugin: a.b.crun}\n  runc: {plugin: a.b.runc}\n")
                .default_runtime,
            "runc");
  // Not checked when runtimes is absent: the daemon's default table decides.
  EXPECT_EQ(MustParse("default_runtime: kata\n").default_runtime, "kata");
  EXPECT_EQ(MustParse("runtimes: {}\ndefault_runtime: kata\n").default_runtime, "kata");
}

// ---- Scalars ------------------------------------------------------------------------------

TEST(ConfigScalarTest, CoreSchemaTable) {
  const std::vector<std::pair<std::string_view, json>> table = {
      {"true", true},
      {"True", true},
      {"TRUE", true},
      {"false", false},
      {"False", false},
      {"FALSE", false},
      {"tRue", "tRue"},
      {"yes", "yes"},
      {"no", "no"},
      {"on", "on"},
      {"off", "off"},
      {"y", "y"},
      {"null", nullptr},
      {"Null", nullptr},
      {"NULL", nullptr},
      {"~", nullptr},
      {"", nullptr},
      {"nULL", "nULL"},
      {"0", 0},
      {"42", 42},
      {"-17", -17},
      {"+17", 17},
      {"007", 7},
      {"0x1F", 31},
      {"0xff", 255},
      {"0o17", 15},
      {"0X1F", "0X1F"},
      {"0o8", "0o8"},
      {"0b101", "0b101"},
      {"9223372036854775807", std::numeric_limits<std::int64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<std::int64_t>::min()},
      {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
      {"0xffffffffffffffff", std::numeric_limits<std::uint64_t>::max()},
      {"1.5", 1.5},
      {"-1.5", -1.5},
      {"+1.5", 1.5},
      {".5", 0.5},
      {"5.", 5.0},
      {"1e3", 1000.0},
      {"1E-2", 0.01},
      {"-2.5e+2", -250.0},
      {"1.2.3", "1.2.3"},
      {"1e", "1e"},
      {"e3", "e3"},
      {"hello", "hello"},
      {"hello world", "hello world"},
      {"10.0.0.1", "10.0.0.1"},
      {"/var/lib", "/var/lib"},
      {"12:30", "12:30"},
      {"\"true\"", "true"},
      {"'42'", "42"},
      {"\"\"", ""},
      {"''", ""},
      {"'null'", "null"},
      {"\"~\"", "~"},
      {"\"1.5\"", "1.5"},
      {"\"a\\tb\"", "a\tb"},
      {"!!str 42", "42"},
      {"!!str true", "true"},
      {"!!int 42", 42},
      {"!!int 0x10", 16},
      {"!!float 3", 3.0},
      {"!!bool false", false},
      {"!!null ~", nullptr},
      {"[1, two, 3.0]", json::parse(R"([1, "two", 3.0])")},
      {"{a: 1, b: [x]}", json::parse(R"({"a": 1, "b": ["x"]})")},
      {"[]", json::array()},
      {"{}", json::object()},
  };
  for (const auto& [yaml, expected] : table) {
    const json got = ValueOf(yaml);
    EXPECT_EQ(got, expected) << "for " << yaml << " got " << got.dump();
    // Same kind of value (signed or unsigned alike for integers).
    EXPECT_EQ(got.is_number_integer() ? json::value_t::number_integer : got.type(),
              expected.is_number_integer() ? json::value_t::number_integer : expected.type())
        << "for " << yaml << " got " << got.dump();
  }
  // Non-negative integers are unsigned, like nlohmann::json::parse makes them.
  EXPECT_TRUE(ValueOf("42").is_number_unsigned());
  EXPECT_TRUE(ValueOf("-42").is_number_integer());
  EXPECT_TRUE(ValueOf("!!float 3").is_number_float());
}

TEST(ConfigScalarTest, RefusesWhatJsonCannotHold) {
  ExpectError("plugins:\n  a.b.c:\n    v: .inf\n",
              "config.yaml:3: ", {"key \"plugins.a.b.c.v\"", "\".inf\"", "JSON", "quote"});
  ExpectError("plugins:\n  a.b.c:\n    v: -.Inf\n", "config.yaml:3: ", {"JSON"});
  ExpectError("plugins:\n  a.b.c:\n    v: .nan\n", "config.yaml:3: ", {"JSON"});
  ExpectError("plugins:\n  a.b.c:\n    v: 18446744073709551616\n",
              "config.yaml:3: ", {"out of the 64-bit range"});
  ExpectError("plugins:\n  a.b.c:\n    v: -9223372036854775809\n",
              "config.yaml:3: ", {"out of the 64-bit range"});
  ExpectError("plugins:\n  a.b.c:\n    v: 1e999\n", "config.yaml:3: ", {"out of the range"});
  EXPECT_EQ(ValueOf("'.inf'"), ".inf");
}

TEST(ConfigScalarTest, RefusesUnknownAndMismatchedTags) {
  ExpectError("plugins:\n  a.b.c:\n    v: !custom x\n",
              "config.yaml:3: ", {"key \"plugins.a.b.c.v\"", "unsupported tag \"!custom\""});
  ExpectError("plugins:\n  a.b.c:\n    v: !!int abc\n",
              "config.yaml:3: ", {"\"abc\" is not a valid !!int value"});
  ExpectError("plugins:\n  a.b.c:\n    v: !!bool yes\n", "config.yaml:3: ", {"!!bool"});
}

TEST(ConfigScalarTest, RefusesInvalidUtf8) {
  ExpectError("plugins:\n  a.b.c:\n    v: \"ok\" \n    w: a\xff\xfe\n",
              "config.yaml:4: ", {"key \"plugins.a.b.c.w\"", "UTF-8"});
  ExpectError("root: /a\xc0\xaf\n", "config.yaml:1: ", {"key \"root\"", "UTF-8"});
  EXPECT_EQ(ValueOf("h\xc3\xa9llo \xe2\x98\x83"), "h\xc3\xa9llo \xe2\x98\x83");
}

// ---- Errors -------------------------------------------------------------------------------

TEST(ParseConfigErrorTest, MalformedYamlHasLineAndColumn) {
  ExpectError("root: /a\nplugins: {a.b.c: [1, 2}\n",
              "config.yaml:2:23: malformed YAML: ", {"illegal flow end"});
  ExpectError("version: 1\nroot: /a\n  state: /b\n", "config.yaml:3:8: malformed YAML: ", {});
  ExpectError("a: [1\nb: 2", "config.yaml:2:2: malformed YAML: ", {});
}

TEST(ParseConfigErrorTest, TopLevelMustBeOneMapping) {
  ExpectError("just a string\n", "config.yaml:1: ", {"expected a mapping", "\"just a string\""});
  ExpectError("- root: /a\n", "config.yaml:1: ", {"expected a mapping", "a list"});
  ExpectError("root: /a\n---\nroot: /b\n", "config.yaml:2: ", {"one YAML document, found 2"});
  // yaml-cpp 0.7 alone would take this for an empty document (and LoadAll never returns).
  ExpectError(",ersion: 1\nroot: /srv\n",
              "config.yaml:1:1: malformed YAML: ", {"unexpected character \",\""});
  ExpectError("# comment\n  , root: /srv\n", "config.yaml:2:3: malformed YAML: ", {});
}

TEST(ParseConfigErrorTest, UnknownTopLevelKey) {
  ExpectError("version: 1\n\nruntime:\n  runc: {plugin: a.b.c}\n", "config.yaml:3: ",
              {"unknown key \"runtime\"", "did you mean \"runtimes\"?",
               "(known keys: version, root, state, socket, log_level, plugin_dirs, plugins, "
               "runtimes, default_runtime)"});
  ExpectError("loglevel: info\n", "config.yaml:1: ", {"did you mean \"log_level\"?"});
  ExpectError("Root: /a\n", "config.yaml:1: ", {"did you mean \"root\"?"});
  const std::string far = ErrorOf("colour: blue\n");
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
  EXPECT_NE(far.find("unknown key \"colour\""), std::string::npos) << far;
  // A plugin section that lost its "plugins:" parent.
  ExpectError("io.berth.cri:\n  x: 1\n",
              "config.yaml:1: ", {"unknown key \"io.berth.cri\"", "under \"plugins:\""});
}

TEST(ParseConfigErrorTest, UnknownRuntimeEntryKey) {
  ExpectError("runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n    option: {}\n",
              "config.yaml:4: ",
              {"unknown key \"runtimes.runc.option\"", "did you mean \"options\"?",
               "(known keys: plugin, snapshotter, cni_conf_dir, options)"});
}

TEST(ParseConfigErrorTest, WrongTypes) {
  struct Case {
    std::string_view text, prefix, part;
  };
  const Case cases[] = {
      {"log_level: verbose\n", "config.yaml:1: ",
       "key \"log_level\": expected one of trace, debug, info, warn, error, got \"verbose\""},
      {"root: /a\nlog_level: [info]\n", "config.yaml:2: ",
       "key \"log_level\": expected one of trace, debug, info, warn, error, got a list"},
      {"root: var/lib\n",
       "config.yaml:1: ", "key \"root\": expected an absolute path, got \"var/lib\""},
      {"state:\n", "config.yaml:1: ", "key \"state\": expected an absolute path, got nothing"},
      {"socket: {a: b}\n",
       "config.yaml:1: ", "key \"socket\": expected an absolute path, got a mapping"},
      {"root: \"\"\n", "config.yaml:1: ", "key \"root\": expected an absolute path, got \"\""},
      {"root: \"/a\\0b\"\n", "config.yaml:1: ", "key \"root\": expected an absolute path"},
      {"plugin_dirs: /usr/lib/berth\n", "config.yaml:1: ",
       "key \"plugin_dirs\": expected a list of absolute paths, got \"/usr/lib/berth\""},
      {"plugin_dirs:\n  - /a\n  - b/c\n",
       "config.yaml:3: ", "key \"plugin_dirs[1]\": expected an absolute path, got \"b/c\""},
      {"plugin_dirs: [[/a]]\n",
       "config.yaml:1: ", "key \"plugin_dirs[0]\": expected an absolute path, got a list"},
      {"plugins: [io.berth.cri]\n", "config.yaml:1: ",
       "key \"plugins\": expected a mapping of plugin id to settings, got a list"},
      {"plugins:\n  io.berth.cri: true\n", "config.yaml:2: ",
       "key \"plugins.io.berth.cri\": expected a mapping (the plugin's settings) or nothing, "
       "got \"true\""},
      {"runtimes: runc\n", "config.yaml:1: ", "key \"runtimes\": expected a mapping"},
      {"runtimes:\n  runc: io.berth.runtime.runc\n", "config.yaml:2: ",
       "key \"runtimes.runc\": expected a mapping with keys plugin, snapshotter, cni_conf_dir, "
       "options, got \"io.berth.runtime.runc\""},
      {"runtimes:\n  runc:\n", "config.yaml:2: ",
       "key \"runtimes.runc\": expected a mapping with keys plugin, snapshotter, cni_conf_dir, "
       "options, got nothing"},
      {"runtimes:\n  runc:\n    plugin: [a.b.c]\n",
       "config.yaml:3: ", "key \"runtimes.runc.plugin\": expected a plugin id, got a list"},
      {"runtimes:\n  runc:\n    plugin: a.b.c\n    options: [x]\n", "config.yaml:4: ",
       "key \"runtimes.runc.options\": expected a mapping (the runtime plugin's options) or "
       "nothing, got a list"},
      {"default_runtime: [runc]\n",
       "config.yaml:1: ", "key \"default_runtime\": expected a runtime handler name, got a list"},
      {"default_runtime: Runc\n",
       "config.yaml:1: ", "key \"default_runtime\": expected a RuntimeClass handler name"},
  };
  for (const Case& c : cases) ExpectError(c.text, c.prefix, {c.part});
}

TEST(ParseConfigErrorTest, VersionOtherThanOneIsRefused) {
  ExpectError("# c\nversion: 2\n", "config.yaml:2: ", {"key \"version\": expected 1, got 2"});
  ExpectError("version: 0\n", "config.yaml:1: ", {"key \"version\": expected 1, got 0"});
  ExpectError("version: 1.0\n",
              "config.yaml:1: ", {"key \"version\": expected the integer 1, got \"1.0\""});
  ExpectError("version: \"1\"\n",
              "config.yaml:1: ", {"key \"version\": expected the integer 1, got the string \"1\""});
  ExpectError("version:\n", "config.yaml:1: ", {"key \"version\"", "got nothing"});
  ExpectError("version: 99999999999999999999999\n", "config.yaml:1: ", {"key \"version\""});
  EXPECT_EQ(MustParse("version: 0x1\n").version, 1);
}

TEST(ParseConfigErrorTest, DuplicateKeysNameBothLines) {
  ExpectError("root: /a\nstate: /s\nroot: /b\n",
              "config.yaml:3: ", {"key \"root\": duplicate key (first at line 1)"});
  ExpectError("plugins:\n  io.berth.cri:\n    a: 1\n    nested: {x: 1, x: 2}\n", "config.yaml:4: ",
              {"key \"plugins.io.berth.cri.nested.x\": duplicate key (first at line 4)"});
  ExpectError("plugins:\n  io.berth.cri: {}\n  io.berth.cni: {}\n  io.berth.cri: {}\n",
              "config.yaml:4: ", {"key \"plugins.io.berth.cri\": duplicate key (first at line 2)"});
  ExpectError("runtimes:\n  runc: {plugin: a.b.c}\n  runc: {plugin: a.b.d}\n",
              "config.yaml:3: ", {"key \"runtimes.runc\": duplicate key (first at line 2)"});
  ExpectError("runtimes:\n  runc:\n    plugin: a.b.c\n    plugin: a.b.d\n",
              "config.yaml:4: ", {"key \"runtimes.runc.plugin\": duplicate key (first at line 3)"});
}

TEST(ParseConfigErrorTest, BadKeys) {
  ExpectError("? [a, b]\n: 1\n", "config.yaml:1: ", {"keys must be scalars", "a list"});
  ExpectError("plugins:\n  io.berth.cri:\n    ~: x\n",
              "config.yaml:3: ", {"key \"plugins.io.berth.cri\"", "null or empty key"});
  ExpectError("plugins:\n  io.berth.cri:\n    {a: 1}: x\n", "config.yaml:3: ",
              {"key \"plugins.io.berth.cri\"", "keys must be scalars", "a mapping"});
}

TEST(ParseConfigErrorTest, BadPluginIds) {
  for (std::string_view id : {"cri", "io.", "IO.Berth.CRI", "io..berth", "io.berth.cri!"}) {
    const std::string text = "plugins:\n  \"" + std::string(id) + "\": {}\n";
    ExpectError(text, "config.yaml:2: ",
                {"key \"plugins." + std::string(id) + "\": invalid plugin id", "reverse-DNS"});
  }
  ExpectError("runtimes:\n  runc:\n    plugin: runc\n",
              "config.yaml:3: ", {"key \"runtimes.runc.plugin\": invalid plugin id \"runc\""});
}

TEST(ParseConfigErrorTest, BadHandlerNames) {
  for (std::string_view name : {"Runc", "run_c", "-runc", "kata.qemu"}) {
    const std::string text = "runtimes:\n  " + std::string(name) + ":\n    plugin: a.b.c\n";
    ExpectError(text, "config.yaml:2: ",
                {"key \"runtimes." + std::string(name) + "\": invalid handler name", "DNS-1123"});
  }
  ExpectError("runtimes:\n  " + std::string(64, 'a') + ": {plugin: a.b.c}\n",
              "config.yaml:2: ", {"invalid handler name"});
}

TEST(ParseConfigTest, RuntimeSnapshotterAndCniConfDir) {
  const Config c = MustParse(
      "runtimes:\n"
      "  runc:\n"
      "    plugin: io.berth.runtime.runc\n"
      "  kata:\n"
      "    plugin: io.berth.runtime.kata\n"
      "    snapshotter: native\n"
      "    cni_conf_dir: /etc/cni//net.d/kata/\n"
      "    options: {shim: containerd-shim-kata-v2}\n"
      "  gvisor:\n"
      "    plugin: io.berth.runtime.kata\n"
      "    snapshotter: io.berth.snapshotter.native\n"
      "    cni_conf_dir: /\n");
  EXPECT_EQ(c.runtimes.at("runc").snapshotter, "");
  EXPECT_EQ(c.runtimes.at("runc").cni_conf_dir, "");
  EXPECT_EQ(c.runtimes.at("kata").snapshotter, "native");
  // Repeated and trailing slashes go: the directory is compared with others.
  EXPECT_EQ(c.runtimes.at("kata").cni_conf_dir, "/etc/cni/net.d/kata");
  EXPECT_EQ(c.runtimes.at("kata").options, json::parse(R"({"shim": "containerd-shim-kata-v2"})"));
  EXPECT_EQ(c.runtimes.at("gvisor").snapshotter, "io.berth.snapshotter.native");
  EXPECT_EQ(c.runtimes.at("gvisor").cni_conf_dir, "/");
  EXPECT_EQ(c.Where("runtimes.kata.snapshotter"), "config.yaml:6");
  EXPECT_EQ(c.Where("runtimes.kata.cni_conf_dir"), "config.yaml:7");
}

TEST(ParseConfigErrorTest, RuntimeCniConfDirAndSnapshotter) {
  const std::string head = "runtimes:\n  kata:\n    plugin: io.berth.runtime.kata\n";
  ExpectError(head + "    cni_conf_dir: etc/cni/kata\n", "config.yaml:4: ",
              {"key \"runtimes.kata.cni_conf_dir\": expected an absolute path, got "
               "\"etc/cni/kata\""});
  ExpectError(head + "    cni_conf_dir: \"\"\n", "config.yaml:4: ",
              {"key \"runtimes.kata.cni_conf_dir\": expected an absolute path, got \"\""});
  ExpectError(head + "    cni_conf_dir: /etc/cni/../kata\n", "config.yaml:4: ",
              {"key \"runtimes.kata.cni_conf_dir\": expected an absolute directory without "
               "\".\" or \"..\" components, got \"/etc/cni/../kata\""});
  ExpectError(head + "    cni_conf_dir: /etc/./kata\n", "config.yaml:4: ",
              {"without \".\" or \"..\" components"});
  ExpectError(head + "    cni_conf_dir: [/etc/cni]\n", "config.yaml:4: ",
              {"key \"runtimes.kata.cni_conf_dir\": expected an absolute path, got a list"});
  ExpectError(head + "    snapshotter: \"\"\n", "config.yaml:4: ",
              {"key \"runtimes.kata.snapshotter\": expected the name of a snapshotter"});
  ExpectError(head + "    snapshotter: over lay\n", "config.yaml:4: ",
              {"key \"runtimes.kata.snapshotter\"", "got \"over lay\""});
  ExpectError(head + "    snapshotter: {name: x}\n", "config.yaml:4: ",
              {"key \"runtimes.kata.snapshotter\": expected a snapshotter name, got a mapping"});
  ExpectError(head + "    cni_confdir: /etc/cni/kata\n", "config.yaml:4: ",
              {"unknown key \"runtimes.kata.cni_confdir\"", "did you mean \"cni_conf_dir\"?",
               "(known keys: plugin, snapshotter, cni_conf_dir, options)"});
}

TEST(ParseConfigErrorTest, RuntimeWithoutPlugin) {
  ExpectError("runtimes:\n  runc:\n    options: {a: 1}\n",
              "config.yaml:2: ", {"key \"runtimes.runc\": missing required key \"plugin\""});
  ExpectError("runtimes:\n  runc: {}\n",
              "config.yaml:2: ", {"key \"runtimes.runc\": missing required key \"plugin\""});
}

TEST(ParseConfigErrorTest, DefaultRuntimeNotAmongRuntimes) {
  ExpectError(
      "runtimes:\n  runc: {plugin: io.berth.runtime.runc}\n  crun: {plugin: a.b.crun}\n"
      "default_runtime: kata\n",
      "config.yaml:4: ", {"key \"default_runtime\": \"kata\" is not among runtimes (runc, crun)"});
  // Unset, and "runc" is not there to be the default.
  ExpectError("runtimes:\n  crun: {plugin: a.b.crun}\n  kata: {plugin: a.b.kata}\n",
              "config.yaml:1: ",
              {"key \"default_runtime\": not set", "\"runc\" is not among runtimes (crun, kata)"});
}

TEST(ParseConfigErrorTest, SocketPathLength) {
  const std::string ok = "/" + std::string(kMaxSocketPathLength - 1, 's');
  EXPECT_EQ(MustParse("socket: " + ok + "\n").socket, ok);
  ExpectError("root: /r\nsocket: " + ok + "x\n",
              "config.yaml:2: ", {"key \"socket\"", "108 bytes", "at most 107"});
}

TEST(ParseConfigErrorTest, AliasesAreResolvedButBounded) {
  const Config c =
      MustParse("plugins:\n  a.b.c: &common\n    level: 3\n    tags: [x, y]\n  a.b.d: *common\n");
  EXPECT_EQ(c.plugins.at("a.b.d").config, json::parse(R"({"level": 3, "tags": ["x", "y"]})"));
  EXPECT_EQ(c.plugins.at("a.b.c").config, c.plugins.at("a.b.d").config);
  // A recursive alias.
  ExpectError("plugins:\n  a.b.c: &loop\n    self: *loop\n",
              "config.yaml:3: ", {"nested deeper than"});
  // Exponential expansion.
  std::string laughs = "plugins:\n  a.b.c:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 8; ++i) {
    laughs += "    l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) laughs += (k ? ", *l" : "*l") + std::to_string(i - 1);
    laughs += "]\n";
  }
  ExpectError(laughs, "config.yaml:", {"more than 100000 values"});
}

// ---- Where --------------------------------------------------------------------------------

TEST(ConfigWhereTest, FindsNestedPluginKeysAndFallsBack) {
  const Config c = MustParse(kFullConfig);
  EXPECT_EQ(c.Where("plugins.io.berth.cri.cgroup_driver"), "config.yaml:12");
  EXPECT_EQ(c.Where("plugins.io.berth.cri.stream.port"), "config.yaml:15");
  EXPECT_EQ(c.Where("plugins.io.berth.cri.registries[1]"), "config.yaml:16");
  EXPECT_EQ(c.Where("plugins.io.berth.cri"), "config.yaml:11");
  // Not in the file: the nearest recorded ancestor.
  EXPECT_EQ(c.Where("plugins.io.berth.cri.stream.tls.cert"), "config.yaml:13");
  EXPECT_EQ(c.Where("plugins.io.berth.cri.not_there"), "config.yaml:11");
  EXPECT_EQ(c.Where("plugins.io.berth.cni.x"), "config.yaml:18");
  EXPECT_EQ(c.Where("plugins.io.berth.unknown.x"), "config.yaml:10");
  EXPECT_EQ(c.Where("runtimes.runc.plugin"), "config.yaml:21");
  EXPECT_EQ(c.Where("runtimes.runc.options.systemd_cgroup"), "config.yaml:23");
  EXPECT_EQ(c.Where("runtimes.kata.options"), "config.yaml:24");
  EXPECT_EQ(c.Where("plugin_dirs[1]"), "config.yaml:9");
  EXPECT_EQ(c.Where("default_runtime"), "config.yaml:26");
  EXPECT_EQ(c.Where("nothing.here"), "config.yaml");
  EXPECT_EQ(c.Where(""), "config.yaml");
  EXPECT_EQ(Config{}.Where("root"), "<built-in>");
}

TEST(ConfigWhereTest, LongestRecordedPrefixWinsForDottedIds) {
  // "plugins.a.b.c.d" is both plugin a.b.c's key d and plugin a.b.c.d itself.
  const Config c =
      MustParse("plugins:\n  a.b.c:\n    d:\n      e: 1\n  a.b.c.d:\n    e: 2\n    f: 3\n");
  EXPECT_EQ(c.Where("plugins.a.b.c.d.f"), "config.yaml:7");
  EXPECT_EQ(c.Where("plugins.a.b.c.d.e"), "config.yaml:4");  // recorded for both; first wins
  EXPECT_EQ(c.Where("plugins.a.b.c.x"), "config.yaml:2");
  EXPECT_EQ(c.Where("plugins.a.b.cc"), "config.yaml:1");
}

// ---- Round trip ---------------------------------------------------------------------------

void ExpectRoundTrip(const Config& c) {
  const std::string yaml = c.ToYaml();
  SCOPED_TRACE(yaml);
  absl::StatusOr<Config> back = ParseConfig(yaml, "round-trip.yaml");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(SameSettings(c, *back));
  EXPECT_EQ(back->ToYaml(), yaml);
}

TEST(ConfigRoundTripTest, DefaultConfig) {
  const Config c;
  ExpectRoundTrip(c);
  const std::string yaml = c.ToYaml();
  // Schema order.
  std::size_t pos = 0;
  for (std::string_view key :
       {"version: 1", "root: /var/lib/berth", "state: /run/berth", "socket: /run/berth/berth.sock",
        "log_level: info", "plugin_dirs: []", "default_runtime: runc"}) {
    const std::size_t at = yaml.find(key, pos);
    ASSERT_NE(at, std::string::npos) << key << " in\n" << yaml;
    pos = at;
  }
  EXPECT_EQ(yaml.find("\nplugins:"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("\nruntimes:"), std::string::npos) << yaml;
}

TEST(ConfigRoundTripTest, FullConfig) {
  const Config c = MustParse(kFullConfig);
  ExpectRoundTrip(c);
  const std::string yaml = c.ToYaml();
  EXPECT_LT(yaml.find("\nplugins:"), yaml.find("\nruntimes:")) << yaml;
  EXPECT_LT(yaml.find("\nruntimes:"), yaml.find("\ndefault_runtime:")) << yaml;
}

TEST(ConfigRoundTripTest, RuntimeSnapshotterAndCniConfDir) {
  const Config c = MustParse(
      "runtimes:\n  runc: {plugin: io.berth.runtime.runc}\n"
      "  kata:\n    plugin: io.berth.runtime.kata\n    snapshotter: native\n"
      "    cni_conf_dir: /etc/cni/kata\n    options: {shim: x}\n");
  ExpectRoundTrip(c);
  Config other = c;
  other.runtimes["kata"].cni_conf_dir = "/etc/cni/other";
  EXPECT_FALSE(SameSettings(c, other));
  other = c;
  other.runtimes["kata"].snapshotter = "overlayfs";
  EXPECT_FALSE(SameSettings(c, other));
}

TEST(ConfigRoundTripTest, EmptyPluginsAndRuntimesStayGiven) {
  ExpectRoundTrip(MustParse("plugins: {}\nruntimes: {}\n"));
}

TEST(ConfigRoundTripTest, TrickyValues) {
  Config c;
  c.root = "/var/lib/berth root";
  c.state = "/run/#berth";
  c.socket = "/run/berth: x/s.sock";
  c.log_level = LogLevel::kError;
  c.plugin_dirs = {"/a/b", "/with space", "/quote'd", "/\"dq\""};
  c.plugins_given = true;
  json config = json::object();
  const std::vector<std::string> strings = {"",
                                            "true",
                                            "False",
                                            "null",
                                            "~",
                                            "NULL",
                                            "42",
                                            "-7",
                                            "0x1F",
                                            "0o17",
                                            "1.5",
                                            ".5",
                                            "1e3",
                                            ".inf",
                                            "-.Inf",
                                            ".nan",
                                            "yes",
                                            "no",
                                            " lead",
                                            "trail ",
                                            "a: b",
                                            "#x",
                                            "- x",
                                            "a #b",
                                            "key:",
                                            "---",
                                            "...",
                                            "'",
                                            "\"",
                                            "@at",
                                            "`bt",
                                            "!bang",
                                            "&amp",
                                            "*star",
                                            "%pct",
                                            "{b}",
                                            "[b]",
                                            ",c",
                                            "?q",
                                            "|p",
                                            ">g",
                                            "multi\nline\n",
                                            "tab\there",
                                            "h\xc3\xa9llo \xe2\x98\x83",
                                            std::string("nul\0byte", 8),
                                            "\x7f",
                                            "\\back"};
  json list = json::array();
  for (std::size_t i = 0; i < strings.size(); ++i) {
    config["s" + std::to_string(i)] = strings[i];
    config[strings[i]] = i;  // as keys too
    list.push_back(strings[i]);
  }
  config["list"] = list;
  config["numbers"] = json::array({0, -1, std::numeric_limits<std::int64_t>::min(),
                                   std::numeric_limits<std::uint64_t>::max(), 0.1, -0.0, 3.0, 1e300,
                                   5e-324, 1.0 / 3});
  config["bools"] = json::array({true, false});
  config["null"] = nullptr;
  config["nested"] = json::parse(R"({"a": {"b": [[], {}, [{"c": null}]]}})");
  c.plugins["io.berth.cri"] = PluginSection{.id = "io.berth.cri", .config = config, .line = 0};
  c.plugins["io.berth.empty"] = PluginSection{.id = "io.berth.empty"};
  c.runtimes_given = true;
  c.runtimes["runc"] = RuntimeEntry{.name = "runc", .plugin = "io.berth.runtime.runc"};
  c.runtimes["kata-qemu"] = RuntimeEntry{.name = "kata-qemu",
                                         .plugin = "io.berth.runtime.kata",
                                         .options = json::parse(R"({"x": ["1", 1, 1.0]})")};
  c.default_runtime = "kata-qemu";
  ExpectRoundTrip(c);

  // Types survive, not only values.
  const absl::StatusOr<Config> back = ParseConfig(c.ToYaml(), "rt.yaml");
  ASSERT_TRUE(back.ok()) << back.status();
  const json& numbers = back->plugins.at("io.berth.cri").config["numbers"];
  EXPECT_TRUE(numbers[6].is_number_float()) << numbers.dump();
  EXPECT_TRUE(numbers[2].is_number_integer()) << numbers.dump();
  EXPECT_EQ(back->plugins.at("io.berth.cri").config["s1"], "true");
  EXPECT_EQ(back->runtimes.at("kata-qemu").options["x"][0], "1");
}

// ---- Files --------------------------------------------------------------------------------

class LoadConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-config-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path dir_;
};

TEST_F(LoadConfigFileTest, MissingFileIsNotFoundNamingIt) {
  const std::filesystem::path file = dir_ / "nope.yaml";
  absl::StatusOr<Config> c = LoadConfigFile(file);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(c.status()).find(file.string()), std::string::npos) << c.status();
  // A missing parent directory as well.
  c = LoadConfigFile(dir_ / "no-dir" / "config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LoadConfigFileTest, DirectoryIsAClearError) {
  absl::StatusOr<Config> c = LoadConfigFile(dir_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(c.status()).find(dir_.string()), std::string::npos) << c.status();
  EXPECT_NE(Message(c.status()).find("is a directory"), std::string::npos) << c.status();
}

TEST_F(LoadConfigFileTest, UnreadableFileIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads every file";
  const std::filesystem::path file = dir_ / "secret.yaml";
  std::ofstream(file) << "root: /a\n";
  std::filesystem::permissions(file, std::filesystem::perms::none);
  absl::StatusOr<Config> c = LoadConfigFile(file);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(Message(c.status()).find(file.string()), std::string::npos) << c.status();
}

TEST_F(LoadConfigFileTest, ReadsAFileAndNamesItInErrors) {
  const std::filesystem::path file = dir_ / "config.yaml";
  std::ofstream(file) << kFullConfig;
  absl::StatusOr<Config> c = LoadConfigFile(file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->file, file.string());
  EXPECT_EQ(c->Where("runtimes.runc.plugin"), file.string() + ":21");
  EXPECT_TRUE(SameSettings(*c, MustParse(kFullConfig)));

  std::ofstream(file, std::ios::trunc) << "root: /a\nlog_level: loud\n";
  c = LoadConfigFile(file);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(Message(c.status()).rfind(file.string() + ":2: key \"log_level\"", 0), 0u)
      << c.status();
}

TEST_F(LoadConfigFileTest, EmptyFileIsTheDefaults) {
  const std::filesystem::path file = dir_ / "empty.yaml";
  std::ofstream(file).flush();
  absl::StatusOr<Config> c = LoadConfigFile(file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(SameSettings(*c, Config{}));
  EXPECT_FALSE(c->plugins_given);
}

// ---- Robustness ---------------------------------------------------------------------------

TEST(ConfigFuzzishTest, TruncatedAndGarbledInputsReturnStatuses) {
  const std::string base(kFullConfig);
  std::vector<std::string> variants;
  // Truncations.
  for (std::size_t n = 0; n < base.size(); n += base.size() / 20)
    variants.push_back(base.substr(0, n));
  // Garbling with YAML's special characters, deterministic.
  std::mt19937 rng(20240607);
  const std::string specials = ":-[]{}&*!|>'\"#%@`?,~\t\n \\\x01\xff";
  for (int i = 0; i < 40; ++i) {
    std::string v = base;
    const int edits = 1 + i % 4;
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = rng() % v.size();
      const char c = specials[rng() % specials.size()];
      switch (rng() % 3) {
        case 0:
          v[pos] = c;
          break;
        case 1:
          v.insert(v.begin() + static_cast<std::ptrdiff_t>(pos), c);
          break;
        default:
          v.erase(pos, 1 + rng() % 8);
          break;
      }
    }
    variants.push_back(v);
  }
  variants.push_back(std::string(300, '['));
  variants.push_back(std::string(300, '{'));
  variants.push_back("&a [*a]");
  variants.push_back("*undefined");
  variants.push_back(std::string("\0\0\0", 3));
  variants.push_back("\xef\xbb\xbfroot: /a\n");  // BOM
  variants.push_back("%YAML 1.2\n---\nroot: /a\n");
  variants.push_back("!!map {root: /a}");
  variants.push_back("plugins: {a.b.c: &x {<<: *x}}");
  variants.push_back(",ersion: 1\nroot: /srv/t: /berth\nlog_leve");
  ASSERT_GE(variants.size(), 50u);

  int ok = 0;
  for (const std::string& v : variants) {
    SCOPED_TRACE(v);
    absl::StatusOr<Config> c;
    EXPECT_NO_THROW(c = ParseConfig(v, "fuzz.yaml"));
    if (c.ok()) {
      ++ok;
      // Whatever is accepted must survive the round trip too.
      absl::StatusOr<Config> back = ParseConfig(c->ToYaml(), "fuzz-rt.yaml");
      ASSERT_TRUE(back.ok()) << back.status() << "\n" << c->ToYaml();
      EXPECT_TRUE(SameSettings(*c, *back));
    } else {
      EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
      EXPECT_EQ(Message(c.status()).rfind("fuzz.yaml", 0), 0u) << c.status();
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace berth::core
