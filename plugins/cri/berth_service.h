// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "berth/plugin.hpp"
#include "berth/v1/berth.grpc.pb.h"

namespace berth::cri {

// berth.v1.Berth: berthctl's additions on the CRI socket (pull with progress).
class BerthServiceImpl final : public berth::v1::Berth::Service {
 public:
  explicit BerthServiceImpl(sdk::Iface<berth_image_store_v1> store) : store_(std::move(store)) {}

  grpc::Status PullImageWithProgress(
      grpc::ServerContext* ctx, const berth::v1::PullImageWithProgressRequest* req,
      grpc::ServerWriter<berth::v1::PullProgress>* writer) override;

 private:
  sdk::Iface<berth_image_store_v1> store_;
};

}  // namespace berth::cri
