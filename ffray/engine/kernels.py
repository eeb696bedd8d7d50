"""CUDA kernels of the GPU frame backend (compiled by CuPy's RawModule at worker start).

Frames are packed 8-bit planar YUV on the device (Y W x H, then U and V CW x CH). Samplers read
YUV bilinearly (chroma at its centre-sited position) and convert with the source's matrix, so no
full-frame RGB copy ever exists; paste-back writes luma per pixel and chroma per subsampled block
from the block's alpha-weighted mean. The arithmetic is ``ffray.engine.colour``'s, the sampling is
OpenCV's (``warpAffine``/``resize`` with INTER_LINEAR), so CPU and GPU frames agree to rounding.
"""

import numpy as np

# A launch's per-item arguments (frame pointers, matrices, boxes, crop indices) travel by value in
# the kernel's parameters (``__grid_constant__``: read in place, never copied per thread), not in
# device buffers: no small host->device copy before each launch, which under load waited behind
# the frame uploads on the copy engine. Up to ``MAX_ITEMS`` items a launch; callers split larger
# batches. ``ITEMS`` is the host-side layout, checked against the compiler's at start.
MAX_ITEMS = 32
ITEMS = np.dtype({"names": ["frames", "m", "box", "sel", "has_box"],
                  "formats": [(np.uint64, (MAX_ITEMS,)), (np.float32, (MAX_ITEMS * 6,)),
                              (np.int32, (MAX_ITEMS * 4,)), (np.int64, (MAX_ITEMS,)), np.int32],
                  "offsets": [0, 8 * MAX_ITEMS, 32 * MAX_ITEMS, 48 * MAX_ITEMS, 56 * MAX_ITEMS],
                  "itemsize": 56 * MAX_ITEMS + 8})

