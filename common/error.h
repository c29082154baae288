/*  error.h - error codes and the message that travels with them.
 *
 *  Every fallible function in dreamfleet returns an int: 0 on success, a
 *  negative DF_E_* code on failure. When the caller passes a df_error_t, the
 *  callee also writes a human-readable message naming the thing that failed
 *  and why ("vkCreateDevice: VK_ERROR_INITIALIZATION_FAILED",
 *  "model.safetensors: tensor 'x' offset out of range"). A NULL df_error_t is
 *  allowed everywhere and simply drops the message.
 *
 *  The first error set wins: lower layers set the precise message, upper layers
 *  may add context with df_error_prefix() without losing it.
 */
#ifndef DF_ERROR_H
#define DF_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DF_OK = 0,
    DF_E_INVALID = -1,     /* bad argument or impossible request */
    DF_E_NOMEM = -2,       /* host allocation failed */
    DF_E_IO = -3,          /* file or socket I/O failed */
    DF_E_FORMAT = -4,      /* malformed input data */
    DF_E_UNSUPPORTED = -5, /* valid request the device/build cannot do */
    DF_E_VULKAN = -6,      /* a Vulkan call failed */
    DF_E_DEVICE_MEMORY = -7, /* device memory exhausted */
    DF_E_NOT_FOUND = -8,   /* named thing does not exist */
    DF_E_RANGE = -9,       /* value or size outside the allowed range */
    DF_E_STATE = -10,      /* call not allowed in the object's current state */
    DF_E_MISMATCH = -11,   /* result differs from the reference */
} df_status;

#define DF_ERROR_MSG_MAX 512

typedef struct {
    int code;                    /* 0 or a df_status */
    char msg[DF_ERROR_MSG_MAX];  /* NUL-terminated; empty when code == 0 */
} df_error_t;

/*  Clears err (safe with NULL). */
void df_error_clear(df_error_t *err);

/*  Records code and a printf-style message in err unless err already holds an
 *  error. Returns code so callers can write `return df_error_set(...)`. */
int df_error_set(df_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*  Prepends "context: " to the message already in err (no-op when err holds
 *  no error). Returns err's code. */
int df_error_prefix(df_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*  Short name of a status code, e.g. "DF_E_VULKAN". */
const char *df_status_name(int code);

#ifdef __cplusplus
}
#endif
#endif
