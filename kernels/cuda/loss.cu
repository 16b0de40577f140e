// Softmax, log-softmax and cross-entropy, forward and backward       lesson 10
//                                                       (the maths: lesson 06)
//   softmax:      y[r,k] = exp(x[r,k] - m_r) / s_r,    m_r = max_k x[r,k],
//                                                      s_r = sum_k exp(x[r,k] - m_r)
//                 gx[r,k] = y[r,k] * (gy[r,k] - sum_j gy[r,j] * y[r,j])
//   log_softmax:  y[r,k] = x[r,k] - m_r - log s_r
//                 gx[r,k] = gy[r,k] - exp(y[r,k]) * sum_j gy[r,j]
//   Subtracting the row maximum m_r changes nothing in exact arithmetic and keeps
//   every exp <= 1, so nothing overflows.
//   cross-entropy, targets t_n, class weights wc:
//                 loss_n = -wc[t_n] * log_softmax(x)[n, t_n]
//                 "none": loss_n    "sum": sum_n loss_n
//                 "mean": sum_n loss_n / sum_n wc[t_n]        (as PyTorch)
//                 glogits[n,k] = wc[t_n] * (probs[n,k] - [k == t_n]) * scale_n,
//                 scale_n = gloss[n] ("none"), gloss ("sum"), gloss / sum_n wc[t_n] ("mean")
//   binary cross-entropy with logits x, targets t, weight w, pos_weight pw (each of
//   x's shape, 1 where absent):
//                 loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * softplus(-x)),
//                 softplus(-x) = log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|));
//                 with pw = 1 it is max(x, 0) - x*t + log1p(exp(-|x|)), as PyTorch
//                 "mean": sum / number of elements
//                 gx = g * w * ((1 - t) - (1 + (pw - 1) * t) * sigmoid(-x))
//                 gt = g * w * (-x + (pw - 1) * softplus(-x)),
//                 g = gloss[k] ("none"), gloss ("sum"), gloss / n ("mean")
//
// Index maps:
//   per-row kernels (softmax*, log_softmax*, cross_entropy_rows): one block per row,
//     r = blockIdx.x; thread k0 = threadIdx.x handles columns k0, k0 + BLOCK, ...;
//     the row's max and sum are block reductions (below).
//   ce_reduce, ce_weight_sum: a single block, threads stride over the N rows.
//   cross_entropy_backward: one thread per element, t -> (n, k) = (t / K, t % K).
//   bce_with_logits_forward, bce_with_logits_backward: one thread per element t.
//   bce_reduce: a single block, threads stride over the n losses.
//
// Block reduction: each thread writes its partial value to a shared array; then at
// each level the first half of the threads combines its slot with the slot `half`
// places on; after log2(BLOCK) levels slot 0 holds the answer. A __syncthreads()
// separates the levels: no thread may read a slot before its writer is done.
// Cost: memory-bound; each row is read two or three times, mostly from cache.

#define BLOCK 256   // threads per block (a power of two; the launcher uses the same)

// Sum of v over the block's threads, returned to every thread.
__device__ float block_sum(float v, float* buf)
{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] += buf[threadIdx.x + half];
        __syncthreads();
    }
    float total = buf[0];
    __syncthreads();   // everyone has read buf[0] before buf is used again
    return total;
}

// Maximum of v over the block's threads, returned to every thread.
__device__ float block_max(float v, float* buf)
{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + half]);
        __syncthreads();
    }
    float total = buf[0];
    __syncthreads();
    return total;
}

// m_r and s_r of row xr (length K), shared by the three forward kernels.
__device__ void row_max_sum(const float* xr, int K, float* buf, float* m, float* s)
{
    float v = xr[0];   // every thread starts from an element of the row: no -inf needed
    for (int k = threadIdx.x; k < K; k += blockDim.x) v = fmaxf(v, xr[k]);
    *m = block_max(v, buf);
    float e = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) e += expf(xr[k] - *m);
    *s = block_sum(e, buf);
}

extern "C" __global__ void softmax_forward(const float* x, float* y, int R, int K)
{
    __shared__ float buf[BLOCK];
    const float* xr = x + blockIdx.x * K;
    float m, s;
    row_max_sum(xr, K, buf, &m, &s);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        y[blockIdx.x * K + k] = expf(xr[k] - m) / s;
}

extern "C" __global__ void softmax_backward(const float* gy, const float* y, float* gx, int R, int K)
{
    __shared__ float buf[BLOCK];
    int row = blockIdx.x * K;
    float s = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) s += gy[row + k] * y[row + k];
    float dot = block_sum(s, buf);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        gx[row + k] = y[row + k] * (gy[row + k] - dot);
}

extern "C" __global__ void log_softmax_forward(const float* x, float* y, int R, int K)
{
    __shared__ float buf[BLOCK];
    const float* xr = x + blockIdx.x * K;
    float m, s;
    row_max_sum(xr, K, buf, &m, &s);
    float logs = logf(s);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        y[blockIdx.x * K + k] = xr[k] - m - logs;
}

extern "C" __global__ void log_softmax_backward(const float* gy, const float* y, float* gx, int R, int K)
{
    __shared__ float buf[BLOCK];
    int row = blockIdx.x * K;
    float s = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) s += gy[row + k];
    float total = block_sum(s, buf);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        gx[row + k] = gy[row + k] - expf(y[row + k]) * total;
}

