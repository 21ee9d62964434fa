#include <warden/warden.hpp>
#include <gtest/gtest.h>

TEST(smoke, runs) {
  warden::runtime rt({.worker_threads = 2});
  auto t = []() -> warden::task<int> { co_return 42; };
  EXPECT_EQ(rt.block_on(t()), 42);
}
