// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "berth/plugin.hpp"
#include "cri/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace berth::cri {

// A plugin's status code (google.rpc.Code values) as a gRPC status; codes outside that range
// become INTERNAL.
grpc::Status ToGrpc(int32_t code, const std::string& message);

// CRI ImageService over the image store plugin (berth.image_store.v1).
class ImageServiceImpl final : public runtime::v1::ImageService::Service {
 public:
  explicit ImageServiceImpl(sdk::Iface<berth_image_store_v1> store);
  // The sandbox (pause) image: reported pinned.
  void set_sandbox_image(std::string ref) { sandbox_image_ = std::move(ref); }

  grpc::Status PullImage(grpc::ServerContext*, const runtime::v1::PullImageRequest* req,
                         runtime::v1::PullImageResponse* resp) override;
  grpc::Status ImageStatus(grpc::ServerContext*, const runtime::v1::ImageStatusRequest* req,
                           runtime::v1::ImageStatusResponse* resp) override;
  grpc::Status ListImages(grpc::ServerContext*, const runtime::v1::ListImagesRequest* req,
                          runtime::v1::ListImagesResponse* resp) override;
  grpc::Status StreamImages(grpc::ServerContext*, const runtime::v1::StreamImagesRequest* req,
                            grpc::ServerWriter<runtime::v1::StreamImagesResponse>* w) override;
  grpc::Status RemoveImage(grpc::ServerContext*, const runtime::v1::RemoveImageRequest* req,
                           runtime::v1::RemoveImageResponse* resp) override;
  grpc::Status ImageFsInfo(grpc::ServerContext*, const runtime::v1::ImageFsInfoRequest* req,
                           runtime::v1::ImageFsInfoResponse* resp) override;

 private:
  grpc::Status ListImagesJson(const runtime::v1::ImageFilter* filter, nlohmann::json* out);
  std::string PinnedId();
  sdk::Iface<berth_image_store_v1> store_;
  std::string sandbox_image_;
};

}  // namespace berth::cri
