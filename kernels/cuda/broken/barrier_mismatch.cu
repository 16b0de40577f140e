// BROKEN ON PURPOSE: two halves of a block wait at different barriers    lesson 10
//
//   halves: y[i] = 2 * x[i] for the first half of each block, x[i] + 1 for the
//   second half; i = 64*b + t
//   index map: thread t of block b stages x[i] in s[t], then computes y[i].
//
// What is wrong: each branch of the if has its own __syncthreads(). On a GPU
// they are different barriers: the block may deadlock or corrupt s.
//
// What the emulator reports: an EmulatorError naming both lines, e.g.
//   kernel halves, block (0,0,0): threads wait at different barriers:
//   thread 0 waits at __syncthreads() at barrier_mismatch.cu:23, thread 32
//   waits at __syncthreads() at barrier_mismatch.cu:26 (a __syncthreads()
//   inside divergent code: every thread of the block must reach the same one)
#define BLOCK 64

extern "C" __global__ void halves(const float* x, float* y, int n) {
    __shared__ float s[BLOCK];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    s[t] = i < n ? x[i] : 0.0f;
    if (t < BLOCK / 2) {
        __syncthreads();
        if (i < n) y[i] = 2.0f * s[t];
    } else {
        __syncthreads();
        if (i < n) y[i] = s[t] + 1.0f;
    }
}
