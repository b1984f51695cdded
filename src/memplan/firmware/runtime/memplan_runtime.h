/*
 * memplan reference runtime: runs a memplan plan's command stream on int8 feature maps.
 *
 * Portable C99, integer arithmetic only, no malloc. The tables a plan is made of (tensors,
 * layers with their kernel parameters, SRAM buffers, commands and their operands) are
 * `static const` data that `memplan export --c` generates (memplan_plan.c); this file
 * declares their layout and the interpreter's entry points. See README.md.
 *
 * Memory model (as memplan.execute.tiled):
 *   - SRAM: one byte array of exactly `sram_bytes` (the plan's capacity). A feature-map
 *     region in SRAM is channel-major (C, H, W), int8, one byte per element. A weight slice
 *     of output channels [c0, c1) is the channels' int8 weight rows followed by their int32
 *     little-endian biases.
 *   - DRAM arena: `dram_arena_bytes`; every tensor with a DRAM home (model inputs and outputs
 *     not resident in SRAM, spilled tensors, host-layer tensors) is the whole tensor at its
 *     `dram_offset`, channel-major (C, H, W), int8 (an int32 host output: 4 bytes per element,
 *     little-endian).
 *   - Weight blob: read only (flash or DRAM): per layer, `channels` rows of `row_bytes` int8
 *     weights at `w_offset`, then, if `bias_offset` is not MEMPLAN_NONE, `channels` int32
 *     little-endian biases.
 */
#ifndef MEMPLAN_RUNTIME_H
#define MEMPLAN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "no such offset / tensor / layer" in the tables */
#define MEMPLAN_NONE 0xFFFFFFFFu
/* the most inputs a layer may have (a concat); the exporter refuses more */
#define MEMPLAN_MAX_INPUTS 256
/* fractional bits of the bilinear resize weights (memplan.execute.windows.RESIZE_FRAC_BITS) */
#define MEMPLAN_RESIZE_FRAC_BITS 10
/* TFLite's add/sub: inputs minus zero point are shifted left by this many bits */
#define MEMPLAN_ADD_LEFT_SHIFT 20
/* softmax output multiplier precision (memplan.execute.quantize.SOFTMAX_MUL_BITS) */
#define MEMPLAN_SOFTMAX_MUL_BITS 16
/* LRN factor table precision (memplan.execute.quantize.LRN_TABLE_BITS) */
#define MEMPLAN_LRN_TABLE_BITS 24

/* ------------------------------------------------------------------ status codes */
enum memplan_status {
    MEMPLAN_OK = 0,
    MEMPLAN_E_SRAM_BOUNDS = 1,     /* an access leaves the SRAM arena */
    MEMPLAN_E_DRAM_BOUNDS = 2,     /* an access leaves the DRAM arena or the tensor has no DRAM home */
    MEMPLAN_E_WEIGHT_BOUNDS = 3,   /* a weight slice leaves the weight blob or the layer has none */
    MEMPLAN_E_MISSING_INPUT = 4,   /* a kernel needs an input cell its tile does not hold */
    MEMPLAN_E_OVERFLOW = 5,        /* a requantisation input leaves int32 (memplan's reference raises) */
    MEMPLAN_E_BAD_TABLE = 6,       /* a table entry is inconsistent (unknown op, bad region, ...) */
    MEMPLAN_E_HOST = 7,            /* a host layer without a callback, or the callback failed */
    MEMPLAN_E_NO_WEIGHTS = 8       /* a weighted compute without weights in SRAM on a profile that loads them */
};

/* ------------------------------------------------------------------ table enums */
enum memplan_cmd_op {
    MEMPLAN_CMD_LOAD = 0,          /* DRAM -> SRAM: a region of a tensor */
    MEMPLAN_CMD_STORE = 1,         /* SRAM -> DRAM: a region of a tensor */
    MEMPLAN_CMD_LOAD_WEIGHTS = 2,  /* weight blob -> SRAM: rows then biases of channels [c0, c1) */
    MEMPLAN_CMD_COMPUTE = 3,       /* a kernel on SRAM operands */
    MEMPLAN_CMD_HOST = 4,          /* the application's host callback (a host layer) */
    MEMPLAN_CMD_COPY = 5           /* SRAM -> SRAM: `region` of `tensor` from operands[operand0] (the
                                      previous row stripe's slot of a rolling buffer) to
                                      operands[operand0 + 1] */
};

