/*  store.c - see store.h. */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 1

static const char *k_schema =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, type TEXT NOT NULL, state INTEGER NOT NULL,"
    "  params BLOB, max_attempts INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    "  error TEXT, result BLOB, summary TEXT, ntasks INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tasks ("
    "  id TEXT PRIMARY KEY, job_seq INTEGER NOT NULL REFERENCES jobs(seq), idx INTEGER NOT NULL,"
    "  state INTEGER NOT NULL, attempt INTEGER NOT NULL, params BLOB, worker_id TEXT, worker_name TEXT,"
    "  progress REAL, message TEXT, error TEXT, output BLOB, artifacts TEXT,"
    "  queued_ms INTEGER, started_ms INTEGER, finished_ms INTEGER);"
    "CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks(job_seq, idx);"
    "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL,"
    "  added_ms INTEGER NOT NULL);";

enum { ST_INSERT_JOB, ST_INSERT_TASK, ST_UPDATE_JOB, ST_UPDATE_TASK, ST_COUNT };
static const char *k_sql[ST_COUNT] = {
    [ST_INSERT_JOB] = "INSERT INTO jobs (seq, id, type, state, params, max_attempts, created_ms, updated_ms,"
                      " error, result, summary, ntasks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_INSERT_TASK] = "INSERT INTO tasks (id, job_seq, idx, state, attempt, params, worker_id, worker_name,"
                       " progress, message, error, output, artifacts, queued_ms, started_ms, finished_ms)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_UPDATE_JOB] = "UPDATE jobs SET state=?, updated_ms=?, error=?, result=?, summary=? WHERE seq=?",
    [ST_UPDATE_TASK] = "UPDATE tasks SET state=?, attempt=?, worker_id=?, worker_name=?, progress=?, message=?,"
                       " error=?, output=?, artifacts=?, queued_ms=?, started_ms=?, finished_ms=? WHERE id=?",
};

struct _df_store_t {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int in_txn;
    char *path;
};

static int db_fail(df_store_t *self, df_error_t *err, const char *what)
{
    return df_error_set(err, DF_E_IO, "store %s: %s: %s", self->path, what, sqlite3_errmsg(self->db));
}

static int exec(df_store_t *self, const char *sql, df_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = df_error_set(err, DF_E_IO, "store %s: %s", self->path, msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    return DF_OK;
}

df_store_t *df_store_open(const char *path, df_error_t *err)
{
    df_store_t *self = calloc(1, sizeof *self);
    if (!self || !(self->path = strdup(path))) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "store: out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        df_error_set(err, DF_E_IO, "store %s: %s", path, self->db ? sqlite3_errmsg(self->db) : "cannot open");
        df_store_close(&self);
        return NULL;
    }
    sqlite3_busy_timeout(self->db, 5000);
    char *version = NULL;
    int rc = exec(self, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", err);
    if (!rc)
        rc = exec(self, k_schema, err);
    if (!rc)
        rc = df_store_get_meta(self, "schema_version", &version, err);
    if (!rc && version && atoi(version) > SCHEMA_VERSION)
        rc = df_error_set(err, DF_E_UNSUPPORTED, "store %s: schema version %s is newer than this build's %d", path,
                          version, SCHEMA_VERSION);
    if (!rc && !version)
        rc = df_store_set_meta(self, "schema_version", "1", err);
    free(version);
    for (int i = 0; i < ST_COUNT && !rc; i++)
        if (sqlite3_prepare_v2(self->db, k_sql[i], -1, &self->st[i], NULL) != SQLITE_OK)
            rc = db_fail(self, err, "prepare");
    if (rc) {
        df_store_close(&self);
        return NULL;
    }
    return self;
}

void df_store_close(df_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_store_t *self = *self_p;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(self->st[i]);
    if (self->in_txn)
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(self->db);
    free(self->path);
    free(self);
    *self_p = NULL;
}

int df_store_begin(df_store_t *self, df_error_t *err)
{
    if (self->in_txn)
        return DF_OK;
    int rc = exec(self, "BEGIN IMMEDIATE", err);
    if (!rc)
        self->in_txn = 1;
    return rc;
}

int df_store_commit(df_store_t *self, df_error_t *err)
{
    if (!self->in_txn)
        return DF_OK;
    int rc = exec(self, "COMMIT", err);
    if (!rc)
        self->in_txn = 0;
    return rc;
}

int df_store_in_transaction(const df_store_t *self) { return self->in_txn; }

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v && *v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_blob(sqlite3_stmt *s, int i, const void *v, size_t n)
{
    if (v && n)
        sqlite3_bind_blob64(s, i, v, n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

/* Runs a bound statement to completion and resets it. */
static int step(df_store_t *self, sqlite3_stmt *s, df_error_t *err)
{
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (r != SQLITE_DONE)
        return db_fail(self, err, "write");
    return DF_OK;
}

static int insert_task(df_store_t *self, const df_task *t, df_error_t *err)
{
    sqlite3_stmt *s = self->st[ST_INSERT_TASK];
    bind_text(s, 1, t->id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)t->job->seq);
    sqlite3_bind_int(s, 3, (int)t->index);
    sqlite3_bind_int(s, 4, t->state);
    sqlite3_bind_int(s, 5, (int)t->attempt);
    bind_blob(s, 6, t->params, t->params_len);
    bind_text(s, 7, t->worker_id);
    bind_text(s, 8, t->worker_name);
    sqlite3_bind_double(s, 9, t->progress);
    bind_text(s, 10, t->message);
    bind_text(s, 11, t->error);
    bind_blob(s, 12, t->output, t->output_len);
    bind_text(s, 13, t->artifacts);
    sqlite3_bind_int64(s, 14, (sqlite3_int64)t->queued_ms);
    sqlite3_bind_int64(s, 15, (sqlite3_int64)t->started_ms);
    sqlite3_bind_int64(s, 16, (sqlite3_int64)t->finished_ms);
    return step(self, s, err);
}

int df_store_insert_job(df_store_t *self, const df_job *job, df_error_t *err)
{
    sqlite3_stmt *s = self->st[ST_INSERT_JOB];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)job->seq);
    bind_text(s, 2, job->id);
    bind_text(s, 3, job->type);
    sqlite3_bind_int(s, 4, job->state);
    bind_blob(s, 5, job->params, job->params_len);
    sqlite3_bind_int(s, 6, (int)job->max_attempts);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)job->created_ms);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)job->updated_ms);
    bind_text(s, 9, job->error);
    bind_blob(s, 10, job->result, job->result_len);
    bind_text(s, 11, job->summary);
    sqlite3_bind_int(s, 12, (int)job->ntasks);
    int rc = step(self, s, err);
    for (uint32_t i = 0; i < job->ntasks && !rc; i++)
        rc = insert_task(self, &job->tasks[i], err);
    return rc;
}

