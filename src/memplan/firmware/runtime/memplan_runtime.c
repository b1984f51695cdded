/*
 * memplan reference runtime: the command-stream interpreter.
 *
 * Executes a plan's commands in order, exactly as memplan.execute.tiled does:
 *   LOAD          strided copy of a region of a tensor from its DRAM home into SRAM (channel-major)
 *   STORE         the reverse
 *   LOAD_WEIGHTS  weight rows of output channels [c0, c1), then their biases, from the blob into SRAM
 *   COMPUTE       the layer's kernel on its SRAM operands (weights from SRAM, or in place from the
 *                 blob when the profile reads them there)
 *   HOST          the application's callback computes a host layer in DRAM
 * and counts what it moves: DRAM feature-map bytes read and written, weight bytes read (loads,
 * and in-place reads), MACs (memplan's rule: see memplan_kernel), host-layer bytes apart.
 *
 * The interpreter trusts the plan (memplan verify proves it) but never leaves its memories: an
 * access outside the SRAM arena, the DRAM arena or the weight blob stops the run with a status.
 */
#include "memplan_runtime.h"

#include <string.h>

static uint64_t region_numel(const memplan_region *r)
{
    return (uint64_t)(r->c1 - r->c0) * (uint64_t)(r->y1 - r->y0) * (uint64_t)(r->x1 - r->x0);
}

static int region_ok(const memplan_region *r, int32_t C, int32_t H, int32_t W)
{
    return r->c0 >= 0 && r->c0 < r->c1 && r->c1 <= C && r->y0 >= 0 && r->y0 < r->y1 && r->y1 <= H && r->x0 >= 0 &&
           r->x0 < r->x1 && r->x1 <= W;
}

/* [offset, offset + n) inside a memory of `size` bytes */
static int span_ok(uint64_t offset, uint64_t n, uint64_t size)
{
    return offset != MEMPLAN_NONE && offset <= size && n <= size - offset;
}

void memplan_init(memplan_ctx *ctx, const memplan_model *model, uint8_t *sram, uint8_t *dram, const uint8_t *weights)
{
    memset(&ctx->counters, 0, sizeof ctx->counters);
    ctx->model = model;
    ctx->sram = sram;
    ctx->dram = dram;
    ctx->weights = weights;
    ctx->host = NULL;
    ctx->host_user = NULL;
    ctx->status = MEMPLAN_OK;
    ctx->failed_command = MEMPLAN_NONE;
}

uint32_t memplan_tensor_bytes(const memplan_tensor *t)
{
    return (uint32_t)t->c * (uint32_t)t->h * (uint32_t)t->w * t->elem_bytes;
}

uint8_t *memplan_tensor_data(memplan_ctx *ctx, uint32_t tensor)
{
    const memplan_tensor *t;
    if (tensor >= ctx->model->n_tensors)
        return NULL;
    t = &ctx->model->tensors[tensor];
    if (t->dram_offset != MEMPLAN_NONE && span_ok(t->dram_offset, memplan_tensor_bytes(t), ctx->model->dram_arena_bytes))
        return ctx->dram + t->dram_offset;
    if (t->resident_offset != MEMPLAN_NONE && span_ok(t->resident_offset, memplan_tensor_bytes(t), ctx->model->sram_bytes))
        return ctx->sram + t->resident_offset;
    return NULL;
}

const char *memplan_status_string(int status)
{
    switch (status) {
    case MEMPLAN_OK:
        return "ok";
    case MEMPLAN_E_SRAM_BOUNDS:
        return "an access leaves the SRAM arena";
    case MEMPLAN_E_DRAM_BOUNDS:
        return "an access leaves the DRAM arena (or the tensor has no DRAM home)";
    case MEMPLAN_E_WEIGHT_BOUNDS:
        return "a weight slice leaves the weight blob (or the layer has no weights)";
    case MEMPLAN_E_MISSING_INPUT:
        return "a kernel needs an input cell its tile does not hold";
    case MEMPLAN_E_OVERFLOW:
        return "a requantisation input leaves the int32 range";
    case MEMPLAN_E_BAD_TABLE:
        return "a table entry is inconsistent";
    case MEMPLAN_E_HOST:
        return "a host layer failed (no callback, or the callback returned an error)";
    case MEMPLAN_E_NO_WEIGHTS:
        return "a weighted compute has no weights in SRAM, on a profile that loads them";
    default:
        return "unknown status";
    }
}

