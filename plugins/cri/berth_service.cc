// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/berth_service.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "nlohmann/json.hpp"
#include "plugins/cri/image_service.h"

namespace berth::cri {
namespace {

// Progress reports cross from the pulling thread to the gRPC handler through this queue;
// only the newest report matters, so it keeps one.
struct ProgressQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<berth::v1::PullProgress> latest;
  bool done = false;
};

}  // namespace

grpc::Status BerthServiceImpl::PullImageWithProgress(
    grpc::ServerContext* ctx, const berth::v1::PullImageWithProgressRequest* req,
    grpc::ServerWriter<berth::v1::PullProgress>* writer) {
  if (req->image().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "image is empty");
  }
  nlohmann::json auth = {{"username", req->username()},
                         {"password", req->password()},
                         {"auth", req->auth()},
                         {"identity_token", req->identity_token()},
                         {"registry_token", req->registry_token()}};
  auto queue = std::make_shared<ProgressQueue>();
  auto on_progress = [](void* user, berth_str json) {
    auto* q = static_cast<ProgressQueue*>(user);
    nlohmann::json j = nlohmann::json::parse(sdk::View(json), nullptr, false);
    if (!j.is_object()) return;
    berth::v1::PullProgress p;
    p.set_layers_done(j.value("layers_done", 0));
    p.set_layers_total(j.value("layers_total", 0));
    p.set_bytes_done(j.value("bytes_done", int64_t{0}));
    p.set_bytes_total(j.value("bytes_total", int64_t{0}));
    std::lock_guard<std::mutex> lock(q->mu);
    q->latest = p;
    q->cv.notify_one();
  };
  int32_t code = BERTH_OK;
  std::string id, error;
  std::string ref = req->image(), auth_text = auth.dump();
  std::thread puller([&, queue] {
    sdk::StringSink out, err;
    code = store_.table->pull(store_.instance, sdk::Str(ref), sdk::Str(auth_text), sdk::Str("{}"),
                              on_progress, queue.get(), out.get(), err.get());
    id = out.take();
    error = err.take();
    std::lock_guard<std::mutex> lock(queue->mu);
    queue->done = true;
    queue->cv.notify_one();
  });
  bool client_gone = false;
  for (;;) {
    std::unique_lock<std::mutex> lock(queue->mu);
    queue->cv.wait(lock, [&] { return queue->done || queue->latest.has_value(); });
    if (queue->latest) {
      berth::v1::PullProgress p = *queue->latest;
      queue->latest.reset();
      lock.unlock();
      if (!client_gone && (ctx->IsCancelled() || !writer->Write(p))) client_gone = true;
      continue;
    }
    if (queue->done) break;
  }
  puller.join();  // the pull finishes even if berthctl went away: it is shared work
  if (code != BERTH_OK) return ToGrpc(code, "pull " + ref + ": " + error);
  berth::v1::PullProgress final_message;
  final_message.set_image_ref(id);
  if (!client_gone) writer->Write(final_message);
  return grpc::Status::OK;
}

}  // namespace berth::cri
