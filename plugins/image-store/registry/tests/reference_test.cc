// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/reference.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::image {
namespace {

using ::testing::HasSubstr;

const std::string kSha256 = "sha256:" + std::string(64, 'a');
const std::string kSha512 = "sha512:" + std::string(128, 'b');

struct GoodCase {
  std::string input;
  std::string domain, repository, tag, digest;
  std::string canonical;
};

class ParseGoodTest : public ::testing::TestWithParam<GoodCase> {};

TEST_P(ParseGoodTest, Normalises) {
  const GoodCase& c = GetParam();
  auto r = ParseReference(c.input);
  ASSERT_TRUE(r.ok()) << c.input << ": " << r.status();
  EXPECT_EQ(r->domain, c.domain) << c.input;
  EXPECT_EQ(r->repository, c.repository) << c.input;
  EXPECT_EQ(r->tag, c.tag) << c.input;
  EXPECT_EQ(r->digest, c.digest) << c.input;
  EXPECT_EQ(r->String(), c.canonical) << c.input;
  // The canonical form parses to the same reference.
  auto again = ParseReference(r->String());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *r);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseGoodTest,
    ::testing::Values(
        GoodCase{"busybox", "docker.io", "library/busybox", "latest", "",
                 "docker.io/library/busybox:latest"},
        GoodCase{"busybox:1.36", "docker.io", "library/busybox", "1.36", "",
                 "docker.io/library/busybox:1.36"},
        GoodCase{"user/app", "docker.io", "user/app", "latest", "", "docker.io/user/app:latest"},
        GoodCase{"docker.io/busybox", "docker.io", "library/busybox", "latest", "",
                 "docker.io/library/busybox:latest"},
        GoodCase{"index.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", "",
                 "docker.io/library/busybox:x"},
        GoodCase{"localhost/x", "localhost", "x", "latest", "", "localhost/x:latest"},
        GoodCase{"localhost:5000/x", "localhost:5000", "x", "latest", "",
                 "localhost:5000/x:latest"},
        GoodCase{"127.0.0.1:5000/a/b/c:v1.0-rc_1", "127.0.0.1:5000", "a/b/c", "v1.0-rc_1", "",
                 "127.0.0.1:5000/a/b/c:v1.0-rc_1"},
        GoodCase{"[::1]:5000/x:t", "[::1]:5000", "x", "t", "", "[::1]:5000/x:t"},
        GoodCase{"quay.io/org/app", "quay.io", "org/app", "latest", "", "quay.io/org/app:latest"},
        GoodCase{"Registry.Example.com/app", "Registry.Example.com", "app", "latest", "",
                 "Registry.Example.com/app:latest"},
        GoodCase{"host.tld/a.b/c_d/e__f/g--h", "host.tld", "a.b/c_d/e__f/g--h", "latest", "",
                 "host.tld/a.b/c_d/e__f/g--h:latest"},
        GoodCase{"busybox@" + kSha256, "docker.io", "library/busybox", "", kSha256,
                 "docker.io/library/busybox@" + kSha256},
        GoodCase{"busybox:1@" + kSha256, "docker.io", "library/busybox", "1", kSha256,
                 "docker.io/library/busybox:1@" + kSha256},
        GoodCase{"localhost:5000/x@" + kSha512, "localhost:5000", "x", "", kSha512,
                 "localhost:5000/x@" + kSha512},
        GoodCase{"a:" + std::string(128, 'T'), "docker.io", "library/a", std::string(128, 'T'), "",
                 "docker.io/library/a:" + std::string(128, 'T')}));

struct BadCase {
  std::string input;
  std::string message;  // a substring of the error
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

class ParseBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParseBadTest, RefusesWithAPreciseMessage) {
  const BadCase& c = GetParam();
  auto r = ParseReference(c.input);
  ASSERT_FALSE(r.ok()) << c.input << " parsed as " << r->String();
  EXPECT_EQ(r.status().code(), c.code) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message));
  if (!c.input.empty()) {
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"" + c.input + "\""));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseBadTest,
    ::testing::Values(
        BadCase{"", "empty"}, BadCase{"Busybox", "must be lowercase"},
        BadCase{"docker.io/User/app", "must be lowercase"}, BadCase{"busy box", "whitespace"},
        BadCase{"busybox:", "tag \"\" is invalid"}, BadCase{"busybox:-x", "tag \"-x\" is invalid"},
        BadCase{"busybox:" + std::string(129, 'a'), "is invalid"},
        BadCase{"busybox@sha256:abc", "64 lowercase hex"},
        BadCase{"busybox@sha256:" + std::string(64, 'A'), "64 lowercase hex"},
        BadCase{"busybox@sha512:" + std::string(64, 'a'), "128 lowercase hex"},
        BadCase{"busybox@md5:" + std::string(32, 'a'), "not supported",
                absl::StatusCode::kUnimplemented},
        BadCase{"busybox@", "invalid digest"},
        BadCase{"a@" + std::string("sha256:") + std::string(64, 'a') + "@x", "more than one"},
        BadCase{"host.tld/", "repository name is empty"},
        BadCase{"host.tld//x", "empty path component"}, BadCase{"a/-b", "path component \"-b\""},
        BadCase{"a/b.", "path component \"b.\""}, BadCase{"a/b...c", "path component \"b...c\""},
        BadCase{"-host.tld/x", "registry host \"-host.tld\""},
        BadCase{"host.tld:port/x", "registry host \"host.tld:port\""},
        BadCase{std::string(64, 'a'), "64-character hexadecimal"},
        BadCase{"h.io/" + std::string(260, 'a'), "longer than 255"}));

TEST(ValidateDigestTest, AcceptsSha256AndSha512Only) {
  EXPECT_TRUE(ValidateDigest(kSha256).ok());
  EXPECT_TRUE(ValidateDigest(kSha512).ok());
  EXPECT_EQ(ValidateDigest("sha256").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDigest("sha384:" + std::string(96, 'a')).code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(ValidateDigest("sha256:" + std::string(63, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReferenceTest, ManifestReferenceIsTheDigestWhenThereIsOne) {
  auto r = ParseReference("x:1@" + kSha256);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ManifestReference(), kSha256);
  EXPECT_EQ(r->Name(), "docker.io/library/x");
  auto t = ParseReference("x:1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->ManifestReference(), "1");
}

}  // namespace
}  // namespace berth::image