/* ------------------------------------------------------------------ DMA */
/* offset of cell (c, y, x) of `r` inside a channel-major view holding `held` */
static uint64_t view_index(const memplan_region *held, int32_t c, int32_t y, int32_t x)
{
    uint64_t rows = (uint64_t)(held->y1 - held->y0), cols = (uint64_t)(held->x1 - held->x0);
    return ((uint64_t)(c - held->c0) * rows + (uint64_t)(y - held->y0)) * cols + (uint64_t)(x - held->x0);
}

static int contains(const memplan_region *outer, const memplan_region *inner)
{
    return outer->c0 <= inner->c0 && inner->c1 <= outer->c1 && outer->y0 <= inner->y0 && inner->y1 <= outer->y1 &&
           outer->x0 <= inner->x0 && inner->x1 <= outer->x1;
}

/* copy `r` of tensor t between its DRAM home and SRAM at `offset`; to_sram: LOAD, else STORE.
   A load or store with an operand (operand0) moves `r` inside that view: the operand's region,
   stored channel-major at `offset` (a rolling buffer's staging slot, a multi-output group's
   tile buffer). */
static int dma(memplan_ctx *ctx, const memplan_command *cmd, int to_sram)
{
    const memplan_model *m = ctx->model;
    const memplan_tensor *t;
    const memplan_region *r = &cmd->region;
    const memplan_region *held = r;
    uint64_t n;
    int32_t c, y, cols;
    if (cmd->tensor >= m->n_tensors)
        return MEMPLAN_E_BAD_TABLE;
    t = &m->tensors[cmd->tensor];
    if (t->elem_bytes != 1 || !region_ok(r, t->c, t->h, t->w))
        return MEMPLAN_E_BAD_TABLE;
    if (cmd->operand0 != MEMPLAN_NONE) {
        const memplan_operand *view = &m->operands[cmd->operand0];
        if (view->tensor != cmd->tensor || view->offset != cmd->offset ||
            !region_ok(&view->region, t->c, t->h, t->w) || !contains(&view->region, r))
            return MEMPLAN_E_BAD_TABLE;
        held = &view->region;
    }
    n = region_numel(r);
    if (!span_ok(cmd->offset, region_numel(held), m->sram_bytes))
        return MEMPLAN_E_SRAM_BOUNDS;
    if (t->dram_offset == MEMPLAN_NONE || !span_ok(t->dram_offset, memplan_tensor_bytes(t), m->dram_arena_bytes))
        return MEMPLAN_E_DRAM_BOUNDS;
    cols = r->x1 - r->x0;
    for (c = r->c0; c < r->c1; c++) {
        for (y = r->y0; y < r->y1; y++) {
            uint8_t *s = ctx->sram + cmd->offset + view_index(held, c, y, r->x0);
            uint8_t *d = ctx->dram + t->dram_offset + ((uint64_t)c * t->h + (uint64_t)y) * t->w + r->x0;
            if (to_sram)
                memcpy(s, d, (size_t)cols);
            else
                memcpy(d, s, (size_t)cols);
        }
    }
    if (to_sram)
        ctx->counters.dram_read_fm += n;
    else
        ctx->counters.dram_write_fm += n;
    return MEMPLAN_OK;
}

static uint64_t slice_bytes(const memplan_layer *L, int32_t c0, int32_t c1)
{
    return (uint64_t)(c1 - c0) * ((uint64_t)L->row_bytes + (L->bias_offset != MEMPLAN_NONE ? 4u : 0u));
}

/* a weight slice of channels [c0, c1) in the blob: rows and biases are in bounds */
static int blob_slice_ok(const memplan_model *m, const memplan_layer *L, int32_t c0, int32_t c1)
{
    if (L->row_bytes == 0 || c0 < 0 || c0 >= c1 || (uint32_t)c1 > L->w_channels)
        return 0;
    if (!span_ok(L->w_offset, (uint64_t)L->row_bytes * L->w_channels, m->weights_bytes))
        return 0;
    return L->bias_offset == MEMPLAN_NONE || span_ok(L->bias_offset, 4ull * L->w_channels, m->weights_bytes);
}

static int load_weights(memplan_ctx *ctx, const memplan_command *cmd)
{
    const memplan_model *m = ctx->model;
    const memplan_layer *L;
    int32_t c0 = cmd->region.c0, c1 = cmd->region.c1;
    uint64_t rows;
    if (cmd->layer >= m->n_layers)
        return MEMPLAN_E_BAD_TABLE;
    L = &m->layers[cmd->layer];
    if (!blob_slice_ok(m, L, c0, c1))
        return MEMPLAN_E_WEIGHT_BOUNDS;
    if (!span_ok(cmd->offset, slice_bytes(L, c0, c1), m->sram_bytes))
        return MEMPLAN_E_SRAM_BOUNDS;
    rows = (uint64_t)(c1 - c0) * L->row_bytes;
    memcpy(ctx->sram + cmd->offset, ctx->weights + L->w_offset + (uint64_t)c0 * L->row_bytes, (size_t)rows);
    if (L->bias_offset != MEMPLAN_NONE)
        memcpy(ctx->sram + cmd->offset + rows, ctx->weights + L->bias_offset + 4ull * (uint64_t)c0,
               4u * (size_t)(c1 - c0));
    ctx->counters.dram_read_weights += slice_bytes(L, c0, c1);
    return MEMPLAN_OK;
}

