// A correct kernel, called wrongly from Python                            lesson 10
//
//   scale: y[i] = alpha * x[i] for i < n
//   index map: one thread per element, i = blockIdx.x * blockDim.x + threadIdx.x
//
// What is wrong is the call: f(grid, block, (x, y, 2.0, n)). cupy passes the
// Python float 2.0 as an 8-byte double; the kernel reads the first 4 bytes of
// it as a float (about 0.0 for 2.0) and every later argument from the wrong
// place. No error, just a wrong answer.
//
// What the emulator reports: the loader checks every argument against this
// signature before the launch:
//   KernelArgumentError: kernel scale, parameter 2 (float alpha): expected
//   numpy.float32, got a Python float; pass np.float32(...) (cupy would
//   silently pass a double)
extern "C" __global__ void scale(const float* x, float* y, float alpha, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = alpha * x[i];
}
