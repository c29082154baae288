/*  keys.h - CURVE key sets for a dreamfleet cluster.
 *
 *  A key directory (--keys DIR) holds:
 *      coordinator.cert          the coordinator's public key (every node has it)
 *      coordinator.cert_secret   its key pair (coordinator only)
 *      worker.cert_secret        this node's worker pair   (workers)
 *      client.cert_secret        this node's client pair   (clients)
 *      allow/workers/NAME.cert   public keys the coordinator accepts as workers
 *      allow/clients/NAME.cert   public keys the coordinator accepts as clients
 *  Files are czmq certificates (ZPL text); secrets are written mode 0600.
 *  `dreamfleet keys --out DIR` makes a full set for a small cluster (one of
 *  each, allow-lists filled), `dreamfleet keys add ROLE NAME` another worker
 *  or client, ready to copy to its machine.
 */
#ifndef DF_KEYS_H
#define DF_KEYS_H

#include <czmq.h>

#include "error.h"

typedef enum { DF_ROLE_WORKER = 0, DF_ROLE_CLIENT = 1 } df_role;

/*  "worker" / "client". */
const char *df_role_name(df_role role);

/*  Creates a full key set in dir (created if needed). Refuses to overwrite an
 *  existing coordinator key (DF_E_STATE). */
int df_keys_generate(const char *dir, df_error_t *err);

/*  Makes a new pair for role called name: registers its public key in
 *  dir's allow-list and writes out_dir (created) with the pair as
 *  <role>.cert_secret plus coordinator.cert: everything that node needs. */
int df_keys_add(const char *dir, df_role role, const char *name, const char *out_dir, df_error_t *err);

/*  Loads dir/<file> as a certificate (with its secret when file ends in
 *  _secret). DF_E_NOT_FOUND / DF_E_FORMAT name the file. */
zcert_t *df_keys_load(const char *dir, const char *file, df_error_t *err);

/*  The coordinator's public key in Z85 (40 characters + NUL). */
int df_keys_server_public(const char *dir, char out[41], df_error_t *err);

/*  Whether name is usable as a key name (letters, digits, '-', '_', '.'; not
 *  starting with '.'), since it becomes a file name. */
int df_keys_valid_name(const char *name);

#endif
