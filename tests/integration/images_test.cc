// SPDX-License-Identifier: Apache-2.0
// Images end to end: images the test builds from Debian's busybox-static, pushed to a real
// docker-registry on loopback, pulled, inspected, listed and removed through berthd's CRI
// socket exactly as the kubelet does, and through berthctl.
#include <grpcpp/grpcpp.h>

#include <cstring>
#include <future>
#include <random>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "cri/v1/api.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/registry_harness.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

class ImagesTest : public ::testing::Test {
 protected:
  virtual std::pair<std::string, std::string> RegistryLogin() { return {"", ""}; }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "berthd runs as root only";
    registry_ = std::make_unique<Registry>(tmp_.path() / "registry");
    auto [user, password] = RegistryLogin();
    ASSERT_TRUE(registry_->Start(user, password))
        << ReadFile(tmp_.path() / "registry" / "registry.log");
    // Two layers: busybox, then a file added and one deleted (a whiteout).
    fs::path l1 = tmp_.path() / "layer1", l2 = tmp_.path() / "layer2";
    fs::create_directories(l1 / "bin");
    fs::create_directories(l1 / "etc");
    fs::copy_file("/bin/busybox", l1 / "bin" / "busybox");
    fs::create_symlink("busybox", l1 / "bin" / "sh");
    WriteFile(l1 / "etc" / "old", "goes away in layer 2\n");
    fs::create_directories(l2 / "etc");
    WriteFile(l2 / "etc" / "hello", "hello from layer 2\n");
    WriteFile(l2 / "etc" / ".wh.old", "");
    std::string log;
    digest_ = registry_->Push({"--repo", "test/busybox", "--tag", "v1", "--layer", l1.string(),
                               "--layer", l2.string(), "--user", "1000:1000"},
                              &log);
    ASSERT_FALSE(digest_.empty()) << log;
    cni_dir_ = tmp_.path() / "net.d";
    fs::create_directories(cni_dir_);
    daemon_ = std::make_unique<Daemon>(tmp_.path() / "berth");
    fs::create_directories(tmp_.path() / "berth");
    WriteFile(daemon_->config(), BaseConfig(cni_dir_));
    ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
    auto ch = grpc::CreateChannel("unix://" + daemon_->socket().string(),
                                  grpc::InsecureChannelCredentials());
    images_ = runtime::v1::ImageService::NewStub(ch);
  }
  void TearDown() override {
    daemon_.reset();
    registry_.reset();
  }

  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return c;
  }
  grpc::Status Pull(const std::string& ref, std::string* id, const std::string& user = "",
                    const std::string& password = "") {
    runtime::v1::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    if (!user.empty()) {
      req.mutable_auth()->set_username(user);
      req.mutable_auth()->set_password(password);
    }
    runtime::v1::PullImageResponse resp;
    grpc::Status s = images_->PullImage(Ctx().get(), req, &resp);
    *id = resp.image_ref();
    return s;
  }
  runtime::v1::ImageStatusResponse Status(const std::string& ref) {
    runtime::v1::ImageStatusRequest req;
    req.mutable_image()->set_image(ref);
    req.set_verbose(true);
    runtime::v1::ImageStatusResponse resp;
    grpc::Status s = images_->ImageStatus(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  std::string Ref(const std::string& tail) { return registry_->host() + "/" + tail; }
  // Files of every snapshot the overlay snapshotter holds.
  std::vector<fs::path> SnapshotFiles(const std::string& name) {
    std::vector<fs::path> out;
    fs::path root = daemon_->root() / "io.berth.snapshotter.overlay";
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().filename() == name) out.push_back(it->path());
    }
    return out;
  }
  size_t Blobs() {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(daemon_->root() / "io.berth.image-store", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file() && it->path().parent_path().filename() == "sha256") ++n;
    }
    return n;
  }

  TempDir tmp_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
  fs::path cni_dir_;
  std::string digest_;
};

