// warden/warden.hpp — everything in one include.
//
//   #include <warden/warden.hpp>
//   warden::runtime rt;
//   int v = rt.block_on(my_task());
#pragma once

#include <warden/cancellation.hpp>
#include <warden/combinators.hpp>
#include <warden/embed/local_executor.hpp>
#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/supervise/monitor.hpp>
#include <warden/supervise/scope.hpp>
#include <warden/supervise/tracker.hpp>
#include <warden/sync/broadcast.hpp>
#include <warden/sync/event.hpp>
#include <warden/sync/latch.hpp>
#include <warden/sync/mpsc.hpp>
#include <warden/sync/mutex.hpp>
#include <warden/sync/notify.hpp>
#include <warden/sync/oneshot.hpp>
#include <warden/sync/semaphore.hpp>
#include <warden/task.hpp>
#include <warden/task_failure.hpp>
#include <warden/task_local.hpp>
#include <warden/time.hpp>
