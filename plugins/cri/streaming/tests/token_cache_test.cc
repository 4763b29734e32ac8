// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/token_cache.h"

#include <set>

#include "gtest/gtest.h"

namespace berth::cri::streaming {
namespace {

TEST(TokenCacheTest, TokensAreEightBase64UrlCharactersAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string t = NewToken();
    ASSERT_EQ(t.size(), 8u) << t;
    for (char c : t) {
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << t;
    }
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 995u);  // 2^48 possible tokens
}

TEST(TokenCacheTest, SingleUseAndKindChecked) {
  TokenCache cache;
  absl::StatusOr<std::string> t = cache.Insert("exec", "request-bytes");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(cache.Consume("exec", *t), "request-bytes");
  EXPECT_EQ(cache.Consume("exec", *t), std::nullopt);  // used
  t = cache.Insert("exec", "x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(cache.Consume("attach", *t), std::nullopt);  // wrong kind: consumed anyway
  EXPECT_EQ(cache.Consume("exec", *t), std::nullopt);
  EXPECT_EQ(cache.Consume("exec", "nosuchtk"), std::nullopt);
}

TEST(TokenCacheTest, ExpireAfterTheirLifetime) {
  absl::Time now = absl::FromUnixSeconds(1000);
  TokenCache cache(1000, absl::Minutes(1), [&] { return now; });
  absl::StatusOr<std::string> t = cache.Insert("portforward", "p");
  ASSERT_TRUE(t.ok());
  now += absl::Seconds(59);
  absl::StatusOr<std::string> u = cache.Insert("portforward", "q");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(cache.Consume("portforward", *u), "q");
  now += absl::Seconds(2);
  EXPECT_EQ(cache.Consume("portforward", *t), std::nullopt);  // 61 s old
}

TEST(TokenCacheTest, AtMostMaxOutstanding) {
  absl::Time now = absl::FromUnixSeconds(1000);
  TokenCache cache(3, absl::Minutes(1), [&] { return now; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.Insert("exec", "x").ok());
  absl::StatusOr<std::string> full = cache.Insert("exec", "x");
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  now += absl::Minutes(2);  // expired ones make room
  EXPECT_TRUE(cache.Insert("exec", "x").ok());
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace berth::cri::streaming
