// Max and average pooling, forward and backward                       lesson 10
//                                                       (the maths: lesson 03)
//   window(i, j) = input pixels (i*sh + p - ph, j*sw + q - pw), 0 <= p < KH, 0 <= q < KW
//   max:  y[n,c,i,j] = max over the window of x (padding counts as -inf)
//         idx[n,c,i,j] = h*W + w of the FIRST maximum in row-major window order
//   avg:  y[n,c,i,j] = sum over the window of x / (KH*KW)
//         (padding counts as 0 and stays in the divisor: count_include_pad)
//   backward:
//   max:  gx[n,c,h,w] = sum of gy[n,c,i,j] over the windows (i, j) that contain (h, w)
//                       and whose idx[n,c,i,j] is h*W + w       (the winner takes it)
//   avg:  gx[n,c,h,w] = sum of gy[n,c,i,j] over the windows that contain (h, w), / (KH*KW)
//
// Index maps (t = blockIdx.x * blockDim.x + threadIdx.x, one thread per element):
//   max_pool2d_forward, avg_pool2d_forward:
//             t -> output (n, c, i, j) = unravel(t, N, C, Ho, Wo)
//   max_pool2d_backward, avg_pool2d_backward:
//             t -> input  (n, c, h, w) = unravel(t, N, C, H, W)
//   max_pool2d_backward_planes (when the window geometry is not known):
//             t -> plane n*C + c
// Both backward kernels GATHER: each input pixel visits the few windows that contain
// it and adds up their gradients itself, in a fixed order (i, then j). No two threads
// write the same address, so no atomics are needed, and the sum does not depend on
// the order the threads run in: the same bits on every run. (A scatter, one thread
// per output adding gy into gx[idx] with atomicAdd, is shorter, but where windows
// overlap the additions land in whatever order the threads happen to run, and the
// last bits of gx change from run to run.)
// The windows that contain row h are those with i*sh - ph <= h <= i*sh - ph + KH - 1:
//   ceil((h + ph - KH + 1) / sh) <= i <= floor((h + ph) / sh), clipped to [0, Ho).
// max_pool2d_backward_planes is the fallback for indices whose window geometry the
// caller does not know: one thread per plane walks its outputs in order and adds each
// gradient into the pixel it picked, so it is as deterministic, but has only N*C
// threads of work.
// Cost: memory-bound; forward KH*KW reads per output; the backward gathers read
// about (KH/sh)*(KW/sw) windows' idx and gy per input pixel.

// First window index i whose window reaches down to row h (clipped to 0).
__device__ int first_window(int h, int pad, int k, int s)
{
    int a = h + pad - k + 1;
    return a <= 0 ? 0 : (a + s - 1) / s;
}

// Last window index whose window starts at or above row h (clipped to count - 1).
__device__ int last_window(int h, int pad, int s, int count)
{
    int i = (h + pad) / s;
    return i < count - 1 ? i : count - 1;
}

extern "C" __global__ void max_pool2d_forward(const float* x, float* y, int* idx,
                                              int N, int C, int H, int W, int KH, int KW,
                                              int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * Ho * Wo) return;
    int j = t % Wo, i = (t / Wo) % Ho, plane = t / (Wo * Ho);   // plane = n*C + c
    const float* xp = x + plane * H * W;
    float best = 0.0f;
    int best_at = -1;                            // -1: no pixel seen yet
    for (int p = 0; p < KH; ++p) {
        int h = i * sh + p - ph;
        if (h < 0 || h >= H) continue;           // padding: -inf never wins
        for (int q = 0; q < KW; ++q) {
            int w = j * sw + q - pw;
            if (w < 0 || w >= W) continue;
            float v = xp[h * W + w];
            // strictly greater keeps the first maximum; a NaN wins once, like numpy's argmax
            if (best_at < 0 || v > best || (isnan(v) && !isnan(best))) {
                best = v;
                best_at = h * W + w;
            }
        }
    }
    y[t] = best;
    idx[t] = best_at;
}

// Gather: gx[t] for input pixel t sums the gradients of the windows that picked it.
extern "C" __global__ void max_pool2d_backward(const float* gy, const int* idx, float* gx,
                                               int N, int C, int H, int W, int KH, int KW,
                                               int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * H * W) return;
    int w = t % W, h = (t / W) % H, plane = t / (W * H);
    const float* g = gy + plane * Ho * Wo;
    const int* k = idx + plane * Ho * Wo;
    int here = h * W + w;
    float s = 0.0f;
    int i_hi = last_window(h, ph, sh, Ho), j_hi = last_window(w, pw, sw, Wo);
    for (int i = first_window(h, ph, KH, sh); i <= i_hi; ++i)
        for (int j = first_window(w, pw, KW, sw); j <= j_hi; ++j)
            if (k[i * Wo + j] == here) s += g[i * Wo + j];
    gx[t] = s;
}

// Fallback without the geometry: one thread per plane, outputs in row-major order.
extern "C" __global__ void max_pool2d_backward_planes(const float* gy, const int* idx,
                                                      float* gx, int N, int C, int H, int W,
                                                      int Ho, int Wo)
{
    int plane = blockIdx.x * blockDim.x + threadIdx.x;
    if (plane >= N * C) return;
    float* out = gx + plane * H * W;
    for (int e = 0; e < H * W; ++e) out[e] = 0.0f;
    for (int e = 0; e < Ho * Wo; ++e) {
        int k = idx[plane * Ho * Wo + e];
        if (k >= 0 && k < H * W)                 // never write outside the plane
            out[k] += gy[plane * Ho * Wo + e];
    }
}

extern "C" __global__ void avg_pool2d_forward(const float* x, float* y,
                                              int N, int C, int H, int W, int KH, int KW,
                                              int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * Ho * Wo) return;
    int j = t % Wo, i = (t / Wo) % Ho, plane = t / (Wo * Ho);
    const float* xp = x + plane * H * W;
    float s = 0.0f;
    for (int p = 0; p < KH; ++p) {
        int h = i * sh + p - ph;
        if (h < 0 || h >= H) continue;           // padding adds 0
        for (int q = 0; q < KW; ++q) {
            int w = j * sw + q - pw;
            if (w >= 0 && w < W) s += xp[h * W + w];
        }
    }
    y[t] = s / (float)(KH * KW);
}

extern "C" __global__ void avg_pool2d_backward(const float* gy, float* gx,
                                               int N, int C, int H, int W, int KH, int KW,
                                               int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * H * W) return;
    int w = t % W, h = (t / W) % H, plane = t / (W * H);
    const float* g = gy + plane * Ho * Wo;
    float s = 0.0f;
    int i_hi = last_window(h, ph, sh, Ho), j_hi = last_window(w, pw, sw, Wo);
    for (int i = first_window(h, ph, KH, sh); i <= i_hi; ++i)
        for (int j = first_window(w, pw, KW, sw); j <= j_hi; ++j)
            s += g[i * Wo + j];
    gx[t] = s / (float)(KH * KW);
}
