// BROKEN ON PURPOSE: a write past the end of a shared array              lesson 10
//
//   shift_left: y[i] = x[i+1] within each block of 128 elements, 0 for the
//   last one of a block; i = 128*b + t
//   index map: thread t of block b should store x[i] in s[t], wait, then write
//   s[t + 1] to y[i].
//
// What is wrong: the store goes to s[t + 1] instead of s[t], so the last thread
// writes s[128], one past the end, over whatever sits next to the tile in
// shared memory (on a GPU, another array of the same block; no error).
//
// What the emulator reports: a normal run gives a wrong answer (y[i] = x[i]).
// Compiled with sanitize=True, UBSan (or AddressSanitizer, for accesses through
// a pointer) stops at the store with the .cu line:
//   oob_shared_write.cu:22:12: runtime error: index 128 out of bounds for type 'float [128]'
#define BLOCK 128

extern "C" __global__ void shift_left(const float* x, float* y, int n) {
    __shared__ float s[BLOCK];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    s[t + 1] = i < n ? x[i] : 0.0f;  // the bug: meant s[t]; s[BLOCK] for the last thread
    __syncthreads();
    if (i < n) y[i] = t + 1 < BLOCK ? s[t + 1] : 0.0f;
}