TEST_F(ImagesTest, PullInspectListRemoveThroughTheCriSocket) {
  std::string id;
  grpc::Status s = Pull(Ref("test/busybox:v1"), &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->Log();
  EXPECT_THAT(id, ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));

  // The same image by tag, digest reference, id and short id.
  for (const std::string& ref : {Ref("test/busybox:v1"), Ref("test/busybox@" + digest_), id,
                                 id.substr(7, 12)}) {
    auto st = Status(ref);
    ASSERT_TRUE(st.has_image()) << ref;
    EXPECT_EQ(st.image().id(), id) << ref;
    EXPECT_GT(st.image().size(), 0u);
    ASSERT_TRUE(st.image().has_uid());  // from the config's User "1000:1000"
    EXPECT_EQ(st.image().uid().value(), 1000);
    EXPECT_THAT(st.image().repo_tags(), ::testing::Contains(Ref("test/busybox:v1")));
    EXPECT_THAT(st.image().repo_digests(), ::testing::Contains(Ref("test/busybox@" + digest_)));
    EXPECT_TRUE(st.info().count("info"));
  }
  // Layers were unpacked: the file of layer 2, busybox of layer 1, the whiteout in
  // overlayfs form (a 0/0 character device) for the file layer 2 deleted.
  ASSERT_FALSE(SnapshotFiles("hello").empty());
  EXPECT_EQ(ReadFile(SnapshotFiles("hello").front()), "hello from layer 2\n");
  ASSERT_FALSE(SnapshotFiles("busybox").empty());
  struct stat st;
  bool whiteout = false;
  for (const fs::path& p : SnapshotFiles("old")) {
    if (lstat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      whiteout = true;
    }
  }
  EXPECT_TRUE(whiteout);

  runtime::v1::ListImagesResponse list;
  ASSERT_TRUE(images_->ListImages(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.images_size(), 1);
  EXPECT_EQ(list.images(0).id(), id);

  {
    auto ctx = Ctx();
    auto stream = images_->StreamImages(ctx.get(), {});
    runtime::v1::StreamImagesResponse batch;
    int streamed = 0;
    while (stream->Read(&batch)) streamed += batch.images_size();
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(streamed, 1);
  }
  runtime::v1::ListImagesRequest filtered;
  filtered.mutable_filter()->mutable_image()->set_image(Ref("test/busybox:nope"));
  ASSERT_TRUE(images_->ListImages(Ctx().get(), filtered, &list).ok());
  EXPECT_EQ(list.images_size(), 0);

  runtime::v1::ImageFsInfoResponse fsinfo;
  ASSERT_TRUE(images_->ImageFsInfo(Ctx().get(), {}, &fsinfo).ok());
  ASSERT_EQ(fsinfo.image_filesystems_size(), 1);
  EXPECT_GT(fsinfo.image_filesystems(0).used_bytes().value(), 1000000u);  // busybox is ~2 MB
  EXPECT_GT(fsinfo.image_filesystems(0).inodes_used().value(), 3u);
  EXPECT_FALSE(fsinfo.image_filesystems(0).fs_id().mountpoint().empty());

  // Remove: gone, its blobs and snapshots collected; removing again is not an error.
  EXPECT_GT(Blobs(), 0u);
  runtime::v1::RemoveImageRequest rm;
  rm.mutable_image()->set_image(Ref("test/busybox:v1"));
  runtime::v1::RemoveImageResponse rm_resp;
  ASSERT_TRUE(images_->RemoveImage(Ctx().get(), rm, &rm_resp).ok());
  EXPECT_FALSE(Status(id).has_image());
  EXPECT_EQ(Blobs(), 0u);
  EXPECT_TRUE(SnapshotFiles("hello").empty());
  EXPECT_TRUE(images_->RemoveImage(Ctx().get(), rm, &rm_resp).ok());
}

TEST_F(ImagesTest, SecondTagIsTheSameImageAndRemovingOneTagKeepsIt) {
  // Tag the same manifest as v2 in the registry (GET it, PUT it back under the new tag).
  fs::path manifest = tmp_.path() / "manifest.json";
  std::string url = "http://" + registry_->host() + "/v2/test/busybox/manifests/";
  auto [g, gout] = RunCommand({"/usr/bin/curl", "-sf", "-o", manifest.string(), "-H",
                               "Accept: application/vnd.oci.image.manifest.v1+json",
                               url + digest_},
                              tmp_.path() / "curl.log");
  ASSERT_EQ(g, 0) << gout;
  auto [p, pout] = RunCommand({"/usr/bin/curl", "-sf", "-X", "PUT", "-H",
                               "Content-Type: application/vnd.oci.image.manifest.v1+json",
                               "--data-binary", "@" + manifest.string(), url + "v2"},
                              tmp_.path() / "curl.log");
  ASSERT_EQ(p, 0) << pout;

  std::string id1, id2, id3;
  ASSERT_TRUE(Pull(Ref("test/busybox:v1"), &id1).ok());
  ASSERT_TRUE(Pull(Ref("test/busybox:v2"), &id2).ok());
  ASSERT_TRUE(Pull(Ref("test/busybox@" + digest_), &id3).ok());
  EXPECT_EQ(id1, id2);
  EXPECT_EQ(id1, id3);
  runtime::v1::ListImagesResponse list;
  ASSERT_TRUE(images_->ListImages(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.images_size(), 1);
  EXPECT_EQ(list.images(0).repo_tags_size(), 2);

  // Removing one tag keeps the image under the other.
  runtime::v1::RemoveImageRequest rm;
  rm.mutable_image()->set_image(Ref("test/busybox:v1"));
  runtime::v1::RemoveImageResponse rm_resp;
  ASSERT_TRUE(images_->RemoveImage(Ctx().get(), rm, &rm_resp).ok());
  auto st = Status(Ref("test/busybox:v2"));
  ASSERT_TRUE(st.has_image());
  EXPECT_THAT(st.image().repo_tags(), ::testing::ElementsAre(Ref("test/busybox:v2")));
  EXPECT_FALSE(Status(Ref("test/busybox:v1")).has_image());
  EXPECT_FALSE(SnapshotFiles("hello").empty());  // still unpacked
  // Removing by id removes it whatever its names.
  rm.mutable_image()->set_image(id1);
  ASSERT_TRUE(images_->RemoveImage(Ctx().get(), rm, &rm_resp).ok());
  EXPECT_FALSE(Status(Ref("test/busybox:v2")).has_image());
  EXPECT_FALSE(Status(Ref("test/busybox@" + digest_)).has_image());
}

TEST_F(ImagesTest, ErrorsSayWhatAndWhere) {
  std::string id;
  grpc::Status s = Pull(Ref("test/busybox:nope"), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("test/busybox:nope"));

  s = Pull("127.0.0.1:1/test/busybox:v1", &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("127.0.0.1:1"));

  s = Pull("Not A Reference", &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  // Unknown image: ImageStatus answers with no image (not an error), as the kubelet expects.
  EXPECT_FALSE(Status(Ref("test/busybox:v1")).has_image());
  // Nothing of the failed pulls is visible.
  runtime::v1::ListImagesResponse list;
  ASSERT_TRUE(images_->ListImages(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.images_size(), 0);
}

TEST_F(ImagesTest, BerthctlPullImagesInspectiRmiImagefsinfo) {
  std::string sock = daemon_->socket().string();
  fs::path log = tmp_.path() / "ctl.log";
  auto [c1, pulled] = RunCommand({BERTHCTL_BIN, "--socket", sock, "pull", Ref("test/busybox:v1")},
                                 log);
  ASSERT_EQ(c1, 0) << pulled;
  EXPECT_THAT(pulled, HasSubstr("Image is up to date for sha256:"));
  EXPECT_THAT(pulled, HasSubstr("layers"));  // plain progress lines (not a terminal)
  auto [c2, images] = RunCommand({BERTHCTL_BIN, "--socket", sock, "images"}, log);
  EXPECT_EQ(c2, 0);
  EXPECT_THAT(images, HasSubstr(Ref("test/busybox")));
  EXPECT_THAT(images, HasSubstr("v1"));
  auto [c3, inspect] = RunCommand({BERTHCTL_BIN, "--socket", sock, "inspecti",
                                   Ref("test/busybox:v1")}, log);
  EXPECT_EQ(c3, 0);
  auto j = nlohmann::json::parse(inspect, nullptr, false);
  ASSERT_TRUE(j.is_object()) << inspect;
  EXPECT_EQ(j["status"]["repo_tags"][0], Ref("test/busybox:v1"));
  auto [c4, fsinfo] = RunCommand({BERTHCTL_BIN, "--socket", sock, "imagefsinfo"}, log);
  EXPECT_EQ(c4, 0);
  EXPECT_THAT(fsinfo, HasSubstr("used:"));
  auto [c5, rmi] = RunCommand({BERTHCTL_BIN, "--socket", sock, "rmi", Ref("test/busybox:v1")},
                              log);
  EXPECT_EQ(c5, 0) << rmi;
  auto [c6, again] = RunCommand({BERTHCTL_BIN, "--socket", sock, "rmi", Ref("test/busybox:v1")},
                                log);
  EXPECT_EQ(c6, 1);
  EXPECT_THAT(again, HasSubstr("no such image"));
  // On a terminal (script(1) gives it a pty): a progress bar redrawn in place.
  std::string cmd = std::string(BERTHCTL_BIN) + " --socket " + sock + " pull " +
                    Ref("test/busybox:v1");
  auto [c7, tty] = RunCommand({"/usr/bin/script", "-qec", cmd, "/dev/null"}, log);
  EXPECT_EQ(c7, 0) << tty;
  EXPECT_THAT(tty, HasSubstr("\r["));
  EXPECT_THAT(tty, ::testing::MatchesRegex("(.|\n|\r)*[0-9]/2 layers(.|\n|\r)*"));
  EXPECT_THAT(tty, HasSubstr("Image is up to date for sha256:"));
}

TEST_F(ImagesTest, DockerSchema2AndZstdLayersToo) {
  std::string log;
  std::string d = registry_->Push({"--repo", "test/docker", "--tag", "v1", "--format", "docker",
                                   "--busybox"},
                                  &log);
  ASSERT_FALSE(d.empty()) << log;
  std::string z = registry_->Push({"--repo", "test/zstd", "--tag", "v1", "--busybox",
                                   "--layer", (tmp_.path() / "layer2").string(), "--compression",
                                   "zstd,none"},
                                  &log);
  ASSERT_FALSE(z.empty()) << log;
  std::string id1, id2;
  grpc::Status s = Pull(Ref("test/docker:v1"), &id1);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = Pull(Ref("test/zstd:v1"), &id2);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(id1, id2);
  EXPECT_TRUE(Status(Ref("test/docker:v1")).has_image());
  EXPECT_TRUE(Status(Ref("test/zstd@" + z)).has_image());
}

TEST_F(ImagesTest, CorruptLayerFailsThePullAndLeavesNoImage) {
  // Flip bytes inside the second layer's blob in the registry's own storage.
  nlohmann::json manifest = nlohmann::json::parse(ReadFile(registry_->BlobFile(digest_)));
  std::string layer = manifest["layers"][1]["digest"];
  fs::path blob = registry_->BlobFile(layer);
  std::string bytes = ReadFile(blob);
  ASSERT_GT(bytes.size(), 40u);
  for (size_t i = 20; i < 30; ++i) bytes[i] ^= 0x5a;
  WriteFile(blob, bytes);
  std::string id;
  grpc::Status s = Pull(Ref("test/busybox:v1"), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(layer));
  EXPECT_FALSE(Status(Ref("test/busybox:v1")).has_image());
  runtime::v1::ListImagesResponse list;
  ASSERT_TRUE(images_->ListImages(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.images_size(), 0);
  // And berthd still serves.
  runtime::v1::ImageFsInfoResponse fsinfo;
  EXPECT_TRUE(images_->ImageFsInfo(Ctx().get(), {}, &fsinfo).ok());
}

TEST_F(ImagesTest, DiskFullFailsThePullCleanlyAndBerthdKeepsServing) {
  // A second berthd whose root is a 6 MiB tmpfs; the image has an 8 MiB random layer.
  fs::path small = tmp_.path() / "small";
  fs::create_directories(small / "root");
  ASSERT_EQ(::mount("tmpfs", (small / "root").c_str(), "tmpfs", 0, "size=6m"), 0);
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{small / "root"};
  fs::path big = tmp_.path() / "big";
  fs::create_directories(big);
  std::string junk(8 << 20, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= junk.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(&junk[i], &r, 8);
  }
  WriteFile(big / "junk", junk);
  std::string log;
  ASSERT_FALSE(registry_->Push({"--repo", "test/big", "--tag", "v1", "--busybox", "--layer",
                                big.string()},
                               &log)
                   .empty())
      << log;
  Daemon d(small);
  WriteFile(d.config(), BaseConfig(cni_dir_));
  ASSERT_TRUE(d.Start()) << d.Log();
  auto ch = grpc::CreateChannel("unix://" + d.socket().string(),
                                grpc::InsecureChannelCredentials());
  auto images = runtime::v1::ImageService::NewStub(ch);
  runtime::v1::PullImageRequest req;
  req.mutable_image()->set_image(Ref("test/big:v1"));
  runtime::v1::PullImageResponse resp;
  grpc::Status s = images->PullImage(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  runtime::v1::ListImagesResponse list;
  ASSERT_TRUE(images->ListImages(Ctx().get(), {}, &list).ok()) << "berthd stopped serving";
  EXPECT_EQ(list.images_size(), 0);
  // The failed pull gave its space back: no blob is left.
  size_t blobs = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(small / "root" / "io.berth.image-store", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file() && it->path().parent_path().filename() == "sha256") ++blobs;
  }
  EXPECT_EQ(blobs, 0u);
  // A smaller image still pulls on what is left.
  req.mutable_image()->set_image(Ref("test/busybox:v1"));
  s = images->PullImage(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  d.Stop();
}

TEST_F(ImagesTest, SigtermDuringAStalledPullStopsBerthdPromptly) {
  // A "registry" that accepts connections and never answers: the pull would wait for its
  // one-minute progress timeout.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 8), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string host = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto puller = std::async(std::launch::async, [&] {
    std::string id;
    return Pull(host + "/stalled/image:v1", &id);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto t0 = std::chrono::steady_clock::now();
  auto status = daemon_->Stop(SIGTERM);
  auto took = std::chrono::steady_clock::now() - t0;
  ::close(lfd);
  ASSERT_TRUE(status.has_value()) << "berthd did not stop within 10 s";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_LT(took, std::chrono::seconds(5));
  grpc::Status s = puller.get();
  EXPECT_FALSE(s.ok());
}

class AuthImagesTest : public ImagesTest {
 protected:
  std::pair<std::string, std::string> RegistryLogin() override { return {"alice", "s3cret"}; }
};

TEST_F(AuthImagesTest, CredentialsFromTheCriAuthConfig) {
  std::string id;
  grpc::Status s = Pull(Ref("test/busybox:v1"), &id);
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              s.error_code() == grpc::StatusCode::PERMISSION_DENIED)
      << s.error_code() << " " << s.error_message();
  s = Pull(Ref("test/busybox:v1"), &id, "alice", "wrong");
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              s.error_code() == grpc::StatusCode::PERMISSION_DENIED)
      << s.error_code() << " " << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(registry_->host()));
  s = Pull(Ref("test/busybox:v1"), &id, "alice", "s3cret");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Status(id).has_image());
  // berthctl --creds does the same.
  auto [code, out] =
      RunCommand({BERTHCTL_BIN, "--socket", daemon_->socket().string(), "--creds",
                  "alice:s3cret", "pull", Ref("test/busybox:v1")},
                 tmp_.path() / "ctl.log");
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace berth::testing
