// Batch normalisation, training and evaluation, forward and backward  lesson 10
//                                                       (the maths: lesson 05)
//   x seen as (N, C, L): images (N, C, H, W) with L = H*W, vectors (N, C) with L = 1;
//   per channel c, over its M = N*L values:
//   training:  mean_c = (1/M) sum x,   var_c = (1/M) sum (x - mean_c)^2   (biased)
//              running_mean = (1 - momentum) * running_mean + momentum * mean_c
//              running_var  = (1 - momentum) * running_var + momentum * var_c * M/(M-1)
//   eval:      mean_c = running_mean[c],  var_c = running_var[c]
//   invstd_c = 1 / sqrt(var_c + eps),  xhat = (x - mean_c) * invstd_c
//   y[n,c,l] = xhat * w[c] + b[c]
//   backward, gb[c] = sum gy, gw[c] = sum gy * xhat (over n and l):
//   training:  gx = w[c] * invstd_c / M * (M * gy - gb[c] - xhat * gw[c])
//   eval:      gx = gy * w[c] * invstd_c
//
// Index maps:
//   batch_norm_stats, batch_norm_grad_sums: one block per channel, c = blockIdx.x;
//     thread k0 = threadIdx.x takes m = k0, k0 + BLOCK, ... of the channel's M values,
//     m -> (n, l) = (m / L, m % L) -> x[(n*C + c)*L + l]; the partial sums meet in a
//     block reduction (a tree in shared memory, as in loss.cu).
//   batch_norm_eval_stats: one thread per channel.
//   batch_norm_apply, batch_norm_backward_input: one thread per element,
//     t = blockIdx.x * blockDim.x + threadIdx.x -> c = (t / L) % C.
// Deterministic: each channel's sums are made by one block, each thread adding its
// values in a fixed order and the tree combining the threads in a fixed order; no
// atomics, so the bits do not depend on how the GPU schedules threads or blocks.
// Cost: memory-bound; training reads x three times (mean, variance, normalise), the
// backward reads gy and x twice. One block per channel leaves a big GPU idle when C
// is small; the work is a few passes over the feature map either way.

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

// Batch mean and 1/sqrt(var + eps) of channel c = blockIdx.x; with update = 1 also the
// running estimates, in place (unbiased variance). running_* are unread when update = 0.
extern "C" __global__ void batch_norm_stats(const float* x, float* mean, float* invstd,
                                            float* running_mean, float* running_var,
                                            int N, int C, int L, float eps, float momentum,
                                            int update)
{
    __shared__ float buf[BLOCK];
    int c = blockIdx.x, M = N * L;
    float s = 0.0f;
    for (int m = threadIdx.x; m < M; m += blockDim.x)
        s += x[((m / L) * C + c) * L + m % L];
    float mu = block_sum(s, buf) / (float)M;
    float q = 0.0f;
    for (int m = threadIdx.x; m < M; m += blockDim.x) {
        float d = x[((m / L) * C + c) * L + m % L] - mu;
        q += d * d;
    }
    float var = block_sum(q, buf) / (float)M;
    if (threadIdx.x == 0) {
        mean[c] = mu;
        invstd[c] = 1.0f / sqrtf(var + eps);
        if (update) {
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
            running_var[c] = (1.0f - momentum) * running_var[c]
                           + momentum * var * ((float)M / (float)(M - 1));
        }
    }
}

// Evaluation: the statistics are the running ones.
extern "C" __global__ void batch_norm_eval_stats(const float* running_mean,
                                                 const float* running_var, float* mean,
                                                 float* invstd, int C, float eps)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mean[c] = running_mean[c];
    invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
}

extern "C" __global__ void batch_norm_apply(const float* x, const float* mean,
                                            const float* invstd, const float* w,
                                            const float* b, float* y, int C, int L, int total)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    int c = (t / L) % C;
    y[t] = (x[t] - mean[c]) * (invstd[c] * w[c]) + b[c];
}

// gb[c] = sum gy, gw[c] = sum gy * xhat over channel c = blockIdx.x.
extern "C" __global__ void batch_norm_grad_sums(const float* gy, const float* x,
                                                const float* mean, const float* invstd,
                                                float* gw, float* gb, int N, int C, int L)
{
    __shared__ float buf[BLOCK];
    int c = blockIdx.x, M = N * L;
    float sg = 0.0f, sgx = 0.0f;
    for (int m = threadIdx.x; m < M; m += blockDim.x) {
        int k = ((m / L) * C + c) * L + m % L;
        sg += gy[k];
        sgx += gy[k] * ((x[k] - mean[c]) * invstd[c]);
    }
    sg = block_sum(sg, buf);
    sgx = block_sum(sgx, buf);
    if (threadIdx.x == 0) {
        gb[c] = sg;
        gw[c] = sgx;
    }
}

// gx; gw, gb from batch_norm_grad_sums (read only when training = 1).
extern "C" __global__ void batch_norm_backward_input(const float* gy, const float* x,
                                                     const float* mean, const float* invstd,
                                                     const float* w, const float* gw,
                                                     const float* gb, float* gx, int C, int L,
                                                     int total, int M, int training)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    int c = (t / L) % C;
    float scale = w[c] * invstd[c];
    if (training) {
        float xhat = (x[t] - mean[c]) * invstd[c];
        gx[t] = scale / (float)M * ((float)M * gy[t] - gb[c] - xhat * gw[c]);
    } else {
        gx[t] = gy[t] * scale;
    }
}