/* ------------------------------------------------------------------ compute */
static int compute(memplan_ctx *ctx, const memplan_command *cmd)
{
    const memplan_model *m = ctx->model;
    const memplan_layer *L;
    const memplan_layer_input *in;
    const memplan_operand *ops, *out;
    const memplan_tensor *ot;
    const int8_t *rows = NULL;
    const uint8_t *biases = NULL;
    uint32_t i;
    uint64_t macs = 0;
    int status;
    if (cmd->layer >= m->n_layers)
        return MEMPLAN_E_BAD_TABLE;
    L = &m->layers[cmd->layer];
    if (L->n_inputs > MEMPLAN_MAX_INPUTS || !region_ok(&cmd->region, L->out_c, L->out_h, L->out_w))
        return MEMPLAN_E_BAD_TABLE;
    in = m->layer_inputs + L->input0;
    ops = m->operands + cmd->operand0;
    for (i = 0; i < L->n_inputs; i++) {
        memplan_tile *t = &ctx->tiles[i];
        const memplan_operand *op = &ops[i];
        t->C = in[i].c;
        t->H = in[i].h;
        t->W = in[i].w;
        t->region = op->region;
        t->data = NULL;
        if (op->tensor != in[i].tensor)
            return MEMPLAN_E_BAD_TABLE;
        if (op->region.c0 >= op->region.c1 || op->region.y0 >= op->region.y1 || op->region.x0 >= op->region.x1)
            continue; /* an operand that holds nothing: the kernel reads none of it */
        if (!region_ok(&op->region, t->C, t->H, t->W))
            return MEMPLAN_E_BAD_TABLE;
        if (!span_ok(op->offset, region_numel(&op->region), m->sram_bytes))
            return MEMPLAN_E_SRAM_BOUNDS;
        t->data = (const int8_t *)(const void *)(ctx->sram + op->offset);
    }
    out = &ops[L->n_inputs];
    if (out->tensor != L->output || out->tensor >= m->n_tensors)
        return MEMPLAN_E_BAD_TABLE;
    ot = &m->tensors[out->tensor];
    if (!region_ok(&out->region, ot->c, ot->h, ot->w))
        return MEMPLAN_E_BAD_TABLE;
    if (!span_ok(out->offset, region_numel(&out->region), m->sram_bytes))
        return MEMPLAN_E_SRAM_BOUNDS;
    if (L->row_bytes != 0) {
        int32_t c0 = cmd->region.c0, c1 = cmd->region.c1;
        uint64_t n = slice_bytes(L, c0, c1);
        uint64_t nrows = (uint64_t)(c1 - c0) * L->row_bytes;
        if (cmd->weights_offset != MEMPLAN_NONE) {
            if (!span_ok(cmd->weights_offset, n, m->sram_bytes))
                return MEMPLAN_E_SRAM_BOUNDS;
            rows = (const int8_t *)(const void *)(ctx->sram + cmd->weights_offset);
            if (L->bias_offset != MEMPLAN_NONE)
                biases = ctx->sram + cmd->weights_offset + nrows;
        } else {
            if (!m->weights_in_place)
                return MEMPLAN_E_NO_WEIGHTS;
            if (!blob_slice_ok(m, L, c0, c1))
                return MEMPLAN_E_WEIGHT_BOUNDS;
            rows = (const int8_t *)(const void *)(ctx->weights + L->w_offset + (uint64_t)c0 * L->row_bytes);
            if (L->bias_offset != MEMPLAN_NONE)
                biases = ctx->weights + L->bias_offset + 4ull * (uint64_t)c0;
            ctx->counters.dram_read_weights += n; /* read in place: DRAM / flash traffic */
        }
    }
    status = memplan_kernel(m, L, ctx->tiles, cmd->region, (int8_t *)(void *)(ctx->sram + out->offset), out->region,
                            rows, biases, &macs);
    ctx->counters.macs += macs;
    return status;
}

