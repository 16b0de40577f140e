// Convolution as a matrix product: im2col, col2im and the layout shuffles   lesson 10
//                                                       (the maths: lesson 01)
//   y[n,f,i,j] = b[f] + sum_c sum_p sum_q x[n,c, i*sh+p-ph, j*sw+q-pw] * w[f,c,p,q]
//   (taps that land in the padding read 0)
//
// Lay every input patch out as a column, and the convolution of a batch becomes ONE
// matrix product (gemm.cu). The host runs it on chunks of images (N below is the chunk's
// count), so the column matrix stays under a fixed workspace however large the batch:
//   cols[r][col]  with  r = (c*KH + p)*KW + q          (C*KH*KW rows, one per tap)
//                       col = n*L + i*Wo + j, L = Ho*Wo (N*L columns, one per output pixel)
//   cols[r][col] = x[n,c, i*sh+p-ph, j*sw+q-pw], or 0 in the padding      (im2col)
//   out = W @ cols,  W = w seen as (F, C*KH*KW)        out is (F, N*L)
//   y[n,f,l] = out[f][n*L + l]                                            (fnl_to_nfl)
//   y[n,f,l] += b[f]                                         (add_bias, gemm.cu)
// Backward:
//   gout[f][n*L + l] = gy[n,f,l]                                          (nfl_to_fnl)
//   gW = gout @ cols^T          gcols = W^T @ gout                        (sgemm)
//   (gW sums over every chunk: the host adds the chunks' products, split along K,
//    in a fixed order; see gemm.cu)
//   gb[f] = sum_n sum_l gy[n,f,l]                           (bias_grad, gemm.cu)
//   gx[n,c,h,w] = sum of gcols over every (tap, output pixel) that read x[n,c,h,w]
//                                                                         (col2im)
//
// Index maps (t = blockIdx.x * blockDim.x + threadIdx.x, one thread per element):
//   im2col:      t -> cols element (r, col) = (t / (N*L), t % (N*L)); neighbouring
//                threads write neighbouring columns (coalesced)
//   col2im:      t -> gx element (n, c, h, w) = unravel(t, N, C, H, W). Each thread
//                GATHERS the taps that read its pixel, so no two threads write the
//                same address and no atomicAdd is needed: the output pixel i that
//                saw (h, w) through tap p satisfies i*sh + p - ph = h, so
//                p = h + ph - i*sh, i.e. i = (h + ph - p) / sh when that divides.
//   nfl_to_fnl:  t -> element (n, f, l) of the (N, F, L) array
//   fnl_to_nfl:  t -> element (n, f, l) of the (N, F, L) array
// Every kernel here writes each of its outputs once and reads what it needs: no
// atomics, the same bits in any thread order.
// Cost: memory-bound; im2col writes KH*KW/(sh*sw) times the size of x.

extern "C" __global__ void im2col(const float* x, float* cols,
                                  int N, int C, int H, int W, int KH, int KW,
                                  int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int L = Ho * Wo;
    int total = C * KH * KW * N * L;
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    int r = t / (N * L), col = t % (N * L);
    int c = r / (KH * KW), p = (r / KW) % KH, q = r % KW;
    int n = col / L, i = (col % L) / Wo, j = col % Wo;
    int h = i * sh + p - ph, w = j * sw + q - pw;
    cols[t] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : 0.0f;
}

extern "C" __global__ void col2im(const float* cols, float* gx,
                                  int N, int C, int H, int W, int KH, int KW,
                                  int sh, int sw, int ph, int pw, int Ho, int Wo)
{
    int L = Ho * Wo;
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * H * W) return;
    int w = t % W, h = (t / W) % H, c = (t / (W * H)) % C, n = t / (W * H * C);
    float s = 0.0f;
    for (int p = 0; p < KH; ++p) {
        int hi = h + ph - p;                     // = i * sh for the output row i that saw h
        if (hi < 0 || hi % sh != 0 || hi / sh >= Ho) continue;
        int i = hi / sh;
        for (int q = 0; q < KW; ++q) {
            int wj = w + pw - q;
            if (wj < 0 || wj % sw != 0 || wj / sw >= Wo) continue;
            int j = wj / sw;
            int r = (c * KH + p) * KW + q;
            s += cols[r * (N * L) + n * L + i * Wo + j];
        }
    }
    gx[t] = s;
}

// gy (N, F, L) -> gout (F, N*L)
extern "C" __global__ void nfl_to_fnl(const float* src, float* dst, int N, int F, int L)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * F * L) return;
    int l = t % L, f = (t / L) % F, n = t / (L * F);
    dst[f * (N * L) + n * L + l] = src[t];
}

// out (F, N*L) -> y (N, F, L)
extern "C" __global__ void fnl_to_nfl(const float* src, float* dst, int N, int F, int L)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * F * L) return;
    int l = t % L, f = (t / L) % F, n = t / (L * F);
    dst[t] = src[f * (N * L) + n * L + l];
}
