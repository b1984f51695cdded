/*
 * memplan reference runtime: int8 kernels, bit-exact with memplan.execute.kernels.
 *
 * Every kernel computes a box of a layer's output (full-tensor coordinates) from input tiles
 * that hold regions of the inputs. An input cell outside the tensor is padding (what it is
 * depends on the op, as in memplan.execute.kernels); a cell inside the tensor but outside its
 * tile is an error (MEMPLAN_E_MISSING_INPUT): the plan's halo was too short.
 *
 * Arithmetic is integer only: int64 accumulators, the fixed-point requantisation of
 * memplan.execute.fixedpoint (TFLite Micro's MultiplyByQuantizedMultiplier with gemmlowp's
 * SaturatingRoundingDoublingHighMul and RoundingDivideByPOT), tables precomputed by the
 * exporter for everything that needed floating point. Right shifts of negative values are
 * written as floor divisions so the result does not depend on the compiler.
 */
#include "memplan_runtime.h"

#include <string.h>

#define I32_MIN (-2147483647L - 1L)
#define I32_MAX 2147483647L

/* ------------------------------------------------------------------ fixed point */
/* floor(x / 2^e) for 0 <= e <= 62, without relying on >> of negative values */
static int64_t floor_shift(int64_t x, int e)
{
    if (x >= 0)
        return x >> e;
    return -(((-(x + 1)) >> e)) - 1;
}

int32_t memplan_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge, num, high;
    if (a == (int32_t)I32_MIN && b == (int32_t)I32_MIN)
        return (int32_t)I32_MAX;
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    num = ab + nudge;
    high = num / ((int64_t)1 << 31); /* C division truncates towards zero, as gemmlowp */
    return (int32_t)high;
}

int64_t memplan_rounding_divide_by_pot(int64_t x, int exponent)
{
    int64_t mask = ((int64_t)1 << exponent) - 1;
    int64_t q = floor_shift(x, exponent);
    int64_t remainder = x - q * ((int64_t)1 << exponent); /* x & mask, two's complement */
    int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return q + (remainder > threshold ? 1 : 0);
}

int64_t memplan_mbqm(int64_t x, int32_t m, int32_t shift, int *status)
{
    int left = shift > 0 ? shift : 0;
    int right = shift < 0 ? -shift : 0;
    int64_t shifted;
    if (x < I32_MIN || x > I32_MAX) {
        *status = MEMPLAN_E_OVERFLOW;
        return 0;
    }
    if (x != 0 && left > 31) {
        *status = MEMPLAN_E_OVERFLOW;
        return 0;
    }
    shifted = x * ((int64_t)1 << (left > 31 ? 0 : left));
    if (shifted < I32_MIN || shifted > I32_MAX) {
        *status = MEMPLAN_E_OVERFLOW;
        return 0;
    }
    if (right > 31) {
        *status = MEMPLAN_E_BAD_TABLE;
        return 0;
    }
    return memplan_rounding_divide_by_pot(memplan_srdhm((int32_t)shifted, m), right);
}

int64_t memplan_divide_round_half_away(int64_t num, int64_t den)
{
    if (num >= 0)
        return (num + den / 2) / den;
    return -((-num + den / 2) / den);
}

/* ------------------------------------------------------------------ helpers */
typedef struct job {
    const memplan_model *model;
    const memplan_layer *L;
    const memplan_tile *tiles;
    const memplan_layer_input *in;  /* the layer's inputs */
    memplan_region r;               /* output region */
    int8_t *out;
    memplan_region held;
    const int8_t *rows;
    const uint8_t *biases;
    int status;
} job;

static int32_t le_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    if (u >= 0x80000000u)
        return -(int32_t)(~u) - 1;
    return (int32_t)u;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* read cell (c, y, x) of input tile t: 1 = the value, 0 = outside the tensor (padding); a cell
   inside the tensor that the tile lacks sets the job's status */
