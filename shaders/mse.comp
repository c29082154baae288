#version 450
// Mean squared error with per-sample weights, the diffusion training loss:
//   loss_s = w_s * mean_i (pred - target)^2 over the sample's elements,
//   loss   = mean_s loss_s,
//   dpred  = 2 (pred - target) w_s / (count * samples) * grad_scale.
// STAGE 0: per (sample, chunk of 1024) the sum of squares -> partials;
// STAGE 1: one invocation combines them -> out = [loss, loss_0, loss_1, ...];
// STAGE 2: dpred, one element per invocation.
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint STAGE = 0;
layout(constant_id = 1) const bool WEIGHTED = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer PRED;
layout(set = 0, binding = 1) uniform samplerBuffer TARGET;
layout(set = 0, binding = 2) uniform samplerBuffer W;
layout(set = 0, binding = 3) uniform samplerBuffer PART;
layout(set = 0, binding = 4) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint samples, count, nch;
    uint base;     // global element index of element 0 of this dispatch (stage 2) or first sample (stage 0)
    uint items;    // items in this dispatch
    uint off_p, off_t, off_w, off_s, off_o;
    float grad_scale;
} p;

const uint CHUNK = 1024u;

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }
float weight(uint s) { return WEIGHTED ? fetch(W, p.off_w + s) : 1.0; }

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (STAGE == 0u) {
        uint s = id / p.nch, k = id % p.nch;
        if (s >= p.items)
            return;
        uint start = k * CHUNK, end = min(start + CHUNK, p.count);
        float acc = 0.0;
        for (uint i = start; i < end; i++) {
            float d = fetch(PRED, p.off_p + s * p.count + i) - fetch(TARGET, p.off_t + s * p.count + i);
            acc += d * d;
        }
        o[p.off_o + (p.base + s) * p.nch + k] = Y_T(acc);
    } else if (STAGE == 1u) {
        if (id > 0u)
            return;
        float total = 0.0;
        for (uint s = 0u; s < p.samples; s++) {
            float sum = 0.0;
            for (uint k = 0u; k < p.nch; k++)
                sum += fetch(PART, p.off_s + s * p.nch + k);
            float ls = weight(s) * sum / float(p.count);
            o[p.off_o + 1u + s] = Y_T(ls);
            total += ls;
        }
        o[p.off_o] = Y_T(total / float(p.samples));
    } else {
        if (id >= p.items)
            return;
        uint e = p.base + id;
        float d = fetch(PRED, p.off_p + id) - fetch(TARGET, p.off_t + id);
        float k = 2.0 * weight(e / p.count) / (float(p.count) * float(p.samples)) * p.grad_scale;
        o[p.off_o + id] = Y_T(k * d);
    }
}
