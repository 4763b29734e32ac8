// SPDX-License-Identifier: Apache-2.0
//
// Proves that berth's own CRI v1 schema (proto/cri/v1/api.proto) is wire-identical to the
// upstream Kubernetes schema. Both files are parsed at run time with libprotoc and compared
// structurally: services, methods, messages (recursively), fields, oneofs, maps and enums. The
// only tolerated difference is the documented renaming of the values of enum runtime.v1.Signal
// from `SIG<NAME>` to `SIGNAL_<NAME>` (which avoids clashes with <signal.h> macros in C++).

#include <google/protobuf/compiler/importer.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#ifndef BERTH_CRI_PROTO
#define BERTH_CRI_PROTO "/work/main/proto/cri/v1/api.proto"
#endif
#ifndef BERTH_UPSTREAM_CRI_PROTO
#define BERTH_UPSTREAM_CRI_PROTO "/work/shared/specs/cri/api.proto"
#endif

namespace berth::cri {
namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;

constexpr std::string_view kSignalEnum = "runtime.v1.Signal";
constexpr std::string_view kUpstreamSignalPrefix = "SIG";
constexpr std::string_view kOurSignalPrefix = "SIGNAL_";

// ----------------------------------------------------------------------------------------------
// Helpers: files, temp dirs, parsing.

std::optional<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out.flush());
}

// Removes `[debug_redact = true]` field options, which protoc 3.21 does not know. They have no
// effect on the wire format.
std::string StripDebugRedact(const std::string& text) {
  static const std::regex kDebugRedact(R"(\s*\[debug_redact\s*=\s*true\])");
  return std::regex_replace(text, kDebugRedact, "");
}

// A directory created with mkdtemp(3) and removed recursively on destruction.
class TempDir {
 public:
  static std::unique_ptr<TempDir> Create(std::string* error) {
    const char* tmpdir = getenv("TMPDIR");
    fs::path base = (tmpdir != nullptr && *tmpdir != '\0') ? fs::path(tmpdir) : fs::path("/tmp");
    std::string pattern = (base / "berth_cri_proto_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      *error = "mkdtemp(" + pattern + ") failed: " + std::strerror(errno);
      return nullptr;
    }
    return std::unique_ptr<TempDir>(new TempDir(fs::path(pattern)));
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }

  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path path) : path_(std::move(path)) {}

  fs::path path_;
};

class CollectingErrorCollector : public pb::compiler::MultiFileErrorCollector {
 public:
  void AddError(const std::string& filename, int line, int column,
                const std::string& message) override {
    errors_.push_back(Format(filename, line, column, message));
  }
  void AddWarning(const std::string& filename, int line, int column,
                  const std::string& message) override {
    warnings_.push_back(Format(filename, line, column, message));
  }

  const std::vector<std::string>& errors() const { return errors_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  static std::string Format(const std::string& filename, int line, int column,
                            const std::string& message) {
    // libprotoc reports zero-based positions.
    return filename + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " +
           message;
  }

  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
};

// A parsed .proto file together with everything its descriptors point into.
struct ParsedProto {
  std::unique_ptr<pb::compiler::DiskSourceTree> source_tree;
  std::unique_ptr<CollectingErrorCollector> errors;
  std::unique_ptr<pb::compiler::Importer> importer;  // Declared last: destroyed first.
  const pb::FileDescriptor* file = nullptr;
};

// Writes `text` to `<dir>/api.proto` and parses it with its own Importer (and so its own
// descriptor pool: both schemas define package runtime.v1). On failure, `file` is null and
// `*error` describes why.
ParsedProto ParseProtoText(const fs::path& dir, const std::string& text, std::string* error) {
  ParsedProto parsed;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    *error = "cannot create " + dir.string() + ": " + ec.message();
    return parsed;
  }
  if (!WriteFile(dir / "api.proto", text)) {
    *error = "cannot write " + (dir / "api.proto").string();
    return parsed;
  }
  parsed.source_tree = std::make_unique<pb::compiler::DiskSourceTree>();
  parsed.source_tree->MapPath("", dir.string());
  parsed.errors = std::make_unique<CollectingErrorCollector>();
  parsed.importer =
      std::make_unique<pb::compiler::Importer>(parsed.source_tree.get(), parsed.errors.get());
  parsed.file = parsed.importer->Import("api.proto");
  if (parsed.file == nullptr) {
    *error = "protoc failed to parse " + (dir / "api.proto").string() + ":";
    for (const std::string& e : parsed.errors->errors()) *error += "\n  " + e;
  }
  return parsed;
}

