/*
 * memplan_run: the example application of an exported plan.
 *
 * Loads weights.bin (the weight blob), input.bin (the seeded int8 input memplan verifies
 * with) and expected.bin (the output memplan's untiled int8 reference computed for it), fills
 * SRAM and the DRAM arena with a pseudo-random pattern (a byte the plan forgets to write is
 * garbage, not a lucky zero), places the inputs (in DRAM, or in their resident SRAM buffer),
 * runs the plan, compares every output byte with expected.bin, writes the outputs to
 * output.bin and prints the runtime's counters next to the plan's totals.
 *
 *   usage: memplan_run [DIR [REPEAT]]   (DIR holds the .bin files, default "."; REPEAT runs
 *                                        the plan that many times for timing, default 1)
 *
 * Exit status: 0 all outputs and counters equal, 1 an output differs, 2 a counter differs,
 * 3 the runtime stopped with an error, 4 a file could not be read or written.
 *
 * Host layers: a real application computes them on its CPU in the callback. This example's
 * callback is a stand-in: it copies the host layer's output that memplan's Python reference
 * computed for the seeded input (host_outputs.bin, each host layer's output in schedule
 * order), which is only correct for that input.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "memplan_plan.h"

static uint8_t weights[MEMPLAN_WEIGHTS_BYTES + 1];
static uint8_t input[MEMPLAN_INPUT_BYTES + 1];
static uint8_t expected[MEMPLAN_OUTPUT_BYTES + 1];
static uint8_t output[MEMPLAN_OUTPUT_BYTES + 1];
static uint8_t host_outputs[MEMPLAN_HOST_OUTPUT_BYTES + 1];
static memplan_ctx ctx;

static int read_file(const char *dir, const char *name, uint8_t *buf, size_t n)
{
    char path[4096];
    FILE *f;
    size_t got;
    int extra;
    sprintf(path, "%.3900s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "memplan_run: cannot open %s\n", path);
        return 1;
    }
    got = n ? fread(buf, 1, n, f) : 0;
    extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        fprintf(stderr, "memplan_run: %s is not %lu bytes\n", path, (unsigned long)n);
        return 1;
    }
    return 0;
}

static int write_file(const char *dir, const char *name, const uint8_t *buf, size_t n)
{
    char path[4096];
    FILE *f;
    int bad;
    sprintf(path, "%.3900s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "memplan_run: cannot write %s\n", path);
        return 1;
    }
    bad = n && fwrite(buf, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad)
        fprintf(stderr, "memplan_run: cannot write %s\n", path);
    return bad;
}

/* xorshift32: the pattern SRAM and DRAM hold before the run */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;
    uint32_t s = seed;
    for (i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        p[i] = (uint8_t)(s >> 24);
    }
}

/* the stand-in for the application's host CPU code (see the file comment) */
static int host_stand_in(void *user, const memplan_model *m, uint32_t layer, uint8_t *dram)
{
    uint32_t l, off = 0, n;
    const memplan_tensor *t;
    (void)user;
    for (l = 0; l < layer; l++)
        if (m->layers[l].op == MEMPLAN_OP_HOST)
            off += memplan_tensor_bytes(&m->tensors[m->layers[l].output]);
    t = &m->tensors[m->layers[layer].output];
    n = memplan_tensor_bytes(t);
    if ((uint64_t)off + n > MEMPLAN_HOST_OUTPUT_BYTES || t->dram_offset == MEMPLAN_NONE)
        return 1;
    memcpy(dram + t->dram_offset, host_outputs + off, n);
    return 0;
}

static int place_inputs(void)
{
    uint32_t i, off = 0;
    for (i = 0; i < memplan_plan.n_inputs; i++) {
        const memplan_tensor *t = &memplan_plan.tensors[memplan_plan.inputs[i]];
        uint8_t *p = memplan_tensor_data(&ctx, memplan_plan.inputs[i]);
        uint32_t n = memplan_tensor_bytes(t);
        if (p == NULL || (uint64_t)off + n > MEMPLAN_INPUT_BYTES) {
            fprintf(stderr, "memplan_run: input %s has no place in DRAM or SRAM\n", t->name);
            return 1;
        }
        memcpy(p, input + off, n);
        off += n;
    }
    return 0;
}