int df_store_update_job(df_store_t *self, const df_job *job, df_error_t *err)
{
    sqlite3_stmt *s = self->st[ST_UPDATE_JOB];
    sqlite3_bind_int(s, 1, job->state);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)job->updated_ms);
    bind_text(s, 3, job->error);
    bind_blob(s, 4, job->result, job->result_len);
    bind_text(s, 5, job->summary);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)job->seq);
    return step(self, s, err);
}

int df_store_update_task(df_store_t *self, const df_task *t, df_error_t *err)
{
    sqlite3_stmt *s = self->st[ST_UPDATE_TASK];
    sqlite3_bind_int(s, 1, t->state);
    sqlite3_bind_int(s, 2, (int)t->attempt);
    bind_text(s, 3, t->worker_id);
    bind_text(s, 4, t->worker_name);
    sqlite3_bind_double(s, 5, t->progress);
    bind_text(s, 6, t->message);
    bind_text(s, 7, t->error);
    bind_blob(s, 8, t->output, t->output_len);
    bind_text(s, 9, t->artifacts);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)t->queued_ms);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)t->started_ms);
    sqlite3_bind_int64(s, 12, (sqlite3_int64)t->finished_ms);
    bind_text(s, 13, t->id);
    return step(self, s, err);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

static int col_blob(sqlite3_stmt *s, int i, uint8_t **dst, size_t *n)
{
    const void *b = sqlite3_column_blob(s, i);
    return df_set_bytes(dst, n, b, (size_t)sqlite3_column_bytes(s, i));
}

static int load_tasks(df_store_t *self, sqlite3_stmt *q, df_job *job, df_error_t *err)
{
    sqlite3_bind_int64(q, 1, (sqlite3_int64)job->seq);
    int r, rc = DF_OK;
    while (!rc && (r = sqlite3_step(q)) == SQLITE_ROW) {
        uint32_t idx = (uint32_t)sqlite3_column_int(q, 0);
        if (idx >= job->ntasks) {
            rc = df_error_set(err, DF_E_FORMAT, "store %s: job %s has task index %u of %u", self->path, job->id,
                              idx, job->ntasks);
            break;
        }
        df_task *t = &job->tasks[idx];
        t->state = sqlite3_column_int(q, 1);
        t->attempt = (uint32_t)sqlite3_column_int(q, 2);
        snprintf(t->worker_id, sizeof t->worker_id, "%s", col_text(q, 4));
        snprintf(t->worker_name, sizeof t->worker_name, "%s", col_text(q, 5));
        t->progress = (float)sqlite3_column_double(q, 6);
        t->queued_ms = (uint64_t)sqlite3_column_int64(q, 11);
        t->started_ms = (uint64_t)sqlite3_column_int64(q, 12);
        t->finished_ms = (uint64_t)sqlite3_column_int64(q, 13);
        if (col_blob(q, 3, &t->params, &t->params_len) || df_set_str(&t->message, col_text(q, 7)) ||
            df_set_str(&t->error, col_text(q, 8)) || col_blob(q, 9, &t->output, &t->output_len) ||
            df_set_str(&t->artifacts, col_text(q, 10)))
            rc = df_error_set(err, DF_E_NOMEM, "store: out of memory loading %s", t->id);
    }
    sqlite3_reset(q);
    return rc;
}