// ----------------------------------------------------------------------------------------------
// The comparator.

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string BoolStr(bool b) { return b ? "true" : "false"; }

std::string LabelName(pb::FieldDescriptor::Label label) {
  switch (label) {
    case pb::FieldDescriptor::LABEL_OPTIONAL:
      return "optional";
    case pb::FieldDescriptor::LABEL_REQUIRED:
      return "required";
    case pb::FieldDescriptor::LABEL_REPEATED:
      return "repeated";
  }
  return "label#" + std::to_string(static_cast<int>(label));
}

// Full name of the message or enum a field refers to; empty for scalar fields.
std::string FieldTypeName(const pb::FieldDescriptor& field) {
  if (field.message_type() != nullptr) return field.message_type()->full_name();
  if (field.enum_type() != nullptr) return field.enum_type()->full_name();
  return "";
}

std::string OneofName(const pb::OneofDescriptor* oneof) {
  if (oneof == nullptr) return "<none>";
  return oneof->name() + (oneof->is_synthetic() ? " (synthetic)" : "");
}

// The name our schema must use for an upstream enum value: identical, except that in enum
// runtime.v1.Signal `SIG<NAME>` becomes `SIGNAL_<NAME>` (RUNTIME_DEFAULT stays as it is).
std::string ExpectedValueName(const pb::EnumDescriptor& upstream_enum,
                              const pb::EnumValueDescriptor& upstream_value) {
  const std::string& name = upstream_value.name();
  if (upstream_enum.full_name() == kSignalEnum && name.starts_with(kUpstreamSignalPrefix)) {
    return std::string(kOurSignalPrefix) + name.substr(kUpstreamSignalPrefix.size());
  }
  return name;
}

// Collects human-readable differences between the upstream schema and ours. Every difference
// names the exact element (fully qualified) it concerns.
class SchemaComparator {
 public:
  std::vector<std::string> Compare(const pb::FileDescriptor& upstream,
                                   const pb::FileDescriptor& ours) {
    diffs_.clear();
    CompareFile(upstream, ours);
    return std::move(diffs_);
  }

 private:
  template <typename T>
  void Check(std::string_view what, const T& upstream, const T& ours) {
    if (upstream == ours) return;
    std::ostringstream msg;
    msg << what << " differs: upstream " << upstream << ", ours " << ours;
    diffs_.push_back(msg.str());
  }

  void Missing(std::string_view where, std::string_view kind, std::string_view name) {
    diffs_.push_back(std::string(where) + ": " + std::string(kind) + " " + Quote(name) +
                     " is missing in ours");
  }

  void Extra(std::string_view where, std::string_view kind, std::string_view name) {
    diffs_.push_back(std::string(where) + ": extra " + std::string(kind) + " " + Quote(name) +
                     " in ours (not in upstream)");
  }

