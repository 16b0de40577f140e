// BROKEN ON PURPOSE, and the emulator CANNOT see it: a race between blocks  lesson 10
//
//   total: out[0] = sum of x[i] for i < n
//   index map: block b reduces x[256*b .. 256*b + 255] in shared memory; then
//   its thread 0 adds the block's sum into out[0].
//
// What is wrong: out[0] += s[0] is a read-modify-write, not atomicAdd. On a GPU
// blocks run at the same time, two of them read the same old out[0], and one
// sum is lost.
//
// What the emulator reports: nothing, and the right answer. It runs blocks one
// after another, so no two blocks ever overlap. This is its main limit: races
// between blocks on global memory need a real GPU (or careful reading) to find.
#define BLOCK 256

extern "C" __global__ void total(const float* x, float* out, int n) {
    __shared__ float s[BLOCK];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) out[0] += s[0];  // the bug: should be atomicAdd(out, s[0])
}
