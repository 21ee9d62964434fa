// Internal: which sanitizer this translation unit is built with
// (WARDEN_ASAN, WARDEN_TSAN: 1 or 0), for the library and its headers.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define WARDEN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WARDEN_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define WARDEN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WARDEN_TSAN 1
#endif
#endif

#ifndef WARDEN_ASAN
#define WARDEN_ASAN 0
#endif
#ifndef WARDEN_TSAN
#define WARDEN_TSAN 0
#endif