static int cell(job *j, const memplan_tile *t, int32_t c, int32_t y, int32_t x, int32_t *v)
{
    const memplan_region *r = &t->region;
    if (c < 0 || c >= t->C || y < 0 || y >= t->H || x < 0 || x >= t->W)
        return 0;
    if (t->data == NULL || c < r->c0 || c >= r->c1 || y < r->y0 || y >= r->y1 || x < r->x0 || x >= r->x1) {
        j->status = MEMPLAN_E_MISSING_INPUT;
        *v = 0;
        return 1;
    }
    *v = t->data[((int64_t)(c - r->c0) * (r->y1 - r->y0) + (y - r->y0)) * (r->x1 - r->x0) + (x - r->x0)];
    return 1;
}

/* a cell that is always inside the tensor (elementwise reads, gathers) */
static int32_t cell_in(job *j, const memplan_tile *t, int32_t c, int32_t y, int32_t x)
{
    int32_t v = 0;
    if (!cell(j, t, c, y, x, &v))
        j->status = MEMPLAN_E_BAD_TABLE;
    return v;
}

static int64_t requant_ch(job *j, int64_t x, int32_t c)
{
    const memplan_layer *L = j->L;
    uint32_t i = L->rq_n == 1 ? 0 : (uint32_t)c;
    return memplan_mbqm(x, L->rq_mult[i], L->rq_shift[i], &j->status);
}

/* clamp to the activation range, then the table if any */
static int8_t activate(job *j, int64_t v, int32_t c)
{
    const memplan_layer *L = j->L;
    int64_t q = clamp64(v, L->act_lo, L->act_hi);
    if (L->lut == NULL)
        return (int8_t)q;
    if (L->lut_per_channel)
        return L->lut[(size_t)c * 256 + (size_t)(q + 128)];
    return L->lut[q + 128];
}

/* a bias-added accumulator -> int8 (memplan's _finish_accumulator) */
static int8_t finish_acc(job *j, int64_t acc, int32_t c)
{
    acc = clamp64(acc, I32_MIN, I32_MAX);
    return activate(j, requant_ch(j, acc, c) + j->L->stage_zp, c);
}

/* a value in input 0's quantised domain -> int8 (memplan's _finish_input_domain) */
static int8_t finish_in(job *j, int64_t q, int32_t c)
{
    if (j->L->rq_n != 0)
        q = requant_ch(j, q - j->in[0].zero_point, c) + j->L->stage_zp;
    return activate(j, q, c);
}

static void put(job *j, int32_t c, int32_t y, int32_t x, int8_t v)
{
    const memplan_region *h = &j->held;
    j->out[((int64_t)(c - h->c0) * (h->y1 - h->y0) + (y - h->y0)) * (h->x1 - h->x0) + (x - h->x0)] = v;
}

static int64_t bias_of(job *j, int32_t c)
{
    if (j->biases == NULL)
        return 0;
    return le_i32(j->biases + (size_t)(c - j->r.c0) * 4);
}

/* ------------------------------------------------------------------ convolutions */
/* the in-tensor input positions [*lo, *hi) that outputs [o0, o1) read along one axis of a
   sliding window (o * s - pad + tap * d, tap < k); *lo == *hi when none */
static void used_span(int32_t o0, int32_t o1, int32_t s, int32_t pad, int32_t k, int32_t d, int32_t n, int32_t *lo,
                      int32_t *hi)
{
    int32_t o, tap;
    *lo = n;
    *hi = 0;
    for (o = o0; o < o1; o++)
        for (tap = 0; tap < k; tap++) {
            int32_t i = o * s - pad + tap * d;
            if (i >= 0 && i < n) {
                *lo = i < *lo ? i : *lo;
                *hi = i + 1 > *hi ? i + 1 : *hi;
            }
        }
    if (*lo >= *hi)
        *lo = *hi = 0;
}

/* the taps [*t0, *t1) of output position o that land inside [0, n) */
static void tap_range(int32_t o, int32_t s, int32_t pad, int32_t k, int32_t d, int32_t n, int32_t *t0, int32_t *t1)
{
    int32_t first = o * s - pad; /* input position of tap 0 */
    int32_t a = 0, b = k;
    if (first < 0)
        a = (-first + d - 1) / d;
    if (first + (k - 1) * d >= n)
        b = first >= n ? 0 : (n - 1 - first) / d + 1;
    *t0 = a;
    *t1 = b > a ? b : a;
}

