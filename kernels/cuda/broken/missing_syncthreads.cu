// BROKEN ON PURPOSE: a tree reduction with a __syncthreads() missing      lesson 10
//
//   block_sum: y[b] = sum of x[b*256 + t] for t in 0..255 (zeros past n)
//   index map: block b sums x[256*b .. 256*b + 255]; thread t loads one element
//   into s[t], then at each step threads t < stride add s[t + stride] into s[t].
//
// What is wrong: the barrier at the end of each halving step is missing (the
// comment "MISSING" marks its place). A thread may then read s[t + stride]
// before the thread that owns it has added its own partner in.
//
// What the emulator reports: a wrong sum, in some thread orders only. Forward
// order runs thread 0 through every step first, while s[64], s[32] ... still
// hold their first values: wrong. Reverse order happens to run each owner
// before its reader: right! That is why every kernel test runs forward,
// reverse and shuffled orders. With the barrier put back, all three are right.
#define BLOCK 256

extern "C" __global__ void block_sum(const float* x, float* y, int n) {
    __shared__ float s[BLOCK];
    int t = threadIdx.x;
    int i = blockIdx.x * BLOCK + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) s[t] += s[t + stride];
        // MISSING: __syncthreads();
    }
    if (t == 0) y[blockIdx.x] = s[0];
}