/* ------------------------------------------------------------------ host layers */
static int host(memplan_ctx *ctx, const memplan_command *cmd)
{
    const memplan_model *m = ctx->model;
    const memplan_layer *L;
    const memplan_layer_input *in;
    const memplan_tensor *t;
    uint32_t i, k;
    if (cmd->layer >= m->n_layers)
        return MEMPLAN_E_BAD_TABLE;
    L = &m->layers[cmd->layer];
    if (L->op != MEMPLAN_OP_HOST || ctx->host == NULL)
        return MEMPLAN_E_HOST;
    in = m->layer_inputs + L->input0;
    for (i = 0; i < L->n_inputs; i++) {
        int seen = 0;
        t = &m->tensors[in[i].tensor];
        if (t->dram_offset == MEMPLAN_NONE || !span_ok(t->dram_offset, memplan_tensor_bytes(t), m->dram_arena_bytes))
            return MEMPLAN_E_DRAM_BOUNDS;
        for (k = 0; k < i; k++)
            seen |= in[k].tensor == in[i].tensor;
        if (!seen) /* a tensor read twice is read once */
            ctx->counters.host_dram_read += memplan_tensor_bytes(t);
    }
    t = &m->tensors[L->output];
    if (t->dram_offset == MEMPLAN_NONE || !span_ok(t->dram_offset, memplan_tensor_bytes(t), m->dram_arena_bytes))
        return MEMPLAN_E_DRAM_BOUNDS;
    if (ctx->host(ctx->host_user, m, cmd->layer, ctx->dram) != 0)
        return MEMPLAN_E_HOST;
    ctx->counters.host_dram_write += memplan_tensor_bytes(t);
    ctx->counters.host_layers += 1;
    return MEMPLAN_OK;
}

/* ------------------------------------------------------------------ rolling buffers */
static int copy(memplan_ctx *ctx, const memplan_command *cmd)
{
    const memplan_model *m = ctx->model;
    const memplan_operand *src, *dst;
    const memplan_tensor *t;
    const memplan_region *r = &cmd->region;
    int32_t c, y;
    if (cmd->tensor >= m->n_tensors || cmd->operand0 == MEMPLAN_NONE)
        return MEMPLAN_E_BAD_TABLE;
    t = &m->tensors[cmd->tensor];
    src = &m->operands[cmd->operand0];
    dst = src + 1;
    if (!region_ok(r, t->c, t->h, t->w) || src->tensor != cmd->tensor || dst->tensor != cmd->tensor ||
        !region_ok(&src->region, t->c, t->h, t->w) || !region_ok(&dst->region, t->c, t->h, t->w) ||
        !contains(&src->region, r) || !contains(&dst->region, r))
        return MEMPLAN_E_BAD_TABLE;
    if (!span_ok(src->offset, region_numel(&src->region), m->sram_bytes) ||
        !span_ok(dst->offset, region_numel(&dst->region), m->sram_bytes))
        return MEMPLAN_E_SRAM_BOUNDS;
    for (c = r->c0; c < r->c1; c++)
        for (y = r->y0; y < r->y1; y++) /* one row of the region is contiguous in both views */
            memmove(ctx->sram + dst->offset + view_index(&dst->region, c, y, r->x0),
                    ctx->sram + src->offset + view_index(&src->region, c, y, r->x0), (size_t)(r->x1 - r->x0));
    return MEMPLAN_OK;
}

/* ------------------------------------------------------------------ the stream */
int memplan_run(memplan_ctx *ctx)
{
    const memplan_model *m = ctx->model;
    uint32_t k;
    memset(&ctx->counters, 0, sizeof ctx->counters);
    ctx->status = MEMPLAN_OK;
    ctx->failed_command = MEMPLAN_NONE;
    for (k = 0; k < m->n_commands; k++) {
        const memplan_command *cmd = &m->commands[k];
        int status;
        switch (cmd->op) {
        case MEMPLAN_CMD_LOAD:
            status = dma(ctx, cmd, 1);
            break;
        case MEMPLAN_CMD_STORE:
            status = dma(ctx, cmd, 0);
            break;
        case MEMPLAN_CMD_LOAD_WEIGHTS:
            status = load_weights(ctx, cmd);
            break;
        case MEMPLAN_CMD_COMPUTE:
            status = compute(ctx, cmd);
            break;
        case MEMPLAN_CMD_HOST:
            status = host(ctx, cmd);
            break;
        case MEMPLAN_CMD_COPY:
            status = copy(ctx, cmd);
            break;
        default:
            status = MEMPLAN_E_BAD_TABLE;
            break;
        }
        if (status != MEMPLAN_OK) {
            ctx->status = status;
            ctx->failed_command = k;
            return status;
        }
    }
    return MEMPLAN_OK;
}