static void k_conv(job *j, uint64_t *macs)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    const memplan_region *tr = &t->region;
    int32_t kh = L->kernel[0], kw = L->kernel[1], sh = L->stride[0], sw = L->stride[1];
    int32_t dh = L->dilation[0], dw = L->dilation[1], top = L->pads[0], left = L->pads[1];
    int32_t co_g = L->out_c / L->groups, ci_g = t->C / L->groups;
    int32_t zp = j->in[0].zero_point;
    int32_t trows = tr->y1 - tr->y0, tcols = tr->x1 - tr->x0;
    int64_t plane = (int64_t)trows * tcols;
    int32_t c, y, x, ci, ky, kx, ylo, yhi, xlo, xhi;
    /* the tile must hold every in-tensor cell the region reads (memplan's `need`) */
    used_span(j->r.y0, j->r.y1, sh, top, kh, dh, t->H, &ylo, &yhi);
    used_span(j->r.x0, j->r.x1, sw, left, kw, dw, t->W, &xlo, &xhi);
    if (ylo < yhi && xlo < xhi) {
        int32_t cin_lo = (j->r.c0 / co_g) * ci_g, cin_hi = ((j->r.c1 - 1) / co_g + 1) * ci_g;
        if (t->data == NULL || ylo < tr->y0 || yhi > tr->y1 || xlo < tr->x0 || xhi > tr->x1 || cin_lo < tr->c0 ||
            cin_hi > tr->c1) {
            j->status = MEMPLAN_E_MISSING_INPUT;
            return;
        }
    }
    for (c = j->r.c0; c < j->r.c1; c++) {
        const int8_t *w = j->rows + (size_t)(c - j->r.c0) * L->row_bytes; /* (ci_g, kh, kw) */
        int32_t cin0 = (c / co_g) * ci_g;
        int64_t bias = bias_of(j, c);
        for (y = j->r.y0; y < j->r.y1; y++) {
            int32_t ky0, ky1, iy0 = y * sh - top;
            tap_range(y, sh, top, kh, dh, t->H, &ky0, &ky1);
            for (x = j->r.x0; x < j->r.x1; x++) {
                int32_t kx0, kx1, ix0 = x * sw - left;
                int64_t acc = 0;
                tap_range(x, sw, left, kw, dw, t->W, &kx0, &kx1);
                if (ky0 < ky1 && kx0 < kx1) {
                    /* element indices, not pointers: a tap's row/column offset alone may be negative */
                    int64_t first = (int64_t)(cin0 - tr->c0) * plane + (int64_t)(ix0 - tr->x0);
                    for (ci = 0; ci < ci_g; ci++) {
                        const int8_t *wc = w + (size_t)ci * kh * kw;
                        int64_t s = 0;
                        for (ky = ky0; ky < ky1; ky++) {
                            const int8_t *row = t->data + (first + ci * plane + (int64_t)(iy0 + ky * dh - tr->y0) * tcols +
                                                           (int64_t)kx0 * dw);
                            const int8_t *wr = wc + ky * kw;
                            for (kx = kx0; kx < kx1; kx++)
                                s += ((int32_t)row[(kx - kx0) * dw] - zp) * wr[kx];
                        }
                        acc += s;
                    }
                }
                put(j, c, y, x, finish_acc(j, acc + bias, c));
            }
        }
    }
    *macs = (uint64_t)(j->r.c1 - j->r.c0) * (uint64_t)(j->r.y1 - j->r.y0) * (uint64_t)(j->r.x1 - j->r.x0) *
            (uint64_t)L->row_bytes;
}

/* pairs (output position in [o0, o1), tap) of a ConvTranspose axis that land on an input in [0, n) */
static uint64_t landed_taps(int32_t o0, int32_t o1, int32_t k, int32_t s, int32_t pad, int32_t d, int32_t n)
{
    uint64_t count = 0;
    int32_t o, tap;
    for (o = o0; o < o1; o++) {
        for (tap = 0; tap < k; tap++) {
            int32_t num = o + pad - tap * d;
            if (num >= 0 && num % s == 0 && num / s < n)
                count++;
        }
    }
    return count;
}