  void CompareFile(const pb::FileDescriptor& up, const pb::FileDescriptor& ours) {
    const std::string where = "file";
    Check(where + " package", up.package(), ours.package());
    Check(where + " syntax", std::string(pb::FileDescriptor::SyntaxName(up.syntax())),
          std::string(pb::FileDescriptor::SyntaxName(ours.syntax())));
    std::set<std::string> up_deps;
    std::set<std::string> our_deps;
    for (int i = 0; i < up.dependency_count(); ++i) up_deps.insert(up.dependency(i)->name());
    for (int i = 0; i < ours.dependency_count(); ++i) our_deps.insert(ours.dependency(i)->name());
    for (const std::string& dep : up_deps) {
      if (!our_deps.contains(dep)) Missing(where, "import", dep);
    }
    for (const std::string& dep : our_deps) {
      if (!up_deps.contains(dep)) Extra(where, "import", dep);
    }
    Check(where + " extension count", up.extension_count(), ours.extension_count());

    for (int i = 0; i < up.service_count(); ++i) {
      const pb::ServiceDescriptor& s = *up.service(i);
      const pb::ServiceDescriptor* o = ours.FindServiceByName(s.name());
      if (o == nullptr) {
        Missing(where, "service", s.full_name());
      } else {
        CompareService(s, *o);
      }
    }
    for (int i = 0; i < ours.service_count(); ++i) {
      if (up.FindServiceByName(ours.service(i)->name()) == nullptr) {
        Extra(where, "service", ours.service(i)->full_name());
      }
    }

    for (int i = 0; i < up.message_type_count(); ++i) {
      const pb::Descriptor& m = *up.message_type(i);
      const pb::Descriptor* o = ours.FindMessageTypeByName(m.name());
      if (o == nullptr) {
        Missing(where, "message", m.full_name());
      } else {
        CompareMessage(m, *o);
      }
    }
    for (int i = 0; i < ours.message_type_count(); ++i) {
      if (up.FindMessageTypeByName(ours.message_type(i)->name()) == nullptr) {
        Extra(where, "message", ours.message_type(i)->full_name());
      }
    }

    for (int i = 0; i < up.enum_type_count(); ++i) {
      const pb::EnumDescriptor& e = *up.enum_type(i);
      const pb::EnumDescriptor* o = ours.FindEnumTypeByName(e.name());
      if (o == nullptr) {
        Missing(where, "enum", e.full_name());
      } else {
        CompareEnum(e, *o);
      }
    }
    for (int i = 0; i < ours.enum_type_count(); ++i) {
      if (up.FindEnumTypeByName(ours.enum_type(i)->name()) == nullptr) {
        Extra(where, "enum", ours.enum_type(i)->full_name());
      }
    }
  }

  void CompareService(const pb::ServiceDescriptor& up, const pb::ServiceDescriptor& ours) {
    const std::string where = "service " + up.full_name();
    for (int i = 0; i < up.method_count(); ++i) {
      const pb::MethodDescriptor& m = *up.method(i);
      const pb::MethodDescriptor* o = ours.FindMethodByName(m.name());
      if (o == nullptr) {
        Missing(where, "rpc", m.name());
        continue;
      }
      const std::string rpc = "rpc " + m.full_name();
      Check(rpc + " input type", m.input_type()->full_name(), o->input_type()->full_name());
      Check(rpc + " output type", m.output_type()->full_name(), o->output_type()->full_name());
      Check(rpc + " client_streaming", BoolStr(m.client_streaming()),
            BoolStr(o->client_streaming()));
      Check(rpc + " server_streaming", BoolStr(m.server_streaming()),
            BoolStr(o->server_streaming()));
    }
    for (int i = 0; i < ours.method_count(); ++i) {
      if (up.FindMethodByName(ours.method(i)->name()) == nullptr) {
        Extra(where, "rpc", ours.method(i)->name());
      }
    }
  }

  void CompareField(const pb::FieldDescriptor& up, const pb::FieldDescriptor& ours) {
    const std::string where = "field " + up.full_name();
    Check(where + " number", up.number(), ours.number());
    Check(where + " type", std::string(pb::FieldDescriptor::TypeName(up.type())),
          std::string(pb::FieldDescriptor::TypeName(ours.type())));
    Check(where + " type_name", FieldTypeName(up), FieldTypeName(ours));
    Check(where + " label", LabelName(up.label()), LabelName(ours.label()));
    Check(where + " map", BoolStr(up.is_map()), BoolStr(ours.is_map()));
    Check(where + " proto3 optional", BoolStr(up.has_optional_keyword()),
          BoolStr(ours.has_optional_keyword()));
    Check(where + " oneof", OneofName(up.containing_oneof()), OneofName(ours.containing_oneof()));
    Check(where + " packed", BoolStr(up.is_packed()), BoolStr(ours.is_packed()));
    Check(where + " json_name", up.json_name(), ours.json_name());
    Check(where + " deprecated", BoolStr(up.options().deprecated()),
          BoolStr(ours.options().deprecated()));
  }

