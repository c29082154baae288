/*  test_suballoc.c - the range allocator behind device memory, against a
 *  byte map of what should be in use. */
#include <stdint.h>
#include <stdlib.h>

#include "philox.h"
#include "suballoc.h"
#include "test.h"

static void test_basic_and_alignment(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_suballoc_t *sa = df_suballoc_new(1024, &err);
    CHECK(sa != NULL);
    uint64_t a, b, c;
    CHECK_OK(df_suballoc_alloc(sa, 10, 1, &a, &err), &err);
    CHECK_EQ(a, 0);
    CHECK_OK(df_suballoc_alloc(sa, 100, 256, &b, &err), &err);
    CHECK_EQ(b, 256);
    CHECK_EQ(df_suballoc_used(sa), 110);
    /* The gap [10, 256) left by alignment is still usable. */
    CHECK_OK(df_suballoc_alloc(sa, 200, 8, &c, &err), &err);
    CHECK_EQ(c, 16);
    CHECK_EQ(df_suballoc_free_ranges(sa), 3); /* [10,16) [216,256) [356,1024) */
    CHECK_OK(df_suballoc_free(sa, c, 200, &err), &err);
    CHECK_OK(df_suballoc_free(sa, a, 10, &err), &err);
    CHECK_OK(df_suballoc_free(sa, b, 100, &err), &err);
    CHECK_EQ(df_suballoc_used(sa), 0);
    CHECK_EQ(df_suballoc_free_ranges(sa), 1); /* fully merged */
    CHECK_EQ(df_suballoc_largest_free(sa), 1024);
    df_suballoc_destroy(&sa);
    CHECK(sa == NULL);
    df_suballoc_destroy(&sa); /* destroying NULL is fine */
}

static void test_errors(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(df_suballoc_new(0, &err) == NULL);
    CHECK_EQ(err.code, DF_E_INVALID);
    df_error_clear(&err);
    df_suballoc_t *sa = df_suballoc_new(100, &err);
    uint64_t off;
    CHECK_FAILS(df_suballoc_alloc(sa, 0, 1, &off, &err), &err, DF_E_INVALID, "size 0");
    CHECK_FAILS(df_suballoc_alloc(sa, 1, 3, &off, &err), &err, DF_E_INVALID, "power of two");
    CHECK_FAILS(df_suballoc_alloc(sa, 101, 1, &off, &err), &err, DF_E_DEVICE_MEMORY, "no free range");
    CHECK_OK(df_suballoc_alloc(sa, 50, 1, &off, &err), &err);
    CHECK_FAILS(df_suballoc_free(sa, 90, 20, &err), &err, DF_E_STATE, "outside");
    CHECK_FAILS(df_suballoc_free(sa, 60, 10, &err), &err, DF_E_STATE, "already free");
    CHECK_FAILS(df_suballoc_free(sa, 40, 20, &err), &err, DF_E_STATE, "already free"); /* straddles */
    CHECK_OK(df_suballoc_free(sa, off, 50, &err), &err);
    CHECK_FAILS(df_suballoc_free(sa, off, 50, &err), &err, DF_E_STATE, "double free");
    CHECK_EQ(df_suballoc_used(sa), 0);
    /* Alignment can make a fitting size impossible. */
    CHECK_OK(df_suballoc_alloc(sa, 1, 1, &off, &err), &err);
    CHECK_FAILS(df_suballoc_alloc(sa, 99, 2, &off, &err), &err, DF_E_DEVICE_MEMORY, "no free range");
    df_suballoc_destroy(&sa);
}

static void test_random_against_map(void)
{
    enum { CAP = 1 << 16, SLOTS = 200 };
    df_error_t err;
    df_error_clear(&err);
    df_suballoc_t *sa = df_suballoc_new(CAP, &err);
    unsigned char *map = calloc(CAP, 1);
    struct {
        uint64_t off, size;
        int live;
    } slot[SLOTS] = {{0}};
    int overlaps = 0, misaligned = 0, used_mismatch = 0;
    uint64_t used = 0;
    for (uint64_t step = 0; step < 20000; step++) {
        uint32_t r = df_philox_u32(9, 0, step);
        int i = (int)(r % SLOTS);
        if (slot[i].live) {
            CHECK_OK(df_suballoc_free(sa, slot[i].off, slot[i].size, &err), &err);
            memset(map + slot[i].off, 0, slot[i].size);
            used -= slot[i].size;
            slot[i].live = 0;
        } else {
            uint64_t size = 1 + (df_philox_u32(9, 1, step) % 900);
            uint64_t align = 1ull << (df_philox_u32(9, 2, step) % 9);
            uint64_t off;
            if (df_suballoc_alloc(sa, size, align, &off, NULL) == DF_OK) {
                misaligned += off % align != 0;
                for (uint64_t j = 0; j < size; j++)
                    overlaps += map[off + j]++ != 0;
                slot[i].off = off, slot[i].size = size, slot[i].live = 1;
                used += size;
            }
        }
        used_mismatch += df_suballoc_used(sa) != used;
    }
    CHECK_EQ(overlaps, 0);
    CHECK_EQ(misaligned, 0);
    CHECK_EQ(used_mismatch, 0);
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].live)
            CHECK_OK(df_suballoc_free(sa, slot[i].off, slot[i].size, &err), &err);
    CHECK_EQ(df_suballoc_free_ranges(sa), 1);
    CHECK_EQ(df_suballoc_largest_free(sa), CAP);
    free(map);
    df_suballoc_destroy(&sa);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    RUN(test_basic_and_alignment);
    RUN(test_errors);
    RUN(test_random_against_map);
    return test_summary();
}
