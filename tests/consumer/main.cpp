// Built against the installed warden package (find_package(warden)).
#include <warden/warden.hpp>

warden::task<int> answer() { co_return 42; }

int main() {
  warden::runtime rt({.worker_threads = 1});
  return rt.block_on(answer()) == 42 ? 0 : 1;
}