  void CompareMessage(const pb::Descriptor& up, const pb::Descriptor& ours) {
    const std::string where = "message " + up.full_name();
    Check(where + " map_entry", BoolStr(up.options().map_entry()),
          BoolStr(ours.options().map_entry()));

    for (int i = 0; i < up.field_count(); ++i) {
      const pb::FieldDescriptor& f = *up.field(i);
      const pb::FieldDescriptor* o = ours.FindFieldByName(f.name());
      if (o == nullptr) {
        Missing(where, "field", f.name() + " = " + std::to_string(f.number()));
      } else {
        CompareField(f, *o);
      }
    }
    for (int i = 0; i < ours.field_count(); ++i) {
      const pb::FieldDescriptor& o = *ours.field(i);
      if (up.FindFieldByName(o.name()) == nullptr) {
        Extra(where, "field", o.name() + " = " + std::to_string(o.number()));
      }
    }

    for (int i = 0; i < up.oneof_decl_count(); ++i) {
      const pb::OneofDescriptor& u = *up.oneof_decl(i);
      const pb::OneofDescriptor* o = ours.FindOneofByName(u.name());
      if (o == nullptr) {
        Missing(where, "oneof", u.name());
        continue;
      }
      const std::string oneof = "oneof " + u.full_name();
      Check(oneof + " synthetic", BoolStr(u.is_synthetic()), BoolStr(o->is_synthetic()));
      std::set<std::string> up_members;
      std::set<std::string> our_members;
      for (int j = 0; j < u.field_count(); ++j) up_members.insert(u.field(j)->name());
      for (int j = 0; j < o->field_count(); ++j) our_members.insert(o->field(j)->name());
      for (const std::string& m : up_members) {
        if (!our_members.contains(m)) Missing(oneof, "member", m);
      }
      for (const std::string& m : our_members) {
        if (!up_members.contains(m)) Extra(oneof, "member", m);
      }
    }
    for (int i = 0; i < ours.oneof_decl_count(); ++i) {
      if (up.FindOneofByName(ours.oneof_decl(i)->name()) == nullptr) {
        Extra(where, "oneof", ours.oneof_decl(i)->name());
      }
    }

    for (int i = 0; i < up.nested_type_count(); ++i) {
      const pb::Descriptor& n = *up.nested_type(i);
      const pb::Descriptor* o = ours.FindNestedTypeByName(n.name());
      if (o == nullptr) {
        Missing(where, "nested message", n.name());
      } else {
        CompareMessage(n, *o);
      }
    }
    for (int i = 0; i < ours.nested_type_count(); ++i) {
      if (up.FindNestedTypeByName(ours.nested_type(i)->name()) == nullptr) {
        Extra(where, "nested message", ours.nested_type(i)->name());
      }
    }

    for (int i = 0; i < up.enum_type_count(); ++i) {
      const pb::EnumDescriptor& e = *up.enum_type(i);
      const pb::EnumDescriptor* o = ours.FindEnumTypeByName(e.name());
      if (o == nullptr) {
        Missing(where, "nested enum", e.name());
      } else {
        CompareEnum(e, *o);
      }
    }
    for (int i = 0; i < ours.enum_type_count(); ++i) {
      if (up.FindEnumTypeByName(ours.enum_type(i)->name()) == nullptr) {
        Extra(where, "nested enum", ours.enum_type(i)->name());
      }
    }

    CompareReserved(where, up, ours);
    Check(where + " extension range count", up.extension_range_count(),
          ours.extension_range_count());
    Check(where + " extension count", up.extension_count(), ours.extension_count());
  }

  void CompareEnum(const pb::EnumDescriptor& up, const pb::EnumDescriptor& ours) {
    const std::string where = "enum " + up.full_name();
    Check(where + " allow_alias", BoolStr(up.options().allow_alias()),
          BoolStr(ours.options().allow_alias()));

    std::set<std::string> expected_names;
    for (int i = 0; i < up.value_count(); ++i) {
      const pb::EnumValueDescriptor& v = *up.value(i);
      const std::string expected = ExpectedValueName(up, v);
      expected_names.insert(expected);
      const pb::EnumValueDescriptor* o = ours.FindValueByName(expected);
      if (o == nullptr) {
        std::string name = expected;
        if (expected != v.name()) name += " (upstream " + v.name() + ")";
        Missing(where, "value", name + " = " + std::to_string(v.number()));
        continue;
      }
      Check("enum value " + up.full_name() + "." + expected + " number", v.number(), o->number());
    }
    for (int i = 0; i < ours.value_count(); ++i) {
      const pb::EnumValueDescriptor& o = *ours.value(i);
      if (!expected_names.contains(o.name())) {
        Extra(where, "value", o.name() + " = " + std::to_string(o.number()));
      }
    }

    CompareReserved(where, up, ours);
  }