static void k_conv_transpose(job *j, uint64_t *macs)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t kh = L->kernel[0], kw = L->kernel[1], sh = L->stride[0], sw = L->stride[1];
    int32_t dh = L->dilation[0], dw = L->dilation[1], top = L->pads[0], left = L->pads[1];
    int32_t co_g = L->out_c / L->groups, ci_g = t->C / L->groups;
    int32_t zp = j->in[0].zero_point;
    int32_t c, y, x, ci, ky, kx;
    for (c = j->r.c0; c < j->r.c1; c++) {
        const int8_t *w = j->rows + (size_t)(c - j->r.c0) * L->row_bytes; /* (ci_g, kh, kw) */
        int32_t cin0 = (c / co_g) * ci_g;
        int64_t bias = bias_of(j, c);
        for (y = j->r.y0; y < j->r.y1; y++) {
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t acc = 0;
                for (ky = 0; ky < kh; ky++) {
                    int32_t ny = y + top - ky * dh, iy;
                    if (ny < 0 || ny % sh != 0 || ny / sh >= t->H)
                        continue;
                    iy = ny / sh;
                    for (kx = 0; kx < kw; kx++) {
                        int32_t nx = x + left - kx * dw, ix;
                        if (nx < 0 || nx % sw != 0 || nx / sw >= t->W)
                            continue;
                        ix = nx / sw;
                        for (ci = 0; ci < ci_g; ci++) {
                            int32_t v = 0;
                            if (!cell(j, t, cin0 + ci, iy, ix, &v))
                                continue;
                            acc += (int64_t)(v - zp) * w[((size_t)ci * kh + ky) * kw + kx];
                        }
                    }
                }
                if (j->status != MEMPLAN_OK)
                    return;
                put(j, c, y, x, finish_acc(j, acc + bias, c));
            }
        }
    }
    {
        int32_t ci_red = (int32_t)(L->row_bytes / ((uint32_t)kh * (uint32_t)kw));
        uint64_t ty = landed_taps(j->r.y0, j->r.y1, kh, sh, top, dh, t->H);
        uint64_t tx = landed_taps(j->r.x0, j->r.x1, kw, sw, left, dw, t->W);
        *macs = (uint64_t)(j->r.c1 - j->r.c0) * (uint64_t)ci_red * ty * tx;
    }
}

static void k_fully_connected(job *j, uint64_t *macs)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    const memplan_region *tr = &t->region;
    int32_t zp = j->in[0].zero_point;
    int64_t n = (int64_t)t->C * t->H * t->W, i;
    int32_t c;
    if (t->data == NULL || tr->c0 != 0 || tr->c1 != t->C || tr->y0 != 0 || tr->y1 != t->H || tr->x0 != 0 ||
        tr->x1 != t->W) {
        j->status = MEMPLAN_E_MISSING_INPUT;
        return;
    }
    for (c = j->r.c0; c < j->r.c1; c++) {
        const int8_t *w = j->rows + (size_t)(c - j->r.c0) * L->row_bytes;
        int64_t acc = 0;
        for (i = 0; i < n; i++)
            acc += (int64_t)((int32_t)t->data[i] - zp) * w[i];
        put(j, c, 0, 0, finish_acc(j, acc + bias_of(j, c), c));
    }
    *macs = (uint64_t)(j->r.c1 - j->r.c0) * (uint64_t)L->row_bytes;
}

/* ------------------------------------------------------------------ pools */
static void k_max_pool(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t c, y, x, ky, kx;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t m = -32768; /* padding never wins */
                for (ky = 0; ky < L->kernel[0]; ky++)
                    for (kx = 0; kx < L->kernel[1]; kx++) {
                        int32_t v;
                        if (cell(j, t, c, y * L->stride[0] - L->pads[0] + ky, x * L->stride[1] - L->pads[1] + kx, &v) &&
                            v > m)
                            m = v;
                    }
                if (m < -128)
                    m = -128; /* a window of padding only */
                put(j, c, y, x, finish_in(j, m, c));
            }
}

