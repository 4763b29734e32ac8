// SPDX-License-Identifier: Apache-2.0
// The built plugin (.so) through its C entry point and berth_network_v1 table, with a
// minimal host table: configuration keys, the attachment directory under the plugin's root,
// and attach/check/detach/gc over a fake CNI plugin.
#include <dlfcn.h>

#include <string>

#include "berth/plugin.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/plugin_loader.h"
#include "nlohmann/json.hpp"
#include "plugins/cni/tests/test_support.h"

namespace berth::cni {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace ::berth::cni::testing;  // NOLINT(build/namespaces)

class PluginTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plugin_.Load(BERTH_CNI_PLUGIN, "io.berth.cni", BERTH_KIND_NETWORK);
    desc_ = plugin_.desc();
    ctx_.root_dir = dir_ / "root";
  }
  // Initialises the plugin with `config`; the code, and the message in *err.
  int32_t Init(const std::string& config, std::string* err) {
    int32_t code = plugin_.Init(config, BERTH_IFACE_NETWORK_V1, err);
    table_ = plugin_.table();
    instance_ = plugin_.instance();
    return code;
  }

  TempDir dir_;
  ::berth::testing::LoadedPlugin<berth_network_v1> plugin_;
  ::berth::testing::FakeHostCtx& ctx_ = plugin_.ctx;
  const berth_plugin_descriptor* desc_ = nullptr;
  const berth_network_v1* table_ = nullptr;
  void* instance_ = nullptr;
};

TEST_F(PluginTableTest, DefaultConfigurationNamesEveryKey) {
  json defaults = json::parse(desc_->default_config_json);
  EXPECT_EQ(defaults, json::parse(R"({"conf_dir":"/etc/cni/net.d",
      "bin_dirs":["/opt/cni/bin","/usr/lib/cni"],"plugin_timeout":"2m"})"));
}

TEST_F(PluginTableTest, RefusesUnknownKeysAndBadValues) {
  std::string err;
  EXPECT_EQ(Init(R"({"conf_dir":"/etc/cni/net.d","confdir":"/x"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("unknown key \"confdir\" for plugin io.berth.cni (known keys: "
                             "conf_dir, bin_dirs, plugin_timeout)"));
  EXPECT_EQ(Init(R"({"plugin_timeout":"soon"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("config.yaml:9 (plugin_timeout): key \"plugin_timeout\": \"soon\" "
                             "is not a positive duration"));
  EXPECT_EQ(Init(R"({"plugin_timeout":"0s"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_EQ(Init(R"({"bin_dirs":["relative"]})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("expected a non-empty list of absolute paths"));
  EXPECT_EQ(Init(R"({"conf_dir":"net.d"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("key \"conf_dir\": expected an absolute path"));
}

TEST_F(PluginTableTest, AttachCheckDetachGcThroughTheTable) {
  const std::string bin = dir_ / "bin", ctl = dir_ / "ctl", conf = dir_ / "net.d";
  std::filesystem::create_directories(ctl);
  InstallFakePlugin(bin, ctl, "alpha");
  std::string err;
  ASSERT_EQ(
      Init(R"({"conf_dir":")" + conf + R"(","bin_dirs":[")" + bin + R"("],"plugin_timeout":"10s"})",
           &err),
      BERTH_OK)
      << err;
  ASSERT_NE(table_, nullptr);
  ASSERT_GE(table_->struct_size, sizeof(berth_network_v1));
  EXPECT_THAT(ctx_.log, HasSubstr("plugin timeout 10s"));

  sdk::StringSink status, serr;
  ASSERT_EQ(table_->status(instance_, status.get(), serr.get()), BERTH_OK);
  json s = json::parse(status.str());
  EXPECT_EQ(s["ready"], false);
  EXPECT_EQ(s["reason"], "NetworkPluginNotReady");
  EXPECT_THAT(s["message"].get<std::string>(),
              HasSubstr("no CNI network configuration in " + conf));

  WriteTextFile(conf + "/10.conflist",
                R"({"cniVersion":"1.0.0","name":"tbl","plugins":[{"type":"alpha"}]})");
  WriteTextFile(dir_ / "netns", "");
  const std::string request =
      R"({"sandbox_id":"sb1","netns":")" + (dir_ / "netns") +
      R"(","pod_name":"p",)"
      R"("pod_namespace":"ns","pod_uid":"u","port_mappings":[],"annotations":{},"pod_cidr":""})";
  sdk::StringSink result, aerr;
  ASSERT_EQ(table_->attach(instance_, sdk::Str(request), result.get(), aerr.get()), BERTH_OK)
      << aerr.str();
  json r = json::parse(result.str());
  EXPECT_EQ(r["ips"], json::array({"10.0.0.2"}));
  EXPECT_EQ(r["network"], "tbl");
  EXPECT_TRUE(Exists(dir_ / "root/attachments/sb1.json"));

  sdk::StringSink cerr;
  EXPECT_EQ(table_->check(instance_, sdk::Str(request), cerr.get()), BERTH_OK) << cerr.str();
  sdk::StringSink derr;
  EXPECT_EQ(table_->detach(instance_, sdk::Str(request), derr.get()), BERTH_OK) << derr.str();
  EXPECT_FALSE(Exists(dir_ / "root/attachments/sb1.json"));
  sdk::StringSink nerr;
  EXPECT_EQ(table_->check(instance_, sdk::Str(request), nerr.get()), BERTH_NOT_FOUND);
  EXPECT_THAT(nerr.str(), HasSubstr("not attached"));
  sdk::StringSink gerr;
  EXPECT_EQ(table_->gc(instance_, sdk::Str("[]"), gerr.get()), BERTH_OK) << gerr.str();

  // An attach without usable configuration: FAILED_PRECONDITION.
  std::filesystem::remove(conf + "/10.conflist");
  sdk::StringSink result2, ferr;
  EXPECT_EQ(table_->attach(instance_, sdk::Str(request), result2.get(), ferr.get()),
            BERTH_FAILED_PRECONDITION);
  EXPECT_THAT(ferr.str(), HasSubstr("no CNI network configuration in " + conf));
}

