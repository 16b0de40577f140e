// Adaptive average pooling, forward and backward                      lesson 10
//                                                       (the maths: lesson 03)
//   the output size (Ho, Wo) is given; bin (i, j) covers, as PyTorch,
//   rows    hs_i = floor(i * H / Ho) .. he_i = ceil((i + 1) * H / Ho)   (end exclusive)
//   columns ws_j = floor(j * W / Wo) .. we_j = ceil((j + 1) * W / Wo)
//   y[n,c,i,j]  = sum of x over the bin / ((he_i - hs_i) * (we_j - ws_j))
//   gx[n,c,h,w] = sum over the bins (i, j) containing (h, w) of gy[n,c,i,j] / bin size
//   Bin i contains row h when floor(h * Ho / H) <= i <= ceil((h + 1) * Ho / H) - 1;
//   where H is not a multiple of Ho, neighbouring bins share a row.
//
// Index maps (t = blockIdx.x * blockDim.x + threadIdx.x, one thread per element):
//   adaptive_avg_pool2d_forward:  t -> output (n, c, i, j) = unravel(t, N, C, Ho, Wo)
//   adaptive_avg_pool2d_backward: t -> input  (n, c, h, w) = unravel(t, N, C, H, W)
// The backward GATHERS: each input pixel adds the shares of the few bins holding it,
// in a fixed order (i, then j): no two threads write one address, no atomics, the
// same bits on every run.
// Cost: memory-bound; the forward reads each pixel about once per bin holding it.

__device__ int bin_start(int i, int size, int out) { return (i * size) / out; }
__device__ int bin_end(int i, int size, int out) { return ((i + 1) * size + out - 1) / out; }

extern "C" __global__ void adaptive_avg_pool2d_forward(const float* x, float* y, int N, int C,
                                                       int H, int W, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * Ho * Wo) return;
    int j = t % Wo, i = (t / Wo) % Ho, plane = t / (Wo * Ho);   // plane = n*C + c
    int hs = bin_start(i, H, Ho), he = bin_end(i, H, Ho);
    int ws = bin_start(j, W, Wo), we = bin_end(j, W, Wo);
    const float* xp = x + plane * H * W;
    float s = 0.0f;
    for (int h = hs; h < he; ++h)
        for (int w = ws; w < we; ++w)
            s += xp[h * W + w];
    y[t] = s / (float)((he - hs) * (we - ws));
}

extern "C" __global__ void adaptive_avg_pool2d_backward(const float* gy, float* gx, int N,
                                                        int C, int H, int W, int Ho, int Wo)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * H * W) return;
    int w = t % W, h = (t / W) % H, plane = t / (W * H);
    const float* gp = gy + plane * Ho * Wo;
    int i0 = (h * Ho) / H, i1 = min(Ho - 1, ((h + 1) * Ho + H - 1) / H - 1);
    int j0 = (w * Wo) / W, j1 = min(Wo - 1, ((w + 1) * Wo + W - 1) / W - 1);
    float s = 0.0f;
    for (int i = i0; i <= i1; ++i) {
        int hs = bin_start(i, H, Ho), he = bin_end(i, H, Ho);
        if (h < hs || h >= he) continue;
        for (int j = j0; j <= j1; ++j) {
            int ws = bin_start(j, W, Wo), we = bin_end(j, W, Wo);
            if (w < ws || w >= we) continue;
            s += gp[i * Wo + j] / (float)((he - hs) * (we - ws));
        }
    }
    gx[t] = s;
}
