// BROKEN ON PURPOSE: a read past the end of a global array               lesson 10
//
//   forward_diff: y[i] = x[i+1] - x[i] for i in 0..n-2, y[n-1] = 0
//   index map: one thread per element, i = blockIdx.x * blockDim.x + threadIdx.x
//
// What is wrong: the bound checks i < n, not i + 1 < n, so the thread for the
// last element reads x[n], one past the end. On a GPU that read usually
// returns some neighbour's bytes and nothing complains.
//
// What the emulator reports: nothing in a normal run (the read lands in
// memory the process owns). Compiled with sanitize=True (run under
// python -m minicnn.kernels.cuda.emu --sanitize -- ...), AddressSanitizer stops
// at the read:
//   ERROR: AddressSanitizer: heap-buffer-overflow ... READ of size 4 ...
//       #0 ... in forward_diff .../oob_global_read.cu:19
extern "C" __global__ void forward_diff(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float d = x[i + 1] - x[i];  // the bug: x[n] when i == n - 1
        y[i] = i + 1 < n ? d : 0.0f;
    }
}
