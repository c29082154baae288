/*  fuzz_wire.c - libFuzzer target: any byte string through the envelope
 *  decoder. Must never crash, hang, leak or allocate past the limits; a
 *  decoded message is re-encoded and decoded again, and must survive that. */
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small limits so the fuzzer explores the limit checks, not allocation. */
    df_wire_limits lim = {.max_message = 1 << 20, .max_frame = 1 << 20, .compress_above = 256};
    df_msg_type type;
    ProtobufCMessage *msg;
    if (df_wire_decode(data, size, &lim, &type, &msg, NULL) != DF_OK)
        return 0;
    uint8_t *again;
    size_t len;
    if (df_wire_encode(type, msg, &lim, &again, &len, NULL) == DF_OK) {
        df_msg_type type2;
        ProtobufCMessage *msg2;
        if (df_wire_decode(again, len, &lim, &type2, &msg2, NULL) != DF_OK || type2 != type)
            abort(); /* what we encode, we must decode */
        df_wire_free(msg2);
        free(again);
    }
    df_wire_free(msg);
    return 0;
}