  // Reserved numbers and names (Descriptor and EnumDescriptor share this interface).
  template <typename D>
  void CompareReserved(const std::string& where, const D& up, const D& ours) {
    auto ranges = [](const D& d) {
      std::set<std::pair<int, int>> out;
      for (int i = 0; i < d.reserved_range_count(); ++i) {
        out.emplace(d.reserved_range(i)->start, d.reserved_range(i)->end);
      }
      return out;
    };
    auto names = [](const D& d) {
      std::set<std::string> out;
      for (int i = 0; i < d.reserved_name_count(); ++i) out.insert(d.reserved_name(i));
      return out;
    };
    auto range_str = [](const std::pair<int, int>& r) {
      return std::to_string(r.first) + ".." + std::to_string(r.second);
    };
    const auto up_ranges = ranges(up);
    const auto our_ranges = ranges(ours);
    for (const auto& r : up_ranges) {
      if (!our_ranges.contains(r)) Missing(where, "reserved range", range_str(r));
    }
    for (const auto& r : our_ranges) {
      if (!up_ranges.contains(r)) Extra(where, "reserved range", range_str(r));
    }
    const auto up_names = names(up);
    const auto our_names = names(ours);
    for (const auto& n : up_names) {
      if (!our_names.contains(n)) Missing(where, "reserved name", n);
    }
    for (const auto& n : our_names) {
      if (!up_names.contains(n)) Extra(where, "reserved name", n);
    }
  }

  std::vector<std::string> diffs_;
};

std::vector<std::string> CompareSchemas(const pb::FileDescriptor& upstream,
                                        const pb::FileDescriptor& ours) {
  return SchemaComparator().Compare(upstream, ours);
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += "  " + line + "\n";
  return out;
}

// Replaces the single occurrence of `from` in `text`; nullopt unless it occurs exactly once.
std::optional<std::string> ReplaceOnce(const std::string& text, const std::string& from,
                                       const std::string& to) {
  const size_t pos = text.find(from);
  if (pos == std::string::npos || text.find(from, pos + 1) != std::string::npos) {
    return std::nullopt;
  }
  std::string out = text;
  out.replace(pos, from.size(), to);
  return out;
}

// ----------------------------------------------------------------------------------------------
// Tests.

TEST(CriProtoHelpersTest, StripsDebugRedactOptions) {
  EXPECT_EQ(StripDebugRedact("  string password = 2 [debug_redact = true];\n"),
            "  string password = 2;\n");
  EXPECT_EQ(StripDebugRedact("string auth = 3 [debug_redact=true];"), "string auth = 3;");
  EXPECT_EQ(StripDebugRedact("string x = 1 [deprecated = true];"),
            "string x = 1 [deprecated = true];");
}

class CriProtoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path upstream_path = BERTH_UPSTREAM_CRI_PROTO;
    const fs::path our_path = BERTH_CRI_PROTO;
    if (!fs::exists(upstream_path)) {
      GTEST_SKIP() << "upstream CRI schema not available at " << upstream_path
                   << "; cannot verify wire compatibility";
    }
    std::optional<std::string> upstream_text = ReadFile(upstream_path);
    ASSERT_TRUE(upstream_text.has_value()) << "cannot read " << upstream_path;
    std::optional<std::string> our_text = ReadFile(our_path);
    ASSERT_TRUE(our_text.has_value()) << "cannot read our CRI schema " << our_path;
    our_text_ = std::move(*our_text);

    std::string error;
    temp_dir_ = TempDir::Create(&error);
    ASSERT_NE(temp_dir_, nullptr) << error;

    upstream_ =
        ParseProtoText(temp_dir_->path() / "upstream", StripDebugRedact(*upstream_text), &error);
    ASSERT_NE(upstream_.file, nullptr) << error;
  }

  // Parses a (possibly mutated) copy of our schema. Each call uses a fresh directory.
  ParsedProto ParseOurs(const std::string& text) {
    std::string error;
    ParsedProto parsed =
        ParseProtoText(temp_dir_->path() / ("ours" + std::to_string(parse_count_++)), text, &error);
    EXPECT_NE(parsed.file, nullptr) << error;
    return parsed;
  }

  std::string our_text_;
  std::unique_ptr<TempDir> temp_dir_;
  ParsedProto upstream_;
  int parse_count_ = 0;
};