/* layer ops: the values of memplan.ir.ops.OpKind, in that order */
enum memplan_layer_op {
    MEMPLAN_OP_CONV = 0,
    MEMPLAN_OP_CONV_TRANSPOSE = 1,
    MEMPLAN_OP_MAX_POOL = 2,
    MEMPLAN_OP_AVG_POOL = 3,
    MEMPLAN_OP_GLOBAL_AVG_POOL = 4,
    MEMPLAN_OP_GLOBAL_MAX_POOL = 5,
    MEMPLAN_OP_FULLY_CONNECTED = 6,
    MEMPLAN_OP_ADD = 7,
    MEMPLAN_OP_CONCAT = 8,
    MEMPLAN_OP_RESIZE = 9,
    MEMPLAN_OP_LRN = 10,
    MEMPLAN_OP_SOFTMAX = 11,
    MEMPLAN_OP_CHANNEL_SHUFFLE = 12,
    MEMPLAN_OP_SUB = 13,
    MEMPLAN_OP_MUL = 14,
    MEMPLAN_OP_MAX = 15,
    MEMPLAN_OP_MIN = 16,
    MEMPLAN_OP_PAD = 17,
    MEMPLAN_OP_HOST = 18,
    MEMPLAN_OP_DEPTH_TO_SPACE = 19,
    MEMPLAN_OP_SPACE_TO_DEPTH = 20,
    MEMPLAN_OP_SLICE = 21
};

enum memplan_tensor_role {
    MEMPLAN_ROLE_NONE = 0,         /* no DRAM home: transient (SRAM tiles only) or resident */
    MEMPLAN_ROLE_INPUT = 1,
    MEMPLAN_ROLE_OUTPUT = 2,
    MEMPLAN_ROLE_SPILL = 3,
    MEMPLAN_ROLE_HOST = 4
};

enum memplan_buffer_kind {
    MEMPLAN_BUF_CORE = 0,
    MEMPLAN_BUF_IN_STAGE = 1,
    MEMPLAN_BUF_OUT_STAGE = 2,
    MEMPLAN_BUF_WEIGHT_KEEP = 3,
    MEMPLAN_BUF_WEIGHT_RELOAD = 4,
    MEMPLAN_BUF_RESIDENT = 5
};

/* ------------------------------------------------------------------ tables */
/* a box of a (C, H, W) tensor, half-open on each axis, in full-tensor coordinates */
typedef struct memplan_region {
    int32_t c0, c1, y0, y1, x0, x1;
} memplan_region;

typedef struct memplan_tensor {
    const char *name;
    int32_t c, h, w;               /* a 4-D feature map (batch 1); other ranks: c = elements, h = w = 1 */
    uint8_t elem_bytes;            /* 1 (int8) or 4 (int32 host output) */
    uint8_t role;                  /* enum memplan_tensor_role */
    int32_t zero_point;            /* int8 quantisation zero point (the scale is a comment in the tables) */
    uint32_t dram_offset;          /* home in the DRAM arena, or MEMPLAN_NONE */
    uint32_t dram_size;            /* bytes of the whole tensor there (0 without a home) */
    uint32_t resident_offset;      /* SRAM offset of its RESIDENT buffer, or MEMPLAN_NONE */
} memplan_tensor;

/* one input of a layer: the tensor, its shape and quantisation, and its rescale, if any
   (add/sub: the per-input multiplier; concat/max/min: the rescale to the stage domain) */
typedef struct memplan_layer_input {
    uint32_t tensor;
    int32_t c, h, w;
    int32_t zero_point;
    uint8_t has_rq;
    int32_t rq_mult, rq_shift;
} memplan_layer_input;

