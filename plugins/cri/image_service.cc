// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/image_service.h"

#include <chrono>

#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

// Fills a CRI Image from the image store's JSON object.
// pinned_id: the sandbox image's id (pinned: the kubelet never garbage-collects it).
void FillImage(const nlohmann::json& j, runtime::v1::Image* img, const std::string& pinned_id) {
  img->set_id(j.value("id", ""));
  for (const auto& t : j.value("repo_tags", nlohmann::json::array())) {
    img->add_repo_tags(t.get<std::string>());
  }
  for (const auto& d : j.value("repo_digests", nlohmann::json::array())) {
    img->add_repo_digests(d.get<std::string>());
  }
  img->set_size(j.value("size", uint64_t{0}));
  if (j.contains("uid") && j["uid"].is_number_integer()) {
    img->mutable_uid()->set_value(j["uid"].get<int64_t>());
  }
  img->set_username(j.value("username", ""));
  img->set_pinned(j.value("pinned", false) ||
                  (!pinned_id.empty() && j.value("id", "") == pinned_id));
  img->mutable_spec()->set_image(j.value("id", ""));
  if (j.contains("annotations") && j["annotations"].is_object()) {
    for (auto& [k, v] : j["annotations"].items()) {
      if (v.is_string()) (*img->mutable_spec()->mutable_annotations())[k] = v.get<std::string>();
    }
  }
}

}  // namespace

grpc::Status ToGrpc(int32_t code, const std::string& message) {
  if (code == BERTH_OK) return grpc::Status::OK;
  if (code < 0 || code > BERTH_UNAUTHENTICATED) code = BERTH_INTERNAL;
  return grpc::Status(static_cast<grpc::StatusCode>(code), message);
}

std::string ImageServiceImpl::PinnedId() {
  if (sandbox_image_.empty()) return "";
  sdk::StringSink out, err;
  if (store_.table->image_status(store_.instance, sdk::Str(sandbox_image_), out.get(),
                                 err.get()) != BERTH_OK) {
    return "";
  }
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  return j.is_object() ? j.value("id", "") : "";
}

ImageServiceImpl::ImageServiceImpl(sdk::Iface<berth_image_store_v1> store)
    : store_(std::move(store)) {}

