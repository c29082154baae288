/*  make_wire_corpus.c - writes seed inputs for fuzz_wire: one valid envelope
 *  of each message type (raw and lz4-framed), so the fuzzer starts from
 *  frames that pass the header checks.
 *
 *    make_wire_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void save(const char *dir, const char *name, df_msg_type type, const ProtobufCMessage *msg, size_t compress_above)
{
    df_wire_limits lim = df_wire_default_limits();
    lim.compress_above = compress_above;
    uint8_t *buf;
    size_t len;
    df_error_t err;
    df_error_clear(&err);
    if (df_wire_encode(type, msg, &lim, &buf, &len, &err)) {
        fprintf(stderr, "make_wire_corpus: %s\n", err.msg);
        exit(1);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
        perror(path);
        exit(1);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_wire_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    static uint8_t blob[2048];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i % 7);

    Dreamfleet__DeviceInfo dev = DREAMFLEET__DEVICE_INFO__INIT;
    dev.name = "llvmpipe";
    dev.memory_bytes = 1u << 30;
    Dreamfleet__DeviceInfo *devs[1] = {&dev};
    char *types[2] = {"bench", "noop"};
    Dreamfleet__WorkerHello hello = DREAMFLEET__WORKER_HELLO__INIT;
    hello.worker_id = "w-1", hello.name = "node", hello.n_devices = 1, hello.devices = devs;
    hello.n_job_types = 2, hello.job_types = types;
    save(dir, "hello", DF_MSG_HELLO, &hello.base, 4096);

    Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
    hb.seq = 7;
    save(dir, "heartbeat", DF_MSG_HEARTBEAT, &hb.base, 4096);

    Dreamfleet__TaskAssign ta = DREAMFLEET__TASK_ASSIGN__INIT;
    ta.task_id = "t-1", ta.job_id = "j-1", ta.type = "bench";
    ta.params.data = blob, ta.params.len = sizeof blob;
    save(dir, "assign_raw", DF_MSG_TASK_ASSIGN, &ta.base, 1u << 20);
    save(dir, "assign_lz4", DF_MSG_TASK_ASSIGN, &ta.base, 64);

    Dreamfleet__TaskResult tr = DREAMFLEET__TASK_RESULT__INIT;
    tr.task_id = "t-1", tr.output.data = blob, tr.output.len = 100;
    save(dir, "result", DF_MSG_TASK_RESULT, &tr.base, 4096);

    Dreamfleet__Request rq = DREAMFLEET__REQUEST__INIT;
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "bench", sj.shards = 12;
    rq.request_id = 1, rq.body_case = DREAMFLEET__REQUEST__BODY_SUBMIT, rq.submit = &sj;
    save(dir, "request_submit", DF_MSG_REQUEST, &rq.base, 4096);

    Dreamfleet__ArtifactPut put = DREAMFLEET__ARTIFACT_PUT__INIT;
    put.hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    put.data.data = blob, put.data.len = sizeof blob, put.total_size = sizeof blob;
    Dreamfleet__Request rp = DREAMFLEET__REQUEST__INIT;
    rp.request_id = 2, rp.body_case = DREAMFLEET__REQUEST__BODY_ARTIFACT_PUT, rp.artifact_put = &put;
    save(dir, "request_put_lz4", DF_MSG_REQUEST, &rp.base, 64);

    Dreamfleet__Reply rep = DREAMFLEET__REPLY__INIT;
    rep.request_id = 1, rep.status = -8, rep.error = "no such job";
    save(dir, "reply_error", DF_MSG_REPLY, &rep.base, 4096);

    float scales[2] = {1.0f, 0.5f};
    Dreamfleet__DeltaTensor t = DREAMFLEET__DELTA_TENSOR__INIT;
    t.rows = 2, t.cols = 16, t.n_row_scales = 2, t.row_scales = scales;
    t.data.data = blob, t.data.len = sizeof blob;
    Dreamfleet__DeltaTensor *ts[1] = {&t};
    float losses[1] = {0.25f};
    Dreamfleet__LoraDelta ld = DREAMFLEET__LORA_DELTA__INIT;
    ld.job_id = "j-1", ld.round = 3, ld.worker_id = "w-1", ld.task_id = "j-1.0", ld.samples = 4;
    ld.encoding = "int8", ld.tensor_count = 1, ld.n_tensors = 1, ld.tensors = ts;
    ld.n_losses = 1, ld.losses = losses;
    save(dir, "lora_delta_lz4", DF_MSG_LORA_DELTA, &ld.base, 64);
    return 0;
}
