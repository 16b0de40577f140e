// Matrix product, bias add and bias gradient                         lesson 10
//
//   sgemm:     C = op(A) op(B)           op(A) is M x K, op(B) is K x N, C is M x N
//              op(X) = X, or X^T when its trans flag is 1; every matrix is stored
//              row-major and contiguous, so A is M x K (or K x M when transA = 1)
//              and B is K x N (or N x K when transB = 1).
//   add_bias:  y[n,f,l] += b[f]                      y seen as (N, F, L)
//   bias_grad: gb[f] = sum_n sum_l gy[n,f,l]          gy seen as (N, F, L)
//   split-K:   C = sum over slices z of C_z,  C_z = op(A)[:, K_z] op(B)[K_z, :]
//              sgemm writes C_z into C + z*M*N (blockIdx.z = z); sum_partials
//              adds the partials up, z = 0, 1, 2, ... in that order
//
// Who uses sgemm (the transposes are why it takes flags):
//   linear forward    y  = x  @ w^T          sgemm(x,  w, transB=1)
//   linear backward   gx = gy @ w,  gw = gy^T @ x   (transA=1)
//   conv forward      out = W @ cols         W (F, C*KH*KW), cols from im2col (conv.cu)
//   conv weight grad  gW = gout @ cols^T     (transB=1)
//   conv input grad   gcols = W^T @ gout     (transA=1), then col2im (conv.cu)
//
// Index map of sgemm: the block at (blockIdx.y, blockIdx.x) owns the 64 x 64 tile of C
// whose corner is (m0, n0) = (64*blockIdx.y, 64*blockIdx.x), and blockIdx.z = z the
// slice K_z of the sum over k (gridDim.z = 1: all of K). Its 16 x 16 threads each
// compute 4 x 4 outputs, spread out by 16:
//   thread (ty, tx) computes C[m0 + ty + 16*i][n0 + tx + 16*j] for i, j in 0..3.
// Spreading (rather than a 4 x 4 square per thread) keeps neighbouring threads on
// neighbouring columns: their shared-memory reads hit different banks, and their
// writes to C are coalesced.
//
// Each step stages a 64 x 16 slab of op(A) and a 16 x 64 slab of op(B) in shared
// memory (every thread loads 4 + 4 floats), waits, then runs 16 rank-1 updates of its
// 4 x 4 accumulators out of registers: 8 shared-memory reads feed 16 multiply-adds.
//
// Cost and expected speed, from FLOPs and bytes (H100-class figures, FP32, no tensor
// cores; not measured here):
//   FLOPs: 2*M*N*K.
//   Global bytes: each element of A is loaded once per column of tiles (N/64 times),
//   each element of B once per row of tiles (M/64 times): 4*(M*K*N/64 + K*N*M/64)
//   = M*N*K/8 bytes, i.e. 16 FLOP per byte. The GPU needs about 20 FLOP per byte of
//   DRAM traffic to be compute-bound, but most repeats are served by the L2 cache, so
//   global memory is not the limit for large matrices.
//   Shared memory is: per k, a warp issues 8 shared loads (4 of them broadcasts) for
//   16 FMA instructions. An SM retires about 4 warp-FMAs per clock but only 1 shared
//   load per clock, so the kernel can reach at most about half of the FP32 peak.
//   cuBLAS's SGEMM reaches about 90% of the peak (128 x 128 tiles, 8 x 8 outputs per
//   thread: 16 loads per 64 FMAs, plus vector loads and double buffering).
//   Expect roughly a third to a half of cuBLAS on large square matrices, and much
//   less on the thin shapes of a small CNN (F = 16 filters fills a quarter of a
//   64-row tile, and a short K leaves little work to hide the loads behind).
//
// Split-K, for products with few tiles and a long K (a weight gradient sums over every
// pixel of the batch: ChestXrayCNN's first layer at 64 px, batch 64, has M = 16, N = 9,
// K = 262144, ONE tile, so one block would do all the work while the rest of the GPU
// waits). The sum over k is cut into slices, each slice's product goes to a partial
// matrix of its own, and sum_partials adds the partials in a fixed order. Every block
// writes only its own partial and every sum runs in a fixed order, so the result has
// the same bits on every run, whatever order the blocks and threads run in (atomicAdd
// of the partials into C would be simpler, and would not).
// The slices: K is cut into groups of k_span (the host makes a group whole images, so
// memory-bounded chunks of images never split one) and each group into k_parts parts:
//   z -> group g = z / k_parts, part q = z % k_parts, part length ks = ceil(k_span / k_parts)
//   K_z = [g*k_span + q*ks, g*k_span + min((q+1)*ks, k_span)), clipped to K
// accumulate = 1 adds the product into what C_z holds (a slice computed chunk by chunk):
// each thread's sum then simply goes on where the last launch left it, the same
// additions in the same order as one launch over the whole slice.
// sum_partials: one thread per element of C, t -> sum over z of parts[z*M*N + t].
// Cost of the split: the partials are written and read once more, P*M*N floats each
// way, small next to the 2*M*N*K FLOPs when M*N is small and K long (when it is used).
//
// The next steps, in order: 8 x 8 outputs per thread in a 128 x 128 tile, float4
// loads, double-buffered shared memory. Each makes the code longer; this file stays
// at the first rung.

#define TILE 64          // C tile per block: TILE x TILE
#define TILE_K 16        // depth of the slabs of op(A) and op(B) staged per step
#define THREADS_XY 16    // block is THREADS_XY x THREADS_XY threads
#define PER_THREAD 4     // TILE / THREADS_XY outputs per thread along each axis
#define THREADS (THREADS_XY * THREADS_XY)
#define BLOCK 256        // threads per block of bias_grad (a power of two)