TEST_F(CriProtoTest, MatchesUpstreamWireContract) {
  ParsedProto ours = ParseOurs(our_text_);
  ASSERT_NE(ours.file, nullptr);

  const std::vector<std::string> diffs = CompareSchemas(*upstream_.file, *ours.file);
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " difference(s) between upstream "
                             << BERTH_UPSTREAM_CRI_PROTO << " and " << BERTH_CRI_PROTO << ":\n"
                             << JoinLines(diffs);

  // Guard against vacuous success (e.g. an empty upstream file).
  EXPECT_EQ(upstream_.file->service_count(), 2);
  EXPECT_NE(upstream_.file->FindServiceByName("RuntimeService"), nullptr);
  EXPECT_NE(upstream_.file->FindServiceByName("ImageService"), nullptr);
  EXPECT_GT(upstream_.file->message_type_count(), 100);
}

TEST_F(CriProtoTest, RenamesEverySignalValue) {
  ParsedProto ours = ParseOurs(our_text_);
  ASSERT_NE(ours.file, nullptr);
  const pb::EnumDescriptor* up = upstream_.file->FindEnumTypeByName("Signal");
  const pb::EnumDescriptor* our = ours.file->FindEnumTypeByName("Signal");
  ASSERT_NE(up, nullptr);
  ASSERT_NE(our, nullptr);
  ASSERT_EQ(up->value_count(), our->value_count());

  const pb::EnumValueDescriptor* runtime_default = our->FindValueByName("RUNTIME_DEFAULT");
  ASSERT_NE(runtime_default, nullptr);
  EXPECT_EQ(runtime_default->number(), 0);
  for (int i = 0; i < up->value_count(); ++i) {
    const pb::EnumValueDescriptor& v = *up->value(i);
    if (v.name() == "RUNTIME_DEFAULT") continue;
    ASSERT_TRUE(v.name().starts_with(kUpstreamSignalPrefix)) << v.name();
    const std::string expected = "SIGNAL_" + v.name().substr(3);
    const pb::EnumValueDescriptor* o = our->FindValueByName(expected);
    ASSERT_NE(o, nullptr) << "runtime.v1.Signal." << v.name() << " must be named " << expected;
    EXPECT_EQ(o->number(), v.number()) << expected;
  }
  for (int i = 0; i < our->value_count(); ++i) {
    const std::string& name = our->value(i)->name();
    EXPECT_TRUE(name == "RUNTIME_DEFAULT" || name.starts_with(kOurSignalPrefix))
        << "unexpected runtime.v1.Signal value " << name;
  }
  // Spot checks of the naming scheme.
  ASSERT_NE(our->FindValueByName("SIGNAL_KILL"), nullptr);
  EXPECT_EQ(our->FindValueByName("SIGNAL_KILL")->number(), 13);
  ASSERT_NE(our->FindValueByName("SIGNAL_RTMINPLUS1"), nullptr);
  EXPECT_EQ(our->FindValueByName("SIGNAL_RTMINPLUS1")->number(), 36);
}

// Negative self-check: a single changed field number must be reported, naming the field.
TEST_F(CriProtoTest, ComparatorReportsChangedFieldNumber) {
  std::optional<std::string> mutated =
      ReplaceOnce(our_text_, "message VersionRequest {\n  string version = 1;\n}",
                  "message VersionRequest {\n  string version = 7;\n}");
  ASSERT_TRUE(mutated.has_value()) << "mutation anchor not found in " << BERTH_CRI_PROTO;
  ParsedProto ours = ParseOurs(*mutated);
  ASSERT_NE(ours.file, nullptr);

  const std::vector<std::string> diffs = CompareSchemas(*upstream_.file, *ours.file);
  ASSERT_EQ(diffs.size(), 1u) << JoinLines(diffs);
  EXPECT_EQ(diffs[0], "field runtime.v1.VersionRequest.version number differs: upstream 1, ours 7");
}

struct Mutation {
  std::string description;
  std::string from;
  std::string to;
  std::string expected_diff;  // Must be a substring of one reported difference.
};

