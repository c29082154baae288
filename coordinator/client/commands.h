/*  commands.h - the `dreamfleet` commands. Each takes the shared context and
 *  its own arguments (argv[0] is the command name) and returns an exit code. */
#ifndef DF_COMMANDS_H
#define DF_COMMANDS_H

#include "cli.h"

int df_cmd_workers(df_cli *cli, int argc, char **argv);
int df_cmd_jobs(df_cli *cli, int argc, char **argv);
int df_cmd_status(df_cli *cli, int argc, char **argv);
int df_cmd_watch(df_cli *cli, int argc, char **argv);
int df_cmd_cancel(df_cli *cli, int argc, char **argv);
int df_cmd_fetch(df_cli *cli, int argc, char **argv);
int df_cmd_bench(df_cli *cli, int argc, char **argv);
int df_cmd_noop(df_cli *cli, int argc, char **argv);
int df_cmd_model(df_cli *cli, int argc, char **argv);
int df_cmd_stats(df_cli *cli, int argc, char **argv);
int df_cmd_generate(df_cli *cli, int argc, char **argv);
int df_cmd_train(df_cli *cli, int argc, char **argv);

/*  Submits a job; with wait, follows it to its end and returns the exit code
 *  its state calls for. job_id (cap bytes, may be NULL) gets its id. */
int df_cli_submit(df_cli *cli, const char *type, const uint8_t *params, size_t len, uint32_t shards, int wait,
                  char *job_id, size_t cap);

/*  A job's status (with its tasks' outputs when with_tasks). */
int df_cli_get_job(df_cli *cli, const char *id, int with_tasks, Dreamfleet__Reply **rep);

/* Needs no coordinator. */
int df_cmd_keys(int argc, char **argv);
/* Locally; with --cluster, connects cli (or starts the embedded one) first. */
int df_cmd_prep(df_cli *cli, int argc, char **argv);

#endif