static int check(const char *what, uint64_t measured, uint64_t planned)
{
    int ok = measured == planned;
    printf("counter %-18s %14llu %14llu %s\n", what, (unsigned long long)measured, (unsigned long long)planned,
           ok ? "ok" : "DIFFERS");
    return ok;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    long repeat = 1, r;
    uint32_t i, off = 0;
    uint64_t differing = 0;
    clock_t spent = 0;
    int counters_ok = 1;
    if (argc > 2 && (sscanf(argv[2], "%ld", &repeat) != 1 || repeat < 1)) {
        fprintf(stderr, "usage: memplan_run [DIR [REPEAT]]\n");
        return 4;
    }
    if (read_file(dir, "weights.bin", weights, MEMPLAN_WEIGHTS_BYTES) ||
        read_file(dir, "input.bin", input, MEMPLAN_INPUT_BYTES) ||
        read_file(dir, "expected.bin", expected, MEMPLAN_OUTPUT_BYTES) ||
        (MEMPLAN_HOST_OUTPUT_BYTES > 0 && read_file(dir, "host_outputs.bin", host_outputs, MEMPLAN_HOST_OUTPUT_BYTES)))
        return 4;
    memplan_init(&ctx, &memplan_plan, memplan_sram, memplan_dram, weights);
    ctx.host = host_stand_in;
    printf("memplan_run: model %s, %lu commands, SRAM %lu B, DRAM arena %lu B, weights %lu B\n", memplan_plan.name,
           (unsigned long)memplan_plan.n_commands, (unsigned long)memplan_plan.sram_bytes,
           (unsigned long)memplan_plan.dram_arena_bytes, (unsigned long)memplan_plan.weights_bytes);
    for (r = 0; r < repeat; r++) {
        clock_t t0;
        fill(memplan_sram, MEMPLAN_SRAM_BYTES, 0x5EEDu + (uint32_t)r);
        fill(memplan_dram, MEMPLAN_DRAM_ARENA_BYTES, 0xD7A3u + (uint32_t)r);
        if (place_inputs())
            return 4;
        t0 = clock();
        if (memplan_run(&ctx) != MEMPLAN_OK) {
            uint32_t k = ctx.failed_command;
            fprintf(stderr, "memplan_run: command %lu (op %d, group %ld, tile %ld): %s\n", (unsigned long)k,
                    (int)memplan_plan.commands[k].op, (long)memplan_plan.commands[k].group,
                    (long)memplan_plan.commands[k].tile, memplan_status_string(ctx.status));
            return 3;
        }
        spent += clock() - t0;
    }
    for (i = 0; i < memplan_plan.n_outputs; i++) {
        const memplan_tensor *t = &memplan_plan.tensors[memplan_plan.outputs[i]];
        const uint8_t *p = memplan_tensor_data(&ctx, memplan_plan.outputs[i]);
        uint32_t n = memplan_tensor_bytes(t), k, bad = 0;
        if (p == NULL || (uint64_t)off + n > MEMPLAN_OUTPUT_BYTES) {
            fprintf(stderr, "memplan_run: output %s has no place in DRAM or SRAM\n", t->name);
            return 4;
        }
        memcpy(output + off, p, n);
        for (k = 0; k < n; k++)
            bad += output[off + k] != expected[off + k];
        printf("output %s: %lu bytes, %lu differ from expected.bin\n", t->name, (unsigned long)n, (unsigned long)bad);
        differing += bad;
        off += n;
    }
    if (write_file(dir, "output.bin", output, MEMPLAN_OUTPUT_BYTES))
        return 4;
    printf("counter %-18s %14s %14s\n", "", "measured", "plan");
    counters_ok &= check("dram_read_fm", ctx.counters.dram_read_fm, memplan_plan.totals.dram_read_fm);
    counters_ok &= check("dram_write_fm", ctx.counters.dram_write_fm, memplan_plan.totals.dram_write_fm);
    counters_ok &= check("dram_read_weights", ctx.counters.dram_read_weights, memplan_plan.totals.dram_read_weights);
    counters_ok &= check("macs", ctx.counters.macs, memplan_plan.totals.macs);
    counters_ok &= check("host_layers", ctx.counters.host_layers, memplan_plan.totals.host_layers);
    counters_ok &= check("host_dram_read", ctx.counters.host_dram_read, memplan_plan.totals.host_dram_read);
    counters_ok &= check("host_dram_write", ctx.counters.host_dram_write, memplan_plan.totals.host_dram_write);
    printf("time_us_per_run %llu (%ld runs)\n",
           (unsigned long long)((uint64_t)spent * 1000000u / (uint64_t)CLOCKS_PER_SEC / (uint64_t)repeat), repeat);
    if (differing) {
        printf("FAIL: %llu output bytes differ\n", (unsigned long long)differing);
        return 1;
    }
    if (!counters_ok) {
        printf("FAIL: a counter differs from the plan\n");
        return 2;
    }
    printf("PASS: every output byte and every counter equal\n");
    return 0;
}