static void k_avg_pool(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t zp = j->in[0].zero_point;
    int32_t c, y, x, ky, kx;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t total = 0, valid = (int64_t)L->tab[0][y] * L->tab[2][x];
                int64_t counted = (int64_t)L->tab[1][y] * L->tab[3][x];
                for (ky = 0; ky < L->kernel[0]; ky++)
                    for (kx = 0; kx < L->kernel[1]; kx++) {
                        int32_t v;
                        if (cell(j, t, c, y * L->stride[0] - L->pads[0] + ky, x * L->stride[1] - L->pads[1] + kx, &v))
                            total += v;
                    }
                if (counted <= 0) {
                    j->status = MEMPLAN_E_BAD_TABLE;
                    return;
                }
                total += (int64_t)zp * (counted - valid); /* counted padding holds real 0 */
                put(j, c, y, x, finish_in(j, memplan_divide_round_half_away(total, counted), c));
            }
}

static void k_global_pool(job *j, int is_max)
{
    const memplan_tile *t = &j->tiles[0];
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++) {
        int64_t acc = is_max ? -32768 : 0;
        for (y = 0; y < t->H; y++)
            for (x = 0; x < t->W; x++) {
                int32_t v = cell_in(j, t, c, y, x);
                if (is_max)
                    acc = v > acc ? v : acc;
                else
                    acc += v;
            }
        if (is_max) {
            put(j, c, 0, 0, finish_in(j, acc, c));
        } else {
            /* TFLite Micro's MEAN: the sum of q - zp_in times one multiplier of s_in / (s_out * n) */
            acc -= (int64_t)j->in[0].zero_point * ((int64_t)t->H * t->W);
            acc = clamp64(acc, I32_MIN, I32_MAX);
            put(j, c, 0, 0, activate(j, requant_ch(j, acc, 0) + j->L->stage_zp, c));
        }
    }
}

/* ------------------------------------------------------------------ elementwise */
/* input i's cell at output cell (c, y, x), broadcasting size-1 axes */
static int32_t bcast(job *j, uint32_t i, int32_t c, int32_t y, int32_t x)
{
    const memplan_layer_input *in = &j->in[i];
    return cell_in(j, &j->tiles[i], in->c == 1 ? 0 : c, in->h == 1 ? 0 : y, in->w == 1 ? 0 : x);
}

/* input i's value in the stage domain (concat, max, min) */
static int64_t in_stage(job *j, uint32_t i, int32_t q)
{
    const memplan_layer_input *in = &j->in[i];
    if (!in->has_rq)
        return q;
    return memplan_mbqm((int64_t)q - in->zero_point, in->rq_mult, in->rq_shift, &j->status) + j->L->stage_zp;
}

static void k_add(job *j)
{
    const memplan_layer *L = j->L;
    int32_t c, y, x;
    uint32_t i;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t raw = 0;
                for (i = 0; i < L->n_inputs; i++) {
                    const memplan_layer_input *in = &j->in[i];
                    int64_t shifted = ((int64_t)bcast(j, i, c, y, x) - in->zero_point) * ((int64_t)1 << MEMPLAN_ADD_LEFT_SHIFT);
                    int64_t scaled = memplan_mbqm(shifted, in->rq_mult, in->rq_shift, &j->status);
                    if (i == 0)
                        raw = scaled;
                    else if (L->op == MEMPLAN_OP_SUB)
                        raw -= scaled;
                    else
                        raw += scaled;
                }
                raw = clamp64(raw, I32_MIN, I32_MAX);
                put(j, c, y, x, activate(j, requant_ch(j, raw, 0) + L->stage_zp, c));
            }
}

static void k_mul(job *j)
{
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t a = (int64_t)bcast(j, 0, c, y, x) - j->in[0].zero_point;
                int64_t b = (int64_t)bcast(j, 1, c, y, x) - j->in[1].zero_point;
                put(j, c, y, x, activate(j, requant_ch(j, a * b, 0) + j->L->stage_zp, c));
            }
}