typedef struct memplan_layer {
    const char *name;
    uint8_t op;                    /* enum memplan_layer_op */
    uint32_t n_inputs, input0;     /* inputs: layer_inputs[input0 .. input0 + n_inputs) */
    uint32_t output;               /* tensor id */
    int32_t out_c, out_h, out_w;
    /* epilogue: stage value -> clamp [act_lo, act_hi] -> optional 256-entry table */
    int32_t stage_zp;
    int32_t act_lo, act_hi;
    const int8_t *lut;             /* NULL, 256 entries, or (out_c x 256) when lut_per_channel */
    uint8_t lut_per_channel;
    /* requantisation of the raw result: none (rq_n 0), per tensor (1) or per output channel */
    uint32_t rq_n;
    const int32_t *rq_mult, *rq_shift;
    /* weights in the blob: row_bytes 0 for a layer without weights */
    uint32_t w_offset, row_bytes, w_channels, bias_offset;
    /* geometry of sliding-window ops */
    int32_t kernel[2], stride[2], pads[4], dilation[2], groups;
    /* op parameters: pad: (channel front); slice: (channel, row, column start);
       depth/space: (block, mode 0 DCR / 1 CRD); resize: (mode 0 nearest / 1 linear);
       lrn: (size); softmax: (algorithm: 0 memplan's rational, 1 TFLite Micro's fixed point);
       avg pool: unused (counts are tables) */
    int32_t param[4];
    /* int32 tables: avg pool (valid rows, counted rows, valid cols, counted cols);
       nearest resize (source row, source col); linear resize (row0, row1, row weight,
       col0, col1, col weight); channel shuffle (source channel) */
    const int32_t *tab[6];
    /* int64 tables: softmax exponentials (256; TFLite Micro's: Q0.31) or LRN factors (table_len) */
    const int64_t *table;
    uint32_t table_len;
    int64_t table_mul;             /* softmax output multiplier */
} memplan_layer;

typedef struct memplan_buffer {
    const char *name;
    uint8_t kind;                  /* enum memplan_buffer_kind */
    uint32_t offset, size;
    int32_t t0, t1;                /* live over schedule steps [t0, t1) */
    uint32_t tensor, layer;        /* owner, or MEMPLAN_NONE */
} memplan_buffer;

/* an SRAM view: `region` of `tensor` stored channel-major at SRAM `offset` */
typedef struct memplan_operand {
    uint32_t tensor;
    memplan_region region;
    uint32_t offset;
} memplan_operand;

typedef struct memplan_command {
    uint8_t op;                    /* enum memplan_cmd_op */
    int32_t step, group, tile;
    uint32_t tensor;               /* load/store/copy */
    uint32_t layer;                /* compute, load_weights, host */
    memplan_region region;         /* load/store/copy: the region moved; compute: the output region;
                                      load_weights: channels [c0, c1) (rows/cols unused) */
    uint32_t offset;               /* load/store/load_weights: SRAM offset */
    uint32_t weights_offset;       /* compute: SRAM offset of the weight slice, MEMPLAN_NONE: none
                                      (a layer without weights, or weights read in place) */
    uint32_t operand0;             /* compute: operands[operand0 ..] = inputs, then the output;
                                      copy: the source, then the destination; load: MEMPLAN_NONE,
                                      or the view the region lands in (a rolling buffer's slot) */
} memplan_command;

/* what the plan states (and the runtime measures) */
typedef struct memplan_totals {
    uint64_t dram_read_fm, dram_write_fm, dram_read_weights, macs;
    uint64_t host_layers, host_dram_read, host_dram_write;
} memplan_totals;

