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
/* Needs no coordinator. */
int df_cmd_keys(int argc, char **argv);

#endif
