/*  proc.c - see proc.h. */
#include "proc.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void proc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

pid_t proc_start(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int proc_run(char *const argv[], char *out, size_t cap, char *err_out, size_t err_cap, int timeout_ms)
{
    int po[2], pe[2];
    if (pipe(po) || pipe(pe))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]);
    size_t n = 0, en = 0;
    if (out && cap)
        out[0] = '\0';
    if (err_out && err_cap)
        err_out[0] = '\0';
    long deadline = now_ms() + timeout_ms;
    int open_fds = 2;
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    while (open_fds > 0) {
        long left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(fds, 2, (int)left) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char buf[4096];
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            char *dst = i == 0 ? out : err_out;
            size_t *len = i == 0 ? &n : &en;
            size_t room = i == 0 ? cap : err_cap;
            if (dst && room) {
                size_t take = (size_t)r < room - 1 - *len ? (size_t)r : room - 1 - *len;
                memcpy(dst + *len, buf, take);
                *len += take;
                dst[*len] = '\0';
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    int st;
    waitpid(pid, &st, 0);
    return status_code(st);
}

int proc_stop(pid_t pid, int sig, int timeout_ms)
{
    kill(pid, sig);
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return status_code(st);
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        proc_sleep_ms(20);
    }
}

int proc_wait_line(const char *file, const char *needle, char *rest, size_t cap, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        FILE *f = fopen(file, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                char *p = strstr(line, needle);
                if (p) {
                    if (rest && cap) {
                        snprintf(rest, cap, "%s", p + strlen(needle));
                        rest[strcspn(rest, "\r\n")] = '\0';
                    }
                    fclose(f);
                    return 0;
                }
            }
            fclose(f);
        }
        proc_sleep_ms(50);
    }
    return -1;
}