SOURCE = r"""
#define MAX_ITEMS 32
struct Items {
    unsigned long long frames[MAX_ITEMS];  // packed YUV frames on the device
    float m[MAX_ITEMS * 6];                // per item 2x3 matrix
    int box[MAX_ITEMS * 4];                // warp: valid (w, h) at 2i; paste: chroma-block roi at 4i
    long long sel[MAX_ITEMS];              // paste: the item's crop (and mask) index
    int has_box;
};

extern "C" {

__global__ void items_layout(unsigned long long* out) {
    const Items* p = nullptr;
    out[0] = sizeof(Items);
    out[1] = (unsigned long long)&p->frames; out[2] = (unsigned long long)&p->m;
    out[3] = (unsigned long long)&p->box; out[4] = (unsigned long long)&p->sel;
    out[5] = (unsigned long long)&p->has_box;
}

__device__ __forceinline__ float tap_u8(const unsigned char* p, int w, int h, int x, int y) {
    x = min(max(x, 0), w - 1);
    y = min(max(y, 0), h - 1);
    return (float)p[(size_t)y * w + x];
}

__device__ __forceinline__ float bilinear_u8(const unsigned char* p, int w, int h, float x, float y) {
    float fx = floorf(x), fy = floorf(y);
    int x0 = (int)fx, y0 = (int)fy;
    float ax = x - fx, ay = y - fy;
    float a = tap_u8(p, w, h, x0, y0), b = tap_u8(p, w, h, x0 + 1, y0);
    float c = tap_u8(p, w, h, x0, y0 + 1), d = tap_u8(p, w, h, x0 + 1, y0 + 1);
    return (a * (1.f - ax) + b * ax) * (1.f - ay) + (c * (1.f - ax) + d * ax) * ay;
}

// one channel of a float plane, zero outside (BORDER_CONSTANT 0), each tap mapped and clipped
__device__ __forceinline__ float tap_f(const float* p, int s, int x, int y, float scale, float off,
                                       int clip) {
    if (x < 0 || y < 0 || x >= s || y >= s) return 0.f;
    float v = p[(size_t)y * s + x] * scale + off;
    return clip ? fminf(fmaxf(v, 0.f), 255.f) : v;
}

__device__ __forceinline__ float bilinear_f(const float* p, int s, float x, float y, float scale,
                                            float off, int clip) {
    float fx = floorf(x), fy = floorf(y);
    int x0 = (int)fx, y0 = (int)fy;
    float ax = x - fx, ay = y - fy;
    float a = tap_f(p, s, x0, y0, scale, off, clip), b = tap_f(p, s, x0 + 1, y0, scale, off, clip);
    float c = tap_f(p, s, x0, y0 + 1, scale, off, clip), d = tap_f(p, s, x0 + 1, y0 + 1, scale, off, clip);
    return (a * (1.f - ax) + b * ax) * (1.f - ay) + (c * (1.f - ax) + d * ax) * ay;
}

// k: y_off, y_scale, c_scale, rv, gu, gv, bu
__device__ __forceinline__ void sample_bgr(const unsigned char* f, int W, int H, int CW, int CH,
                                           int SX, int SY, float x, float y, const float* k,
                                           float* bgr) {
    const unsigned char* Y = f;
    const unsigned char* U = f + (size_t)W * H;
    const unsigned char* V = U + (size_t)CW * CH;
    float yy = bilinear_u8(Y, W, H, x, y);
    float cx = (x + 0.5f) / SX - 0.5f, cy = (y + 0.5f) / SY - 0.5f;
    float uu = bilinear_u8(U, CW, CH, cx, cy), vv = bilinear_u8(V, CW, CH, cx, cy);
    float yp = (yy - k[0]) * k[1], up = (uu - 128.f) * k[2], vp = (vv - 128.f) * k[2];
    bgr[2] = fminf(fmaxf(rintf(yp + k[3] * vp), 0.f), 255.f);
    bgr[1] = fminf(fmaxf(rintf(yp - k[4] * up - k[5] * vp), 0.f), 255.f);
    bgr[0] = fminf(fmaxf(rintf(yp + k[6] * up), 0.f), 255.f);
}

// Thread idx -> (item i, pixel r, x, y) of n outputs of ow x oh; false past the end.
__device__ __forceinline__ bool out_pixel(size_t idx, int n, int ow, int oh, int* i, int* r, int* x,
                                          int* y) {
    size_t plane = (size_t)ow * oh;
    if (idx >= plane * n) return false;
    *i = (int)(idx / plane);
    *r = (int)(idx - (size_t)(*i) * plane);
    *y = *r / ow;
    *x = *r - *y * ow;
    return true;
}

// Affine-sampled crops, NCHW float: out = (value - mean) / std, RGB or BGR order. m: n*6
// crop->frame. valid (optional): n*2 (width, height) of the sampled part; the rest gets ``pad``.
__global__ void warp_norm(const __grid_constant__ Items A, float* out, int n, int ow, int oh,
                          int W, int H, int CW, int CH, int SX, int SY, const float* k, float mean,
                          float inv_std, int rgb, float pad) {
    int i, r, x, y;
    if (!out_pixel((size_t)blockIdx.x * blockDim.x + threadIdx.x, n, ow, oh, &i, &r, &x, &y)) return;
    size_t plane = (size_t)ow * oh;
    float* o = out + (size_t)i * 3 * plane + r;
    if (A.has_box && (x >= A.box[2 * i] || y >= A.box[2 * i + 1])) {
        o[0] = pad; o[plane] = pad; o[2 * plane] = pad;
        return;
    }
    const float* a = A.m + 6 * i;
    float sx = a[0] * x + a[1] * y + a[2], sy = a[3] * x + a[4] * y + a[5];
    float bgr[3];
    sample_bgr((const unsigned char*)A.frames[i], W, H, CW, CH, SX, SY, sx, sy, k, bgr);
    if (rgb) {
        o[0] = (bgr[2] - mean) * inv_std; o[plane] = (bgr[1] - mean) * inv_std;
        o[2 * plane] = (bgr[0] - mean) * inv_std;
    } else {
        o[0] = (bgr[0] - mean) * inv_std; o[plane] = (bgr[1] - mean) * inv_std;
        o[2 * plane] = (bgr[2] - mean) * inv_std;
    }
}

// The same sampling to BGR uint8 HWC (small frames for MTCNN, crops for the classic swapper).
__global__ void warp_u8(const __grid_constant__ Items A, unsigned char* out, int n, int ow, int oh,
                        int W, int H, int CW, int CH, int SX, int SY, const float* k) {
    int i, r, x, y;
    if (!out_pixel((size_t)blockIdx.x * blockDim.x + threadIdx.x, n, ow, oh, &i, &r, &x, &y)) return;
    const float* a = A.m + 6 * i;
    float sx = a[0] * x + a[1] * y + a[2], sy = a[3] * x + a[4] * y + a[5];
    float bgr[3];
    sample_bgr((const unsigned char*)A.frames[i], W, H, CW, CH, SX, SY, sx, sy, k, bgr);
    unsigned char* o = out + ((size_t)i * ow * oh + r) * 3;
    o[0] = (unsigned char)bgr[0]; o[1] = (unsigned char)bgr[1]; o[2] = (unsigned char)bgr[2];
}

// Paste-back of one face per frame (a "layer"; faces of one frame go in successive launches).
// A.m: frame->crop; A.box: chroma-block box [bx0, by0, bx1, by1); A.sel: the item's crop in
// crops (3*s*s RGB planes, value * scale + offset, clipped) and its mask: s*s, or one per face
// with mstride = s*s; e: kr, kg, kb, y_off, y_scale, c_scale, db, dr.
__global__ void paste(const __grid_constant__ Items A, const float* crops, const float* mask,
                      int mstride, int s, int W, int H, int CW, int CH, int SX, int SY,
                      const float* e, float scale, float offset, float strength) {
    int i = blockIdx.z;
    const int* r = A.box + 4 * i;
    int bx = r[0] + blockIdx.x * blockDim.x + threadIdx.x;
    int by = r[1] + blockIdx.y * blockDim.y + threadIdx.y;
    if (bx >= r[2] || by >= r[3]) return;
    unsigned char* Y = (unsigned char*)A.frames[i];
    unsigned char* U = Y + (size_t)W * H;
    unsigned char* V = U + (size_t)CW * CH;
    const float* a = A.m + 6 * i;
    size_t pl = (size_t)s * s;
    const float* cr = crops + (size_t)A.sel[i] * 3 * pl;
    const float* mk = mask + (size_t)A.sel[i] * mstride;
    float asum = 0.f, usum = 0.f, vsum = 0.f;
    int cnt = 0;
    for (int j = 0; j < SY; j++) {
        for (int q = 0; q < SX; q++) {
            int x = bx * SX + q, y = by * SY + j;
            if (x >= W || y >= H) continue;
            cnt++;
            float u = a[0] * x + a[1] * y + a[2], v = a[3] * x + a[4] * y + a[5];
            float al = fminf(fmaxf(bilinear_f(mk, s, u, v, 1.f, 0.f, 0) * strength, 0.f), 1.f);
            if (al <= 0.f) continue;
            float R = bilinear_f(cr, s, u, v, scale, offset, 1);
            float G = bilinear_f(cr + pl, s, u, v, scale, offset, 1);
            float B = bilinear_f(cr + 2 * pl, s, u, v, scale, offset, 1);
            float yf = e[0] * R + e[1] * G + e[2] * B;
            float yc = yf / e[4] + e[3];
            float uc = (B - yf) / e[6] / e[5] + 128.f;
            float vc = (R - yf) / e[7] / e[5] + 128.f;
            size_t p = (size_t)y * W + x;
            float ys = (float)Y[p];
            Y[p] = (unsigned char)fminf(fmaxf(rintf(ys + al * (yc - ys)), 0.f), 255.f);
            asum += al; usum += al * uc; vsum += al * vc;
        }
    }
    if (asum > 0.f && cnt > 0) {
        size_t c = (size_t)by * CW + bx;
        float am = asum / cnt;
        float us = (float)U[c], vs = (float)V[c];
        U[c] = (unsigned char)fminf(fmaxf(rintf(usum / cnt + (1.f - am) * us), 0.f), 255.f);
        V[c] = (unsigned char)fminf(fmaxf(rintf(vsum / cnt + (1.f - am) * vs), 0.f), 255.f);
    }
}

// an NVDEC frame (NV12: pitched Y, pitched interleaved UV) into a packed yuv420p frame, one
// launch (thread i copies luma byte i and, for i < CW * CH, chroma pair i)
__global__ void nv12_unpack(const unsigned char* y, long long y_pitch, const unsigned char* uv,
                            long long uv_pitch, unsigned char* out, int W, int H, int CW, int CH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long n = (long long)W * H, nc = (long long)CW * CH;
    if (i < n) out[i] = y[(i / W) * y_pitch + i % W];
    if (i < nc) {
        const unsigned char* p = uv + (i / CW) * uv_pitch + 2 * (i % CW);
        out[n + i] = p[0];
        out[n + nc + i] = p[1];
    }
}

}
"""
