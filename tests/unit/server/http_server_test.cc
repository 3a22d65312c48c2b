#include "kiln/server/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <future>
#include <thread>

namespace kiln::server {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// A blocking raw-socket client, so the tests control every byte on the wire.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void Send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  void ShutdownSend() { socket_.shutdown(tcp::socket::shutdown_send); }
  void Close() { socket_.close(); }
  // Reads until the server closes the connection or `marker` has arrived.
  std::string ReadUntil(const std::string& marker = "") {
    std::string out;
    char buf[4096];
    boost::system::error_code ec;
    while (marker.empty() || out.find(marker) == std::string::npos) {
      size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(Handler handler, size_t max_body = 1024) {
    HttpServerOptions options;
    options.port = 0;
    options.max_body_bytes = max_body;
    server_ = std::make_unique<HttpServer>(options, std::move(handler));
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, AnswersAndKeepsTheConnectionAlive) {
  StartServer([](const HttpRequest& req, std::shared_ptr<Exchange> ex) {
    ex->Respond({200, "text/plain", req.method + " " + req.path + " " + req.body, {}});
  });
  RawClient c(server_->port());
  c.Send("POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  std::string first = c.ReadUntil("POST /echo hello");
  EXPECT_NE(first.find("HTTP/1.1 200 OK"), std::string::npos);
  c.Send("GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(c.ReadUntil("GET /again ").find("GET /again "), std::string::npos);
}

TEST_F(HttpServerTest, StreamsChunksProducedOnAnotherThread) {
  std::vector<std::thread> producers;
  StartServer([&producers](const HttpRequest&, std::shared_ptr<Exchange> ex) {
    producers.emplace_back([ex] {
      ex->StartStream(200, "text/event-stream");
      for (int i = 0; i < 5; ++i) {
        ex->Write("data: " + std::to_string(i) + "\n\n");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      ex->End();
    });
  });
  RawClient c(server_->port());
  c.Send("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string got = c.ReadUntil("0\r\n\r\n");
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos);
  for (int i = 0; i < 5; ++i) EXPECT_NE(got.find("data: " + std::to_string(i)), std::string::npos);
  for (auto& t : producers) t.join();
}

TEST_F(HttpServerTest, OversizedBodyIs413WithAnOpenAiErrorBody) {
  StartServer([](const HttpRequest&, std::shared_ptr<Exchange> ex) { ex->Respond({}); }, 100);
  RawClient c(server_->port());
  c.Send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'a'));
  std::string got = c.ReadUntil();
  EXPECT_NE(got.find("413"), std::string::npos);
  EXPECT_NE(got.find("\"error\""), std::string::npos);
  EXPECT_NE(got.find("larger than the limit"), std::string::npos);
}

TEST_F(HttpServerTest, BodyCutOffIs400) {
  StartServer([](const HttpRequest&, std::shared_ptr<Exchange> ex) { ex->Respond({}); });
  RawClient c(server_->port());
  c.Send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n{\"partial\":");
  c.ShutdownSend();
  std::string got = c.ReadUntil();
  EXPECT_NE(got.find("400"), std::string::npos);
  EXPECT_NE(got.find("ended before its body was complete"), std::string::npos);
}

TEST_F(HttpServerTest, MalformedRequestIs400) {
  StartServer([](const HttpRequest&, std::shared_ptr<Exchange> ex) { ex->Respond({}); });
  RawClient c(server_->port());
  c.Send("THIS IS NOT HTTP\r\n\r\n");
  EXPECT_NE(c.ReadUntil().find("400"), std::string::npos);
}

TEST_F(HttpServerTest, ClientThatLeavesCancelsItsExchange) {
  std::promise<void> cancelled;
  std::shared_ptr<Exchange> held;
  StartServer([&](const HttpRequest&, std::shared_ptr<Exchange> ex) {
    held = ex;  // never answered
    ex->OnCancel([&cancelled] { cancelled.set_value(); });
  });
  {
    RawClient c(server_->port());
    c.Send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 0; i < 5000 && server_->requests_in_flight() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    c.Close();
  }
  EXPECT_EQ(cancelled.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(held->cancelled());
  EXPECT_TRUE(server_->WaitForIdle(std::chrono::seconds(5)));
}

// StopAccepting while clients keep connecting, on two io threads: the acceptor's close must not
// run while another thread completes an accept on it (a race the ThreadSanitizer build reports,
// and that once crashed the server on SIGTERM).
TEST(ApiKeyTest, AcceptsAnyOfSeveralKeysAndNothingElse) {
  auto request = [](const std::string& header, const std::string& value) {
    HttpRequest r;
    if (!header.empty()) r.headers[header] = value;
    return r;
  };
  EXPECT_TRUE(HasApiKey(request("", ""), ""));
  EXPECT_TRUE(HasApiKey(request("authorization", "Bearer k1"), "k1"));
  EXPECT_TRUE(HasApiKey(request("api-key", "k1"), "k1"));
  EXPECT_FALSE(HasApiKey(request("authorization", "Bearer k2"), "k1"));
  EXPECT_FALSE(HasApiKey(request("", ""), "k1"));
  // Rotation: either of two keys.
  EXPECT_TRUE(HasApiKey(request("authorization", "Bearer old-key"), "new-key,old-key"));
  EXPECT_TRUE(HasApiKey(request("authorization", "Bearer new-key"), "new-key,old-key"));
  EXPECT_FALSE(HasApiKey(request("authorization", "Bearer new-key,old-key"), "new-key,old-key"));
  EXPECT_FALSE(HasApiKey(request("authorization", "Bearer "), "new-key,,old-key"));
  EXPECT_FALSE(HasApiKey(request("authorization", "Bearer key"), "new-key,old-key"));
}

TEST(HttpServerShutdownTest, StopAcceptingWhileClientsConnect) {
  for (int round = 0; round < 20; ++round) {
    HttpServerOptions options;
    options.port = 0;
    options.io_threads = 2;
    HttpServer server(options, [](const HttpRequest&, std::shared_ptr<Exchange> ex) {
      ex->Respond({200, "text/plain", "ok", {}});
    });
    ASSERT_TRUE(server.Start().ok());
    const uint16_t port = server.port();
    std::atomic<bool> stop{false};
    std::thread client([&] {
      asio::io_context io;
      while (!stop.load()) {
        tcp::socket socket(io);
        boost::system::error_code ec;
        socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 5));
    server.StopAccepting();
    EXPECT_TRUE(server.WaitForIdle(std::chrono::seconds(5)));
    stop = true;
    client.join();
    server.Stop();
  }
}

TEST_F(HttpServerTest, HoldsManyIdleConnectionsAndStillServes) {
  StartServer([](const HttpRequest&, std::shared_ptr<Exchange> ex) {
    ex->Respond({200, "text/plain", "ok", {}});
  });
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 400; ++i) idle.push_back(std::make_unique<RawClient>(server_->port()));
  for (int i = 0; i < 5000 && server_->open_connections() < 400; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(server_->open_connections(), 400);
  RawClient c(server_->port());
  c.Send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_NE(c.ReadUntil().find("\r\n\r\nok"), std::string::npos);
}

}  // namespace
}  // namespace kiln::server