static void k_extremum(job *j)
{
    const memplan_layer *L = j->L;
    int32_t c, y, x;
    uint32_t i;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t best = 0;
                for (i = 0; i < L->n_inputs; i++) {
                    int64_t v = in_stage(j, i, bcast(j, i, c, y, x));
                    if (i == 0 || (L->op == MEMPLAN_OP_MAX ? v > best : v < best))
                        best = v;
                }
                put(j, c, y, x, activate(j, best, c));
            }
}

static void k_concat(job *j)
{
    const memplan_layer *L = j->L;
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++) {
        uint32_t i = 0;
        int32_t base = 0;
        while (i < L->n_inputs && c >= base + j->in[i].c) {
            base += j->in[i].c;
            i++;
        }
        if (i == L->n_inputs) {
            j->status = MEMPLAN_E_BAD_TABLE;
            return;
        }
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++)
                put(j, c, y, x, activate(j, in_stage(j, i, cell_in(j, &j->tiles[i], c - base, y, x)), c));
    }
}

/* ------------------------------------------------------------------ moves */
static void k_pad(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int32_t v;
                if (!cell(j, t, c - L->param[0], y - L->pads[0], x - L->pads[1], &v))
                    v = j->in[0].zero_point; /* the padding is real 0 */
                put(j, c, y, x, finish_in(j, v, c));
            }
}

static void k_slice(job *j)
{
    const memplan_layer *L = j->L;
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++)
                put(j, c, y, x, finish_in(j, cell_in(j, &j->tiles[0], c + L->param[0], y + L->param[1], x + L->param[2]), c));
}

static void k_block(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t b = L->param[0], crd = L->param[1];
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int32_t sc, sy, sx;
                if (L->op == MEMPLAN_OP_DEPTH_TO_SPACE) {
                    int32_t shallow = t->C / (b * b), dy = y % b, dx = x % b;
                    sc = crd ? (c * b + dy) * b + dx : (dy * b + dx) * shallow + c;
                    sy = y / b;
                    sx = x / b;
                } else {
                    int32_t blk = c / t->C;
                    sc = c % t->C;
                    sy = y * b + blk / b;
                    sx = x * b + blk % b;
                }
                put(j, c, y, x, finish_in(j, cell_in(j, t, sc, sy, sx), c));
            }
}

static void k_channel_shuffle(job *j)
{
    const memplan_layer *L = j->L;
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++)
                put(j, c, y, x, finish_in(j, cell_in(j, &j->tiles[0], L->tab[0][c], y, x), c));
}

static void k_resize(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    const int64_t one = (int64_t)1 << MEMPLAN_RESIZE_FRAC_BITS;
    int32_t c, y, x;
    for (c = j->r.c0; c < j->r.c1; c++)
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t v;
                if (L->param[0] == 0) {
                    v = cell_in(j, t, c, L->tab[0][y], L->tab[1][x]);
                } else {
                    int32_t y0 = L->tab[0][y], y1 = L->tab[1][y], x0 = L->tab[3][x], x1 = L->tab[4][x];
                    int64_t wy = L->tab[2][y], wx = L->tab[5][x];
                    int64_t r0 = cell_in(j, t, c, y0, x0) * (one - wy) + cell_in(j, t, c, y1, x0) * wy;
                    int64_t r1 = cell_in(j, t, c, y0, x1) * (one - wy) + cell_in(j, t, c, y1, x1) * wy;
                    v = memplan_divide_round_half_away(r0 * (one - wx) + r1 * wx, one * one);
                }
                put(j, c, y, x, finish_in(j, v, c));
            }
}