// runtimes: <handler>: cni_conf_dir, from the host's "runtimes" section: status() reports
// every directory (its own readiness first, for the SDK's loose parser) and attach takes the
// request's conf_dir.
TEST_F(PluginTableTest, HandlerConfigurationDirectories) {
  const std::string bin = dir_ / "bin", ctl = dir_ / "ctl", conf = dir_ / "net.d",
                    kata = dir_ / "kata.d";
  std::filesystem::create_directories(ctl);
  std::filesystem::create_directories(kata);
  InstallFakePlugin(bin, ctl, "alpha");
  WriteTextFile(kata + "/10.conflist",
                R"({"cniVersion":"1.0.0","name":"kata-net","plugins":[{"type":"alpha"}]})");
  ctx_.runtimes_json = R"({"default_runtime":"runc","handlers":{
      "runc":{"plugin":"io.berth.runtime.runc","options":{}},
      "kata":{"plugin":"io.berth.runtime.kata","options":{},"cni_conf_dir":")" + kata + R"("}}})";
  std::string err;
  ASSERT_EQ(Init(R"({"conf_dir":")" + conf + R"(","bin_dirs":[")" + bin + R"("]})", &err),
            BERTH_OK)
      << err;
  EXPECT_THAT(ctx_.log, HasSubstr("(runtime handlers of their own: kata: " + kata + ")"));

  sdk::StringSink status, serr;
  ASSERT_EQ(table_->status(instance_, status.get(), serr.get()), BERTH_OK);
  json s = json::parse(status.str());
  EXPECT_EQ(s["ready"], false);  // conf_dir has nothing
  EXPECT_THAT(s["message"].get<std::string>(), HasSubstr("no CNI network configuration in " + conf));
  EXPECT_EQ(s["conf_dirs"][conf]["network_ready"], false);
  EXPECT_EQ(s["conf_dirs"][kata], json::parse(R"({"network_ready":true,"reason":"","message":""})"));
  sdk::Readiness loose = sdk::QueryStatus(
      sdk::Iface<berth_network_v1>{"io.berth.cni", table_, instance_});
  EXPECT_FALSE(loose.ready);
  EXPECT_THAT(loose.message, HasSubstr("no CNI network configuration in " + conf));

  WriteTextFile(dir_ / "netns", "");
  const std::string request = R"({"sandbox_id":"sb1","netns":")" + (dir_ / "netns") +
                              R"(","conf_dir":")" + kata + R"("})";
  sdk::StringSink result, aerr;
  ASSERT_EQ(table_->attach(instance_, sdk::Str(request), result.get(), aerr.get()), BERTH_OK)
      << aerr.str();
  EXPECT_EQ(json::parse(result.str())["network"], "kata-net");
  sdk::StringSink derr;
  EXPECT_EQ(table_->detach(instance_, sdk::Str(request), derr.get()), BERTH_OK) << derr.str();
}

// The core refuses a relative cni_conf_dir first; the plugin does not trust that.

TEST_F(PluginTableTest, RefusesARelativeHandlerDirectory) {
  ctx_.runtimes_json =
      R"({"handlers":{"kata":{"plugin":"a.b","options":{},"cni_conf_dir":"kata.d"}}})";
  std::string err;
  EXPECT_EQ(Init(R"({"conf_dir":"/etc/cni/net.d"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("config.yaml:9 (/runtimes.kata.cni_conf_dir): key "
                             "\"runtimes.kata.cni_conf_dir\": expected an absolute path, got "
                             "\"kata.d\""));
}

}  // namespace
}  // namespace berth::cni