// Negative self-check: each kind of contract change is detected and attributed precisely.
TEST_F(CriProtoTest, ComparatorReportsOtherMutations) {
  const std::vector<Mutation> mutations = {
      {"Signal value without the SIGNAL_ prefix", "  SIGNAL_KILL = 13;", "  SIGKILL = 13;",
       "enum runtime.v1.Signal: extra value 'SIGKILL = 13' in ours"},
      {"Signal value without the SIGNAL_ prefix (missing side)", "  SIGNAL_KILL = 13;",
       "  SIGKILL = 13;", "enum runtime.v1.Signal: value 'SIGNAL_KILL (upstream SIGKILL) = 13'"},
      {"changed enum number", "  CONTAINER_EXITED = 2;", "  CONTAINER_EXITED = 7;",
       "enum value runtime.v1.ContainerState.CONTAINER_EXITED number differs: upstream 2, ours 7"},
      {"dropped server streaming", "returns (stream StreamImagesResponse)",
       "returns (StreamImagesResponse)",
       "rpc runtime.v1.ImageService.StreamImages server_streaming differs"},
      {"removed rpc", "  rpc RemoveImage(RemoveImageRequest) returns (RemoveImageResponse) {}\n",
       "", "service runtime.v1.ImageService: rpc 'RemoveImage' is missing in ours"},
      {"added rpc", "  rpc RemoveImage(RemoveImageRequest) returns (RemoveImageResponse) {}\n",
       "  rpc RemoveImage(RemoveImageRequest) returns (RemoveImageResponse) {}\n"
       "  rpc RemoveImage2(RemoveImageRequest) returns (RemoveImageResponse) {}\n",
       "service runtime.v1.ImageService: extra rpc 'RemoveImage2' in ours"},
      {"changed request type", "  ContainerConfig config = 2;", "  PodSandboxConfig config = 2;",
       "field runtime.v1.CreateContainerRequest.config type_name differs: "
       "upstream runtime.v1.ContainerConfig, ours runtime.v1.PodSandboxConfig"},
      {"changed scalar type", "  string password = 2;", "  bytes password = 2;",
       "field runtime.v1.AuthConfig.password type differs: upstream string, ours bytes"},
      {"dropped repeated",
       "message ExecSyncRequest {\n  string container_id = 1;\n  repeated string cmd = 2;",
       "message ExecSyncRequest {\n  string container_id = 1;\n  string cmd = 2;",
       "field runtime.v1.ExecSyncRequest.cmd label differs: upstream repeated, ours optional"},
      {"changed map value type", "  map<string, string> sysctls = 3;",
       "  map<string, bytes> sysctls = 3;", "SysctlsEntry.value type differs"},
      {"added field", "message VersionRequest {\n", "message VersionRequest {\n  int32 x = 2;\n",
       "message runtime.v1.VersionRequest: extra field 'x = 2' in ours"},
      {"wrapped in oneof", "message VersionRequest {\n  string version = 1;\n}",
       "message VersionRequest {\n  oneof v {\n    string version = 1;\n  }\n}",
       "field runtime.v1.VersionRequest.version oneof differs: upstream <none>, ours v"},
      {"proto3 optional", "message VersionRequest {\n  string version = 1;\n}",
       "message VersionRequest {\n  optional string version = 1;\n}",
       "field runtime.v1.VersionRequest.version proto3 optional differs"},
      {"renamed field", "message VersionRequest {\n  string version = 1;\n}",
       "message VersionRequest {\n  string ver = 1;\n}",
       "message runtime.v1.VersionRequest: field 'version = 1' is missing in ours"},
  };

  for (const Mutation& m : mutations) {
    SCOPED_TRACE(m.description);
    std::optional<std::string> mutated = ReplaceOnce(our_text_, m.from, m.to);
    ASSERT_TRUE(mutated.has_value()) << "mutation anchor not found exactly once: " << m.from;
    ParsedProto ours = ParseOurs(*mutated);
    ASSERT_NE(ours.file, nullptr);
    const std::vector<std::string> diffs = CompareSchemas(*upstream_.file, *ours.file);
    const bool found = std::any_of(diffs.begin(), diffs.end(), [&](const std::string& d) {
      return d.find(m.expected_diff) != std::string::npos;
    });
    EXPECT_TRUE(found) << "expected a difference containing \"" << m.expected_diff << "\", got "
                       << diffs.size() << ":\n"
                       << JoinLines(diffs);
  }
}

}  // namespace
}  // namespace berth::cri
