// warden/warden.hpp — everything in one include.
//
//   #include <warden/warden.hpp>
//   warden::runtime rt;
//   int v = rt.block_on(my_task());
#pragma once

#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/task.hpp>
