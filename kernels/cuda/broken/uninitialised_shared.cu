// BROKEN ON PURPOSE: shared memory read before anything wrote it         lesson 10
//
//   blur3: y[i] = (x[i-1] + x[i] + x[i+1]) / 3, with x[-1] = x[n] = 0
//   index map: thread t of block b computes y[i], i = 128*b + t; the block
//   first copies x[i0-1 .. i0+128] (its 128 elements and one halo element on
//   each side) into tile[0 .. 129], then every thread reads three of them.
//
// What is wrong: the left halo is loaded but the right halo tile[129] never
// is, so the last thread of every block reads shared memory nothing wrote.
// On a GPU that is whatever the previous block left there: often a plausible
// number, and the bug hides.
//
// What the emulator reports: it fills shared memory with NaN before every
// block, so y[128*b + 127] comes out NaN for every block b, and only there.
#define BLOCK 128

extern "C" __global__ void blur3(const float* x, float* y, int n) {
    __shared__ float tile[BLOCK + 2];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    tile[t + 1] = i < n ? x[i] : 0.0f;
    if (t == 0) tile[0] = i > 0 ? x[i - 1] : 0.0f;
    // MISSING: if (t == BLOCK - 1) tile[BLOCK + 1] = i + 1 < n ? x[i + 1] : 0.0f;
    __syncthreads();
    if (i < n) y[i] = (tile[t] + tile[t + 1] + tile[t + 2]) / 3.0f;
}
