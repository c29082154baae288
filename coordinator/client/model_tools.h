/*  model_tools.h - `dreamfleet model ...` subcommands that work on local
 *  files and need no coordinator. */
#ifndef DF_MODEL_TOOLS_H
#define DF_MODEL_TOOLS_H

/*  1 when argv (starting at "model") names a local subcommand. */
int df_model_tools_handles(int argc, char **argv);

/*  Runs it; returns a DF_EXIT_* code. */
int df_model_tools_run(int argc, char **argv);

#endif