int df_store_load_jobs(df_store_t *self, int (*on_job)(void *ctx, df_job *job), void *ctx, df_error_t *err)
{
    sqlite3_stmt *qj = NULL, *qt = NULL;
    int rc = DF_OK;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT seq, type, state, params, max_attempts, created_ms, updated_ms, error, result,"
                           " summary, ntasks FROM jobs ORDER BY seq",
                           -1, &qj, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db,
                           "SELECT idx, state, attempt, params, worker_id, worker_name, progress, message, error,"
                           " output, artifacts, queued_ms, started_ms, finished_ms FROM tasks WHERE job_seq=?",
                           -1, &qt, NULL) != SQLITE_OK)
        rc = db_fail(self, err, "prepare");
    int r = SQLITE_DONE;
    while (!rc && (r = sqlite3_step(qj)) == SQLITE_ROW) {
        df_job *job = df_job_new((uint64_t)sqlite3_column_int64(qj, 0), col_text(qj, 1),
                                 (uint32_t)sqlite3_column_int(qj, 10));
        if (!job) {
            rc = df_error_set(err, DF_E_NOMEM, "store: out of memory loading jobs");
            break;
        }
        job->state = sqlite3_column_int(qj, 2);
        job->max_attempts = (uint32_t)sqlite3_column_int(qj, 4);
        job->created_ms = (uint64_t)sqlite3_column_int64(qj, 5);
        job->updated_ms = (uint64_t)sqlite3_column_int64(qj, 6);
        if (col_blob(qj, 3, &job->params, &job->params_len) || df_set_str(&job->error, col_text(qj, 7)) ||
            col_blob(qj, 8, &job->result, &job->result_len) || df_set_str(&job->summary, col_text(qj, 9)))
            rc = df_error_set(err, DF_E_NOMEM, "store: out of memory loading %s", job->id);
        if (!rc)
            rc = load_tasks(self, qt, job, err);
        if (!rc)
            df_job_recount(job);
        if (rc) {
            df_job_free(&job);
            break;
        }
        if (on_job(ctx, job))
            break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_fail(self, err, "read jobs");
    sqlite3_finalize(qj);
    sqlite3_finalize(qt);
    return rc;
}

int df_store_max_seq(df_store_t *self, uint64_t *seq, df_error_t *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(self->db, "SELECT COALESCE(MAX(seq), 0) FROM jobs", -1, &q, NULL) != SQLITE_OK)
        return db_fail(self, err, "prepare");
    int rc = sqlite3_step(q) == SQLITE_ROW ? DF_OK : db_fail(self, err, "read");
    if (!rc)
        *seq = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc;
}

int df_store_put_model(df_store_t *self, const char *name, const char *hash, uint64_t size, uint64_t added_ms,
                       df_error_t *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(self->db, "INSERT OR REPLACE INTO models (name, hash, size, added_ms) VALUES (?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_fail(self, err, "prepare");
    bind_text(q, 1, name);
    bind_text(q, 2, hash);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)added_ms);
    int rc = sqlite3_step(q) == SQLITE_DONE ? DF_OK : db_fail(self, err, "write model");
    sqlite3_finalize(q);
    return rc;
}

int df_store_list_models(df_store_t *self,
                         int (*on_model)(void *ctx, const char *name, const char *hash, uint64_t size, uint64_t added_ms),
                         void *ctx, df_error_t *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(self->db, "SELECT name, hash, size, added_ms FROM models ORDER BY name", -1, &q, NULL) !=
        SQLITE_OK)
        return db_fail(self, err, "prepare");
    while (sqlite3_step(q) == SQLITE_ROW)
        if (on_model(ctx, col_text(q, 0), col_text(q, 1), (uint64_t)sqlite3_column_int64(q, 2),
                     (uint64_t)sqlite3_column_int64(q, 3)))
            break;
    sqlite3_finalize(q);
    return DF_OK;
}

int df_store_get_meta(df_store_t *self, const char *key, char **value, df_error_t *err)
{
    *value = NULL;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(self->db, "SELECT value FROM meta WHERE key=?", -1, &q, NULL) != SQLITE_OK)
        return db_fail(self, err, "prepare");
    bind_text(q, 1, key);
    int rc = DF_OK;
    if (sqlite3_step(q) == SQLITE_ROW && !(*value = strdup(col_text(q, 0))))
        rc = df_error_set(err, DF_E_NOMEM, "store: out of memory");
    sqlite3_finalize(q);
    return rc;
}

int df_store_set_meta(df_store_t *self, const char *key, const char *value, df_error_t *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(self->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", -1, &q, NULL) !=
        SQLITE_OK)
        return db_fail(self, err, "prepare");
    bind_text(q, 1, key);
    bind_text(q, 2, value);
    int rc = sqlite3_step(q) == SQLITE_DONE ? DF_OK : db_fail(self, err, "write meta");
    sqlite3_finalize(q);
    return rc;
}
