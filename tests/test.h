/*  test.h - the smallest harness that does the job.
 *
 *  Each test binary defines test functions and runs them with RUN(); CHECK*
 *  macros record a failure with file, line and the values involved, and keep
 *  going so one run reports every broken check. main() returns
 *  test_summary(), non-zero when anything failed, which is what CTest reads.
 */
#ifndef DF_TEST_H
#define DF_TEST_H

#include <stdio.h>
#include <string.h>

#include "error.h"

static int test_failures_;
static int test_checks_;
/* When set (first command-line argument), only tests whose name contains it run. */
static const char *test_filter_;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        test_checks_++;                                                                  \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);     \
            test_failures_++;                                                            \
        }                                                                                \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                  \
        test_checks_++;                                                                  \
        if (check_a_ != check_b_) {                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, check_a_, check_b_);                                         \
            test_failures_++;                                                            \
        }                                                                                \
    } while (0)

static inline const char *test_msg_(const df_error_t *err) { return err ? err->msg : ""; }

/* The call returns DF_OK; otherwise print the error's message. */
#define CHECK_OK(call, errp)                                                             \
    do {                                                                                 \
        int check_rc_ = (call);                                                          \
        test_checks_++;                                                                  \
        if (check_rc_ != DF_OK) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call,    \
                    df_status_name(check_rc_), test_msg_(errp));                         \
            test_failures_++;                                                            \
        }                                                                                \
    } while (0)

/* The call fails with `code` and its message contains `needle`. */
#define CHECK_FAILS(call, errp, code, needle)                                            \
    do {                                                                                 \
        df_error_clear(errp);                                                            \
        int check_rc_ = (call);                                                          \
        test_checks_++;                                                                  \
        if (check_rc_ != (code) || !strstr((errp)->msg, (needle))) {                     \
            fprintf(stderr, "%s:%d: %s: expected %s with \"%s\", got %s: \"%s\"\n",      \
                    __FILE__, __LINE__, #call, df_status_name(code), (needle),           \
                    df_status_name(check_rc_), (errp)->msg);                             \
            test_failures_++;                                                            \
        }                                                                                \
        df_error_clear(errp);                                                            \
    } while (0)

#define RUN(fn)                                                                          \
    do {                                                                                 \
        if (test_filter_ && !strstr(#fn, test_filter_))                                  \
            break;                                                                       \
        int before_ = test_failures_;                                                    \
        fn();                                                                            \
        fprintf(stderr, "%-48s %s\n", #fn, test_failures_ == before_ ? "ok" : "FAILED"); \
    } while (0)

static inline int test_summary(void)
{
    fprintf(stderr, "%d checks, %d failed\n", test_checks_, test_failures_);
    return test_failures_ ? 1 : 0;
}

#endif