grpc::Status ImageServiceImpl::PullImage(grpc::ServerContext*,
                                         const runtime::v1::PullImageRequest* req,
                                         runtime::v1::PullImageResponse* resp) {
  const std::string& ref = req->image().image();
  if (ref.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "PullImage: image.image is empty");
  }
  nlohmann::json auth = nlohmann::json::object();
  if (req->has_auth()) {
    const auto& a = req->auth();
    auth = {{"username", a.username()},         {"password", a.password()},
            {"auth", a.auth()},                 {"server_address", a.server_address()},
            {"identity_token", a.identity_token()}, {"registry_token", a.registry_token()}};
  }
  nlohmann::json options = {{"runtime_handler", req->image().runtime_handler()}};
  std::string auth_text = auth.dump(), options_text = options.dump();
  sdk::StringSink id, err;
  int32_t code = store_.table->pull(store_.instance, sdk::Str(ref), sdk::Str(auth_text),
                                    sdk::Str(options_text), nullptr, nullptr, id.get(), err.get());
  if (code != BERTH_OK) return ToGrpc(code, "pull " + ref + ": " + err.str());
  resp->set_image_ref(id.str());
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::ImageStatus(grpc::ServerContext*,
                                           const runtime::v1::ImageStatusRequest* req,
                                           runtime::v1::ImageStatusResponse* resp) {
  const std::string& ref = req->image().image();
  if (ref.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ImageStatus: image.image is empty");
  }
  sdk::StringSink out, err;
  int32_t code = store_.table->image_status(store_.instance, sdk::Str(ref), out.get(), err.get());
  // CRI: an image that is not present is an empty response, not an error.
  if (code == BERTH_NOT_FOUND) return grpc::Status::OK;
  if (code == BERTH_INVALID_ARGUMENT) return ToGrpc(code, err.str());
  if (code != BERTH_OK) return ToGrpc(code, "image status " + ref + ": " + err.str());
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  if (!j.is_object()) return grpc::Status(grpc::StatusCode::INTERNAL, "bad image record");
  FillImage(j, resp->mutable_image(), PinnedId());
  if (req->verbose()) {
    nlohmann::json info = {{"id", j.value("id", "")},
                           {"chainID", j.value("chain_id", "")},
                           {"manifestDigest", j.value("manifest_digest", "")},
                           {"imageSpec", j.value("config", nlohmann::json::object())}};
    (*resp->mutable_info())["info"] = info.dump();
  }
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::ListImagesJson(const runtime::v1::ImageFilter* filter,
                                              nlohmann::json* out) {
  std::string f = filter != nullptr ? filter->image().image() : "";
  sdk::StringSink images, err;
  int32_t code = store_.table->list(store_.instance, sdk::Str(f), images.get(), err.get());
  if (code == BERTH_NOT_FOUND || code == BERTH_INVALID_ARGUMENT) {
    *out = nlohmann::json::array();  // a filter that names nothing lists nothing
    return grpc::Status::OK;
  }
  if (code != BERTH_OK) return ToGrpc(code, "list images: " + err.str());
  *out = nlohmann::json::parse(images.str(), nullptr, false);
  if (!out->is_array()) return grpc::Status(grpc::StatusCode::INTERNAL, "bad image list");
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::ListImages(grpc::ServerContext*,
                                          const runtime::v1::ListImagesRequest* req,
                                          runtime::v1::ListImagesResponse* resp) {
  nlohmann::json images;
  grpc::Status s = ListImagesJson(req->has_filter() ? &req->filter() : nullptr, &images);
  if (!s.ok()) return s;
  const std::string pinned = PinnedId();
  for (const auto& j : images) FillImage(j, resp->add_images(), pinned);
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::StreamImages(
    grpc::ServerContext*, const runtime::v1::StreamImagesRequest* req,
    grpc::ServerWriter<runtime::v1::StreamImagesResponse>* writer) {
  nlohmann::json images;
  grpc::Status s = ListImagesJson(req->has_filter() ? &req->filter() : nullptr, &images);
  if (!s.ok()) return s;
  constexpr size_t kBatch = 100;
  const std::string pinned = PinnedId();
  runtime::v1::StreamImagesResponse batch;
  for (const auto& j : images) {
    FillImage(j, batch.add_images(), pinned);
    if (static_cast<size_t>(batch.images_size()) == kBatch) {
      if (!writer->Write(batch)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      batch.Clear();
    }
  }
  if (batch.images_size() > 0 && !writer->Write(batch)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::RemoveImage(grpc::ServerContext*,
                                           const runtime::v1::RemoveImageRequest* req,
                                           runtime::v1::RemoveImageResponse*) {
  const std::string& ref = req->image().image();
  if (ref.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "RemoveImage: image.image is empty");
  }
  sdk::StringSink err;
  int32_t code = store_.table->remove(store_.instance, sdk::Str(ref), err.get());
  // Idempotent: removing an image that is not there succeeds.
  if (code == BERTH_NOT_FOUND) return grpc::Status::OK;
  return ToGrpc(code, "remove image " + ref + ": " + err.str());
}

grpc::Status ImageServiceImpl::ImageFsInfo(grpc::ServerContext*,
                                           const runtime::v1::ImageFsInfoRequest*,
                                           runtime::v1::ImageFsInfoResponse* resp) {
  sdk::StringSink out, err;
  int32_t code = store_.table->fs_info(store_.instance, out.get(), err.get());
  if (code != BERTH_OK) return ToGrpc(code, "image filesystem usage: " + err.str());
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  if (!j.is_object()) return grpc::Status(grpc::StatusCode::INTERNAL, "bad fs info");
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto fill = [now](const nlohmann::json& f, runtime::v1::FilesystemUsage* u) {
    u->set_timestamp(now);
    u->mutable_fs_id()->set_mountpoint(f.value("mountpoint", ""));
    u->mutable_used_bytes()->set_value(f.value("used_bytes", uint64_t{0}));
    u->mutable_inodes_used()->set_value(f.value("inodes_used", uint64_t{0}));
  };
  if (j.contains("image_filesystems") && j["image_filesystems"].is_array()) {
    for (const auto& f : j["image_filesystems"]) fill(f, resp->add_image_filesystems());
  } else if (j.contains("image_fs")) {
    fill(j["image_fs"], resp->add_image_filesystems());
  }
  if (j.contains("container_fs")) fill(j["container_fs"], resp->add_container_filesystems());
  return grpc::Status::OK;
}

}  // namespace berth::cri
