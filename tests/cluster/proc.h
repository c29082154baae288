/*  proc.h - starting, watching and killing the daemons in cluster tests. */
#ifndef DF_TEST_PROC_H
#define DF_TEST_PROC_H

#include <stddef.h>
#include <sys/types.h>

/*  Starts argv[0] with argv, stdout and stderr to log_path. */
pid_t proc_start(char *const argv[], const char *log_path);

/*  Runs argv to completion, capturing stdout into out (NUL-terminated,
 *  truncated to cap) and returning the exit code (-1 on a signal). stderr
 *  goes to err_out the same way when given. Kills it after timeout_ms. */
int proc_run(char *const argv[], char *out, size_t cap, char *err_out, size_t err_cap, int timeout_ms);

/*  Sends sig and waits for the process (up to timeout_ms); returns its exit
 *  code, 128+signal if killed by one, or -1 if it did not end in time (it is
 *  then SIGKILLed). */
int proc_stop(pid_t pid, int sig, int timeout_ms);

/*  Waits until file contains needle (up to timeout_ms); copies the rest of
 *  that line into rest. Returns 0 when found. */
int proc_wait_line(const char *file, const char *needle, char *rest, size_t cap, int timeout_ms);

void proc_sleep_ms(int ms);

#endif