// Per row n: probs[n,:] = softmax, losses[n] = -wc[t_n] * log_softmax[n, t_n],
// wts[n] = wc[t_n]. A target outside [0, K) gives a NaN loss rather than a wild read.
extern "C" __global__ void cross_entropy_rows(const float* logits, const long long* target,
                                              const float* weight, float* probs,
                                              float* losses, float* wts, int N, int K)
{
    __shared__ float buf[BLOCK];
    int n = blockIdx.x;
    const float* xr = logits + n * K;
    float m, s;
    row_max_sum(xr, K, buf, &m, &s);
    float logs = logf(s);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        probs[n * K + k] = expf(xr[k] - m - logs);
    if (threadIdx.x == 0) {
        long long t = target[n];
        if (t < 0 || t >= K) {
            losses[n] = nanf("");
            wts[n] = nanf("");
        } else {
            losses[n] = -weight[t] * (xr[t] - m - logs);
            wts[n] = weight[t];
        }
    }
}

// out[0] = sum_n losses[n], divided by sum_n wts[n] when divide is 1 ("mean").
extern "C" __global__ void ce_reduce(const float* losses, const float* wts, float* out,
                                     int N, int divide)
{
    __shared__ float buf[BLOCK];
    float sl = 0.0f, sw = 0.0f;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        sl += losses[n];
        sw += wts[n];
    }
    sl = block_sum(sl, buf);
    sw = block_sum(sw, buf);
    if (threadIdx.x == 0) out[0] = divide ? sl / sw : sl;
}

// out[0] = sum_n wc[t_n], the divisor of "mean".
extern "C" __global__ void ce_weight_sum(const long long* target, const float* weight,
                                         float* out, int N, int K)
{
    __shared__ float buf[BLOCK];
    float s = 0.0f;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        long long t = target[n];
        s += (t >= 0 && t < K) ? weight[t] : nanf("");
    }
    s = block_sum(s, buf);
    if (threadIdx.x == 0) out[0] = s;
}

// mode 0 "none" (gloss has N entries), 1 "sum", 2 "mean" (gloss has 1 entry;
// wsum[0] from ce_weight_sum, read only for "mean").
extern "C" __global__ void cross_entropy_backward(const float* probs, const long long* target,
                                                  const float* weight, const float* gloss,
                                                  const float* wsum, float* glogits,
                                                  int N, int K, int mode)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * K) return;
    int n = t / K, k = t % K;
    long long tn = target[n];
    if (tn < 0 || tn >= K) {
        glogits[t] = nanf("");
        return;
    }
    float scale = mode == 0 ? gloss[n] : (mode == 1 ? gloss[0] : gloss[0] / wsum[0]);
    float onehot = (k == tn) ? 1.0f : 0.0f;
    glogits[t] = weight[tn] * (probs[t] - onehot) * scale;
}

// softplus(-v) = log(1 + exp(-v)), no overflow for any v.
__device__ float softplus_neg(float v)
{
    return fmaxf(-v, 0.0f) + log1pf(expf(-fabsf(v)));
}

// loss[t] of element t; w and pw are read only when has_w / has_pw is 1.
extern "C" __global__ void bce_with_logits_forward(const float* x, const float* target,
                                                   const float* w, const float* pw,
                                                   float* loss, int n, int has_w, int has_pw)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float v = x[t], tt = target[t];
    float l = has_pw ? (1.0f - tt) * v + (1.0f + (pw[t] - 1.0f) * tt) * softplus_neg(v)
                     : fmaxf(v, 0.0f) - v * tt + log1pf(expf(-fabsf(v)));
    loss[t] = has_w ? l * w[t] : l;
}

// out[0] = sum_t loss[t], divided by n when divide is 1 ("mean").
extern "C" __global__ void bce_reduce(const float* loss, float* out, int n, int divide)
{
    __shared__ float buf[BLOCK];
    float s = 0.0f;
    for (int k = threadIdx.x; k < n; k += blockDim.x) s += loss[k];
    s = block_sum(s, buf);
    if (threadIdx.x == 0) out[0] = divide ? s / (float)n : s;
}

// mode 0 "none" (gloss has n entries), 1 "sum", 2 "mean" (gloss has 1 entry).
// gx is written when need_x is 1, gt when need_t is 1.
extern "C" __global__ void bce_with_logits_backward(const float* x, const float* target,
                                                    const float* w, const float* pw,
                                                    const float* gloss, float* gx, float* gt,
                                                    int n, int mode, int has_w, int has_pw,
                                                    int need_x, int need_t)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float g = mode == 0 ? gloss[t] : (mode == 1 ? gloss[0] : gloss[0] / (float)n);
    if (has_w) g *= w[t];
    float v = x[t], tt = target[t];
    float e = expf(-fabsf(v));                                // <= 1: no overflow
    float sig_neg = v >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);   // sigmoid(-v)
    if (need_x) {
        if (has_pw) {
            gx[t] = g * ((1.0f - tt) - (1.0f + (pw[t] - 1.0f) * tt) * sig_neg);
        } else {
            float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            gx[t] = g * (sig - tt);
        }
    }
    if (need_t) gt[t] = g * (has_pw ? -v + (pw[t] - 1.0f) * softplus_neg(v) : -v);
}
