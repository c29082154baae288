/*  keys.c - see keys.h. */
#include "keys.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

const char *df_role_name(df_role role) { return role == DF_ROLE_WORKER ? "worker" : "client"; }

int df_keys_valid_name(const char *name)
{
    if (!name || !*name || name[0] == '.' || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static int make_dir(const char *path, mode_t mode, df_error_t *err)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    return DF_OK;
}

static int make_dirs(const char *dir, df_error_t *err)
{
    char path[4096];
    int rc = make_dir(dir, 0700, err);
    snprintf(path, sizeof path, "%s/allow", dir);
    if (!rc)
        rc = make_dir(path, 0755, err);
    snprintf(path, sizeof path, "%s/allow/workers", dir);
    if (!rc)
        rc = make_dir(path, 0755, err);
    snprintf(path, sizeof path, "%s/allow/clients", dir);
    if (!rc)
        rc = make_dir(path, 0755, err);
    return rc;
}

/* Saves the pair as dir/<base>.cert (public) and <base>.cert_secret (0600). */
static int save_pair(zcert_t *cert, const char *dir, const char *base, df_error_t *err)
{
    char path[4096], secret[4200];
    snprintf(path, sizeof path, "%s/%s.cert", dir, base);
    snprintf(secret, sizeof secret, "%s_secret", path);
    if (zcert_save(cert, path) != 0)
        return df_error_set(err, DF_E_IO, "%s: cannot write key files", path);
    if (chmod(secret, 0600) != 0)
        return df_error_set(err, DF_E_IO, "%s: %s", secret, strerror(errno));
    return DF_OK;
}

static int save_public(zcert_t *cert, const char *path, df_error_t *err)
{
    if (zcert_save_public(cert, path) != 0)
        return df_error_set(err, DF_E_IO, "%s: cannot write key file", path);
    return DF_OK;
}

static zcert_t *new_cert(const char *name)
{
    zcert_t *c = zcert_new();
    if (c)
        zcert_set_meta(c, "name", "%s", name);
    return c;
}

int df_keys_generate(const char *dir, df_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/coordinator.cert_secret", dir);
    struct stat st;
    if (stat(path, &st) == 0)
        return df_error_set(err, DF_E_STATE, "%s already exists; not overwriting a cluster's keys", path);
    int rc = make_dirs(dir, err);
    if (rc)
        return rc;
    zcert_t *coord = new_cert("coordinator"), *worker = new_cert("worker"), *client = new_cert("client");
    if (!coord || !worker || !client)
        rc = df_error_set(err, DF_E_NOMEM, "keys: out of memory");
    if (!rc)
        rc = save_pair(coord, dir, "coordinator", err);
    if (!rc)
        rc = save_pair(worker, dir, "worker", err);
    if (!rc)
        rc = save_pair(client, dir, "client", err);
    snprintf(path, sizeof path, "%s/allow/workers/worker.cert", dir);
    if (!rc)
        rc = save_public(worker, path, err);
    snprintf(path, sizeof path, "%s/allow/clients/client.cert", dir);
    if (!rc)
        rc = save_public(client, path, err);
    /* The pairs' public halves beside the secrets are not needed by anyone
     * but the coordinator's; keep the directory unambiguous. */
    snprintf(path, sizeof path, "%s/worker.cert", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/client.cert", dir);
    remove(path);
    zcert_destroy(&coord);
    zcert_destroy(&worker);
    zcert_destroy(&client);
    return rc;
}

int df_keys_add(const char *dir, df_role role, const char *name, const char *out_dir, df_error_t *err)
{
    if (!df_keys_valid_name(name))
        return df_error_set(err, DF_E_INVALID,
                            "keys: '%s' is not a usable name (letters, digits, '-', '_', '.'; up to 64)", name);
    char path[4096];
    snprintf(path, sizeof path, "%s/allow/%ss/%s.cert", dir, df_role_name(role), name);
    struct stat st;
    if (stat(path, &st) == 0)
        return df_error_set(err, DF_E_STATE, "%s already exists", path);
    zcert_t *coord = df_keys_load(dir, "coordinator.cert", err);
    if (!coord)
        return err ? err->code : DF_E_NOT_FOUND;
    int rc = make_dir(out_dir, 0700, err);
    zcert_t *cert = new_cert(name);
    if (!rc && !cert)
        rc = df_error_set(err, DF_E_NOMEM, "keys: out of memory");
    if (!rc)
        rc = save_pair(cert, out_dir, df_role_name(role), err);
    if (!rc) {
        char pub[4096];
        snprintf(pub, sizeof pub, "%s/%s.cert", out_dir, df_role_name(role));
        remove(pub);
        snprintf(pub, sizeof pub, "%s/coordinator.cert", out_dir);
        rc = save_public(coord, pub, err);
    }
    if (!rc)
        rc = save_public(cert, path, err);
    zcert_destroy(&cert);
    zcert_destroy(&coord);
    return rc;
}

zcert_t *df_keys_load(const char *dir, const char *file, df_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (stat(path, &st) != 0) {
        df_error_set(err, DF_E_NOT_FOUND, "key file %s: %s (make keys with `dreamfleet keys --out %s`)", path,
                     strerror(errno), dir);
        return NULL;
    }
    zcert_t *c = zcert_load(path);
    if (!c) {
        df_error_set(err, DF_E_FORMAT, "key file %s: not a readable certificate", path);
        return NULL;
    }
    /* A secret file must carry a secret key (all-zero otherwise). */
    size_t n = strlen(file);
    if (n > 7 && strcmp(file + n - 7, "_secret") == 0) {
        static const byte zero[32] = {0};
        if (memcmp(zcert_secret_key(c), zero, 32) == 0) {
            zcert_destroy(&c);
            df_error_set(err, DF_E_FORMAT, "key file %s: has no secret key", path);
            return NULL;
        }
    }
    return c;
}

int df_keys_server_public(const char *dir, char out[41], df_error_t *err)
{
    /* Read the public file itself: zcert_load() would quietly prefer a
     * coordinator.cert_secret lying beside it, whoever's that is. */
    char path[4096];
    snprintf(path, sizeof path, "%s/coordinator.cert", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return df_error_set(err, DF_E_NOT_FOUND, "key file %s: %s (make keys with `dreamfleet keys --out %s`)", path,
                            strerror(errno), dir);
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "public-key");
        char *q1 = p ? strchr(p, '"') : NULL;
        char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
        if (q2 && q2 - q1 - 1 == 40) {
            memcpy(out, q1 + 1, 40);
            out[40] = '\0';
            found = 1;
        }
    }
    fclose(f);
    uint8_t raw[32];
    if (!found || !zmq_z85_decode(raw, out))
        return df_error_set(err, DF_E_FORMAT, "key file %s: no valid public-key line", path);
    return DF_OK;
}
