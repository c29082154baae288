/*  log.h - leveled logging to stderr.
 *
 *  The threshold is process-wide state by nature (one stderr per process); it
 *  is set explicitly by main() from flags or DF_LOG_LEVEL, never implicitly.
 */
#ifndef DF_LOG_H
#define DF_LOG_H

typedef enum {
    DF_LOG_DEBUG = 0,
    DF_LOG_INFO = 1,
    DF_LOG_WARN = 2,
    DF_LOG_ERROR = 3,
    DF_LOG_OFF = 4,
} df_log_level;

/*  Sets the threshold: messages below it are dropped. Default DF_LOG_INFO. */
void df_log_set_level(df_log_level level);
df_log_level df_log_get_level(void);

/*  Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int df_log_level_parse(const char *name);

void df_log(df_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define df_debug(...) df_log(DF_LOG_DEBUG, __VA_ARGS__)
#define df_info(...) df_log(DF_LOG_INFO, __VA_ARGS__)
#define df_warn(...) df_log(DF_LOG_WARN, __VA_ARGS__)
#define df_errorf(...) df_log(DF_LOG_ERROR, __VA_ARGS__)

#endif
