/*  error.c - see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void df_error_clear(df_error_t *err)
{
    if (!err)
        return;
    err->code = DF_OK;
    err->msg[0] = '\0';
}

int df_error_set(df_error_t *err, int code, const char *fmt, ...)
{
    if (!err || err->code != DF_OK)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int df_error_prefix(df_error_t *err, const char *fmt, ...)
{
    if (!err || err->code == DF_OK)
        return err ? err->code : DF_OK;
    char prefix[DF_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Prefix first, then as much of the old message as still fits. */
    size_t plen = strlen(prefix);
    size_t mlen = strlen(err->msg);
    char joined[DF_ERROR_MSG_MAX];
    size_t n = 0;
    for (size_t i = 0; i < plen && n + 1 < sizeof joined; i++)
        joined[n++] = prefix[i];
    for (size_t i = 0; i < 2 && n + 1 < sizeof joined; i++)
        joined[n++] = ": "[i];
    for (size_t i = 0; i < mlen && n + 1 < sizeof joined; i++)
        joined[n++] = err->msg[i];
    joined[n] = '\0';
    memcpy(err->msg, joined, n + 1);
    return err->code;
}

const char *df_status_name(int code)
{
    switch (code) {
    case DF_OK: return "DF_OK";
    case DF_E_INVALID: return "DF_E_INVALID";
    case DF_E_NOMEM: return "DF_E_NOMEM";
    case DF_E_IO: return "DF_E_IO";
    case DF_E_FORMAT: return "DF_E_FORMAT";
    case DF_E_UNSUPPORTED: return "DF_E_UNSUPPORTED";
    case DF_E_VULKAN: return "DF_E_VULKAN";
    case DF_E_DEVICE_MEMORY: return "DF_E_DEVICE_MEMORY";
    case DF_E_NOT_FOUND: return "DF_E_NOT_FOUND";
    case DF_E_RANGE: return "DF_E_RANGE";
    case DF_E_STATE: return "DF_E_STATE";
    case DF_E_MISMATCH: return "DF_E_MISMATCH";
    default: return "DF_E_UNKNOWN";
    }
}