// Element (r, c) of op(X), a rows x cols matrix; 0 outside rows x [c_begin, c_end)
// and outside the matrix (the ragged edge tiles, the ends of a slice of K).
__device__ float load_op(const float* X, int trans, int rows, int cols, int r, int c,
                         int c_end)
{
    if (r >= rows || c >= cols || c >= c_end) return 0.0f;
    return trans ? X[c * rows + r] : X[r * cols + c];
}

// Element (r, c) of op(X) with the slice along rows: 0 for r >= r_end.
__device__ float load_op_rows(const float* X, int trans, int rows, int cols, int r, int c,
                              int r_end)
{
    if (r >= rows || c >= cols || r >= r_end) return 0.0f;
    return trans ? X[c * rows + r] : X[r * cols + c];
}

extern "C" __global__ void sgemm(const float* A, const float* B, float* C,
                                 int M, int N, int K, int transA, int transB,
                                 int k_span, int k_parts, int accumulate)
{
    // +1 column: a warp's transposing stores below then put at most 2 threads on a
    // bank (without it, 16: a row of 64 floats is exactly two turns of the 32 banks)
    __shared__ float As[TILE_K][TILE + 1];   // As[k][m] = op(A)[m0 + m][k0 + k]
    __shared__ float Bs[TILE_K][TILE + 1];   // Bs[k][n] = op(B)[k0 + k][n0 + n]

    int tx = threadIdx.x, ty = threadIdx.y;
    int tid = ty * THREADS_XY + tx;
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    // this block's slice [k_begin, k_end) of the sum, and its partial C_z
    int z = blockIdx.z, g = z / k_parts, q = z % k_parts;
    int ks = (k_span + k_parts - 1) / k_parts;
    int k_begin = g * k_span + q * ks;
    int k_end = g * k_span + ((q + 1) * ks < k_span ? (q + 1) * ks : k_span);
    if (k_end > K) k_end = K;
    C += (size_t)z * M * N;

    float acc[PER_THREAD][PER_THREAD];
    for (int i = 0; i < PER_THREAD; ++i) {
        int m = m0 + ty + THREADS_XY * i;
        for (int j = 0; j < PER_THREAD; ++j) {
            int n = n0 + tx + THREADS_XY * j;
            acc[i][j] = (accumulate && m < M && n < N) ? C[m * N + n] : 0.0f;
        }
    }

    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        // stage the slabs; consecutive threads read consecutive addresses of global
        // memory (coalesced), whichever way the matrix is stored
        for (int e = tid; e < TILE * TILE_K; e += THREADS) {
            int m, k;
            if (transA) { k = e / TILE; m = e % TILE; }       // A stored K x M: walk along m
            else        { m = e / TILE_K; k = e % TILE_K; }   // A stored M x K: walk along k
            As[k][m] = load_op(A, transA, M, K, m0 + m, k0 + k, k_end);

            int n;
            if (transB) { n = e / TILE_K; k = e % TILE_K; }   // B stored N x K: walk along k
            else        { k = e / TILE; n = e % TILE; }       // B stored K x N: walk along n
            Bs[k][n] = load_op_rows(B, transB, K, N, k0 + k, n0 + n, k_end);
        }
        __syncthreads();   // the slabs are complete before anyone reads them

        for (int k = 0; k < TILE_K; ++k) {
            float a[PER_THREAD], b[PER_THREAD];
            for (int i = 0; i < PER_THREAD; ++i) a[i] = As[k][ty + THREADS_XY * i];
            for (int j = 0; j < PER_THREAD; ++j) b[j] = Bs[k][tx + THREADS_XY * j];
            for (int i = 0; i < PER_THREAD; ++i)
                for (int j = 0; j < PER_THREAD; ++j)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();   // everyone is done with the slabs before they are overwritten
    }

    for (int i = 0; i < PER_THREAD; ++i) {
        int m = m0 + ty + THREADS_XY * i;
        for (int j = 0; j < PER_THREAD; ++j) {
            int n = n0 + tx + THREADS_XY * j;
            if (m < M && n < N) C[m * N + n] = acc[i][j];
        }
    }
}

// add_bias: one thread per element of y; t -> f = (t / L) % F.
// Conv uses it with L = Ho*Wo, linear with L = 1.
extern "C" __global__ void add_bias(float* y, const float* b, int F, int L, int total)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < total) y[t] += b[(t / L) % F];
}

// bias_grad: one block per filter f (blockIdx.x = f). Each thread adds up a strided
// share of the N*L values, then the block adds the BLOCK partial sums by halving:
// at each level thread s adds in the partial sum of thread s + half.
extern "C" __global__ void bias_grad(const float* gy, float* gb, int N, int F, int L)
{
    __shared__ float partial[BLOCK];
    int f = blockIdx.x;
    float s = 0.0f;
    for (int e = threadIdx.x; e < N * L; e += blockDim.x) {
        int n = e / L, l = e % L;
        s += gy[(n * F + f) * L + l];
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();   // a level is complete before the next one reads it
    }
    if (threadIdx.x == 0) gb[f] = partial[0];
}

// sum_partials: C[t] = parts[0*MN + t] + parts[1*MN + t] + ..., z in order (split-K).
extern "C" __global__ void sum_partials(const float* parts, float* C, int P, int MN)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= MN) return;
    float s = 0.0f;
    for (int z = 0; z < P; ++z) s += parts[(size_t)z * MN + t];
    C[t] = s;
}