/* ------------------------------------------------------------------ normalisations */
/* int64 -> int32 with two's-complement wrap (C int32 arithmetic, without its undefined overflow) */
static int32_t wrap32(int64_t v)
{
    uint32_t u = (uint32_t)((uint64_t)v & 0xFFFFFFFFu);
    if (u >= 0x80000000u)
        return -(int32_t)(~u) - 1;
    return (int32_t)u;
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<e>, e > 0: a saturating left shift */
static int32_t sat_shift_left(int32_t x, int e)
{
    int64_t threshold = ((int64_t)1 << (31 - e)) - 1;
    if (x > threshold)
        return (int32_t)I32_MAX;
    if (x < -threshold)
        return (int32_t)I32_MIN;
    return (int32_t)((int64_t)x * ((int64_t)1 << e));
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in Q0.31 [0, 1), Q0.31, by three
   Newton-Raphson steps in Q2.29 from 48/17 - 32/17 * (1 + a) / 2 */
static int32_t one_over_one_plus_x(int32_t a)
{
    int64_t sum = (int64_t)a + I32_MAX;
    int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum */
    int32_t x = wrap32((int64_t)1515870810 + memplan_srdhm(half_den, -1010580540));
    int i;
    for (i = 0; i < 3; i++) {
        int32_t one_minus = wrap32(((int64_t)1 << 29) - memplan_srdhm(half_den, x));
        x = wrap32((int64_t)x + sat_shift_left(memplan_srdhm(x, one_minus), 2));
    }
    return sat_shift_left(x, 1);
}

static int clz32(uint32_t u)
{
    int n = 0;
    if (u == 0)
        return 32;
    while (!(u & 0x80000000u)) {
        u <<= 1;
        n++;
    }
    return n;
}

/* TFLite Micro's int8 softmax (reference_ops::Softmax, output 1/256, zero point -128): table[d] is
   exp_on_negative_values of the scaled difference -d to the maximum (Q0.31, 0 below diff_min);
   the sum in Q12.19, GetReciprocal, each output exp * reciprocal >> (num_bits_over_unit + 23) */
static void k_softmax_tflm(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t c, k, y, x;
    for (y = j->r.y0; y < j->r.y1; y++)
        for (x = j->r.x0; x < j->r.x1; x++) {
            int32_t mx = -128, sum, scale;
            int64_t total = 0;
            int headroom, exponent;
            for (k = 0; k < t->C; k++) {
                int32_t v = cell_in(j, t, k, y, x);
                mx = v > mx ? v : mx;
            }
            for (k = 0; k < t->C; k++)
                total += memplan_rounding_divide_by_pot(L->table[mx - cell_in(j, t, k, y, x)], 12);
            sum = wrap32(total);
            headroom = clz32((uint32_t)sum);
            scale = one_over_one_plus_x(
                wrap32((int64_t)(((uint64_t)(uint32_t)sum << headroom) & 0xFFFFFFFFu) - ((int64_t)1 << 31)));
            exponent = 12 - headroom + 31 - 8;
            for (c = j->r.c0; c < j->r.c1; c++) {
                int32_t e = (int32_t)L->table[mx - cell_in(j, t, c, y, x)];
                int64_t r = exponent > 31 ? 0 : memplan_rounding_divide_by_pot(memplan_srdhm(scale, e), exponent);
                put(j, c, y, x, activate(j, r - 128, c));
            }
        }
}

static void k_softmax(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t c, k, y, x;
    if (L->param[0] == 1) {
        k_softmax_tflm(j);
        return;
    }
    for (y = j->r.y0; y < j->r.y1; y++)
        for (x = j->r.x0; x < j->r.x1; x++) {
            int32_t mx = -128;
            int64_t total = 0, den;
            for (k = 0; k < t->C; k++) {
                int32_t v = cell_in(j, t, k, y, x);
                mx = v > mx ? v : mx;
            }
            for (k = 0; k < t->C; k++)
                total += L->table[mx - cell_in(j, t, k, y, x)];
            den = total * ((int64_t)1 << MEMPLAN_SOFTMAX_MUL_BITS);
            for (c = j->r.c0; c < j->r.c1; c++) {
                int64_t num = L->table[mx - cell_in(j, t, c, y, x)] * L->table_mul;
                put(j, c, y, x, activate(j, (2 * num + den) / (2 * den) + L->stage_zp, c));
            }
        }
}

static void k_lrn(job *j)
{
    const memplan_layer *L = j->L;
    const memplan_tile *t = &j->tiles[0];
    int32_t size = L->param[0], zp = j->in[0].zero_point;
    int32_t c, k, y, x;
    for (c = j->r.c0; c < j->r.c1; c++) {
        int32_t lo = c - (size - 1) / 2;
        for (y = j->r.y0; y < j->r.y1; y++)
            for (x = j->r.x0; x < j->r.x1; x++) {
                int64_t sq = 0, vc;
                for (k = lo; k < lo + size; k++) {
                    int32_t v;
                    if (cell(j, t, k, y, x, &v))
                        sq += (int64_t)(v - zp) * (v - zp);
                }
                if (sq < 0 || (uint64_t)sq >= L->table_len) {
                    j->status = MEMPLAN_E_BAD_TABLE;
                    return;
                }
                vc = (int64_t)cell_in(j, t, c, y, x) - zp;
                put(j, c, y, x,
                    activate(j, memplan_divide_round_half_away(vc * L->table[sq], (int64_t)1 << MEMPLAN_LRN_TABLE_BITS) +
                                    L->stage_zp, c));
            }
    }
}

/* ------------------------------------------------------------------ dispatch */
int memplan_kernel(const memplan_model *model, const memplan_layer *layer, const memplan_tile *tiles,
                   memplan_region region, int8_t *out, memplan_region held, const int8_t *rows,
                   const uint8_t *biases, uint64_t *macs)
{
    job j;
    j.model = model;
    j.L = layer;
    j.tiles = tiles;
    j.in = model->layer_inputs + layer->input0;
    j.r = region;
    j.out = out;
    j.held = held;
    j.rows = rows;
    j.biases = biases;
    j.status = MEMPLAN_OK;
    *macs = 0;
    if (region.c0 < held.c0 || region.c1 > held.c1 || region.y0 < held.y0 || region.y1 > held.y1 ||
        region.x0 < held.x0 || region.x1 > held.x1 || region.c0 >= region.c1 || region.y0 >= region.y1 ||
        region.x0 >= region.x1)
        return MEMPLAN_E_BAD_TABLE;
    switch (layer->op) {
    case MEMPLAN_OP_CONV:
        k_conv(&j, macs);
        break;
    case MEMPLAN_OP_CONV_TRANSPOSE:
        k_conv_transpose(&j, macs);
        break;
    case MEMPLAN_OP_FULLY_CONNECTED:
        k_fully_connected(&j, macs);
        break;
    case MEMPLAN_OP_MAX_POOL:
        k_max_pool(&j);
        break;
    case MEMPLAN_OP_AVG_POOL:
        k_avg_pool(&j);
        break;
    case MEMPLAN_OP_GLOBAL_AVG_POOL:
        k_global_pool(&j, 0);
        break;
    case MEMPLAN_OP_GLOBAL_MAX_POOL:
        k_global_pool(&j, 1);
        break;
    case MEMPLAN_OP_ADD:
    case MEMPLAN_OP_SUB:
        k_add(&j);
        break;
    case MEMPLAN_OP_MUL:
        k_mul(&j);
        break;
    case MEMPLAN_OP_MAX:
    case MEMPLAN_OP_MIN:
        k_extremum(&j);
        break;
    case MEMPLAN_OP_CONCAT:
        k_concat(&j);
        break;
    case MEMPLAN_OP_PAD:
        k_pad(&j);
        break;
    case MEMPLAN_OP_SLICE:
        k_slice(&j);
        break;
    case MEMPLAN_OP_DEPTH_TO_SPACE:
    case MEMPLAN_OP_SPACE_TO_DEPTH:
        k_block(&j);
        break;
    case MEMPLAN_OP_CHANNEL_SHUFFLE:
        k_channel_shuffle(&j);
        break;
    case MEMPLAN_OP_RESIZE:
        k_resize(&j);
        break;
    case MEMPLAN_OP_SOFTMAX:
        k_softmax(&j);
        break;
    case MEMPLAN_OP_LRN:
        k_lrn(&j);
        break;
    default:
        return MEMPLAN_E_BAD_TABLE;
    }
    return j.status;
}