typedef struct memplan_model {
    const char *name;
    uint32_t sram_bytes;           /* the plan's SRAM capacity: the arena is exactly this */
    uint32_t dram_arena_bytes;
    uint32_t weights_bytes;
    uint8_t weights_in_place;      /* the profile reads weights in place from the blob */
    uint32_t n_tensors;
    const memplan_tensor *tensors;
    uint32_t n_layers;
    const memplan_layer *layers;
    const memplan_layer_input *layer_inputs;
    uint32_t n_buffers;
    const memplan_buffer *buffers;
    uint32_t n_commands;
    const memplan_command *commands;
    const memplan_operand *operands;
    uint32_t n_inputs;
    const uint32_t *inputs;        /* model inputs, tensor ids */
    uint32_t n_outputs;
    const uint32_t *outputs;       /* model outputs, tensor ids */
    memplan_totals totals;         /* the plan's totals */
} memplan_model;

/* ------------------------------------------------------------------ running */
struct memplan_ctx;

/*
 * A host layer: the application computes `layer`'s output from its inputs, all whole in DRAM
 * (tensor table: dram_offset, layout CHW or row-major, int8 or int32 little-endian), and writes
 * the output there. Return 0 on success.
 */
typedef int (*memplan_host_fn)(void *user, const memplan_model *model, uint32_t layer, uint8_t *dram);

/* a tile a kernel reads: `region` of a (C, H, W) tensor, channel-major at `data` (NULL: none) */
typedef struct memplan_tile {
    const int8_t *data;
    memplan_region region;
    int32_t C, H, W;
} memplan_tile;

typedef struct memplan_ctx {
    const memplan_model *model;
    uint8_t *sram;                 /* model->sram_bytes */
    uint8_t *dram;                 /* model->dram_arena_bytes */
    const uint8_t *weights;        /* model->weights_bytes */
    memplan_host_fn host;
    void *host_user;
    memplan_totals counters;       /* measured by the last memplan_run */
    int status;                    /* enum memplan_status of the last run */
    uint32_t failed_command;       /* index of the command that failed, or MEMPLAN_NONE */
    memplan_tile tiles[MEMPLAN_MAX_INPUTS];  /* scratch of the interpreter */
} memplan_ctx;

/* Prepare a context (counters zero, no host callback). */
void memplan_init(memplan_ctx *ctx, const memplan_model *model, uint8_t *sram, uint8_t *dram, const uint8_t *weights);

/* Where a model input is written before the run and a model output read after it: its DRAM
   home, else its resident SRAM buffer; NULL when it has neither. */
uint8_t *memplan_tensor_data(memplan_ctx *ctx, uint32_t tensor);

/* Bytes of a whole tensor (elements x element size). */
uint32_t memplan_tensor_bytes(const memplan_tensor *t);

/* Run every command in order; returns the status (also in ctx->status). Counters restart at 0. */
int memplan_run(memplan_ctx *ctx);

/* A one-line description of a status code. */
const char *memplan_status_string(int status);

/* ------------------------------------------------------------------ kernels (memplan_kernels.c) */
/* gemmlowp / TFLite fixed point, bit-exact with memplan.execute.fixedpoint */
int32_t memplan_srdhm(int32_t a, int32_t b);
int64_t memplan_rounding_divide_by_pot(int64_t x, int exponent);
/* x * m * 2^(shift - 31) with double rounding; *status = MEMPLAN_E_OVERFLOW if x << shift leaves int32 */
int64_t memplan_mbqm(int64_t x, int32_t m, int32_t shift, int *status);
/* num / den (den > 0) rounded half away from zero */
int64_t memplan_divide_round_half_away(int64_t num, int64_t den);

/*
 * Compute `region` of layer `layer`'s output from the input tiles (one per input; data NULL
 * for an input the region does not read) into the output operand: `out` holds `held`
 * channel-major. `rows`/`biases` point at the weight rows and little-endian int32 biases of
 * output channels [region.c0, region.c1) (NULL for layers without weights / bias).
 * Returns a status; *macs receives the MACs of the work, counted as memplan's tiled executor.
 */
int memplan_kernel(const memplan_model *model, const memplan_layer *layer, const memplan_tile *tiles,
                   memplan_region region, int8_t *out, memplan_region held, const int8_t *rows,
                   const uint8_t *biases, uint64_t *macs);

#ifdef __cplusplus
}
#endif

#endif /* MEMPLAN_RUNTIME_H */
