// BROKEN ON PURPOSE: __syncthreads() inside divergent code                lesson 10
//
//   reverse_blocks: y[i] = x[b*64 + (63 - t)], i = 64*b + t, for i < n
//   index map: thread t of block b loads x[64*b + t] into s[t], waits, then
//   writes s[63 - t] to y[64*b + t].
//
// What is wrong: threads past the end of the array return early, so in the
// last block (when n is not a multiple of 64) only some threads reach the
// barrier. CUDA leaves that undefined: it may hang, or seem to work.
//
// What the emulator reports: an EmulatorError naming the line, e.g.
//   kernel reverse_blocks, block (1,0,0): __syncthreads() at
//   divergent_barrier.cu:24 was reached by 36 of 64 threads; the other 28
//   (thread 36 first) exited the kernel without reaching it (a barrier inside
//   divergent code: every thread of the block must reach every __syncthreads())
#define BLOCK 64

extern "C" __global__ void reverse_blocks(const float* x, float* y, int n) {
    __shared__ float s[BLOCK];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    if (i >= n) return;  // the bug: these threads never reach the barrier
    s[t] = x[i];
    __syncthreads();
    int j = blockIdx.x * BLOCK + (BLOCK - 1 - t);
    if (j < n) y[i] = s[BLOCK - 1 - t];
}
