// Dropout with a counter-based random generator, forward and backward lesson 10
//                                                       (the maths: lesson 05)
//   keep_k = [(word_k >> 8) >= threshold],  threshold = ceil(p * 2^24)
//            (24 random bits u_k = (word_k >> 8) / 2^24 in [0, 1); kept when u_k >= p)
//   y[k] = x[k] * keep_k * scale,  gx[k] = gy[k] * keep_k * scale,  scale = 1/(1 - p)
//   word_k = word (k % 4) of Philox4x32-10(counter, key),
//            counter = (k / 4, 0, offset low, offset high), key = (seed low, seed high)
//   Philox round: (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2),
//                                      hi(M0*c0) ^ c3 ^ k1, lo(M0*c0));
//   ten rounds, the key bumped by (W0, W1) between them (Salmon et al., SC 2011).
// The random words are a pure function of (seed, offset, k): no generator state is
// stored or shared, every thread computes its own, and numpy and numba compute the
// same words (kernels/reference.py, kernels/cpu/dropout.py): one mask on every device.
// The backward reads the mask the forward wrote (uint8, 1 = kept).
//
// Index maps:
//   dropout_forward: one thread per group of four elements,
//     g = blockIdx.x * blockDim.x + threadIdx.x -> elements 4g .. 4g+3 (those < n);
//     one Philox call gives the four words. (k / 4 < 2^29 since n < 2^31: the
//     counter's second word is 0.)
//   dropout_backward: one thread per element.
// Cost: ten rounds of two 32x32 -> 64-bit products per four elements, all in
// registers; then memory-bound (read x, write y and one byte of mask per element).

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Philox4x32-10 on (c0, c1, c2, c3) with key (k0, k1), in place.
__device__ void philox4x32_10(unsigned* c0, unsigned* c1, unsigned* c2, unsigned* c3,
                              unsigned k0, unsigned k1)
{
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += PHILOX_W0;                 // unsigned arithmetic wraps mod 2^32
            k1 += PHILOX_W1;
        }
        unsigned long long p0 = (unsigned long long)PHILOX_M0 * *c0;
        unsigned long long p1 = (unsigned long long)PHILOX_M1 * *c2;
        unsigned n0 = (unsigned)(p1 >> 32) ^ *c1 ^ k0;
        unsigned n2 = (unsigned)(p0 >> 32) ^ *c3 ^ k1;
        *c1 = (unsigned)p1;
        *c3 = (unsigned)p0;
        *c0 = n0;
        *c2 = n2;
    }
}

__device__ void keep_or_drop(int k, unsigned word, const float* x, float* y,
                             unsigned char* mask, int n, unsigned threshold, float scale)
{
    if (k >= n) return;
    unsigned char keep = (word >> 8) >= threshold ? 1 : 0;
    mask[k] = keep;
    y[k] = x[k] * (float)keep * scale;
}

extern "C" __global__ void dropout_forward(const float* x, float* y, unsigned char* mask, int n,
                                           unsigned key0, unsigned key1, unsigned off0,
                                           unsigned off1, unsigned threshold, float scale)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= (n + 3) / 4) return;
    unsigned c0 = (unsigned)g, c1 = 0u, c2 = off0, c3 = off1;
    philox4x32_10(&c0, &c1, &c2, &c3, key0, key1);
    keep_or_drop(4 * g, c0, x, y, mask, n, threshold, scale);
    keep_or_drop(4 * g + 1, c1, x, y, mask, n, threshold, scale);
    keep_or_drop(4 * g + 2, c2, x, y, mask, n, threshold, scale);
    keep_or_drop(4 * g + 3, c3, x, y, mask, n, threshold, scale);
}

extern "C" __global__ void dropout_backward(const float* gy, const unsigned char* mask,
                                            float* gx, int n, float scale)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) gx[t] = gy[t] * (float)mask[t] * scale;
}
