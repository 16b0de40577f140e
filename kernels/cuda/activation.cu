// Elementwise activations, forward and backward                     lesson 10
//                                                       (the maths: lesson 02)
//   relu:     y = max(x, 0)                       gx = gy where y > 0, else 0
//   sigmoid:  y = 1 / (1 + exp(-x))               gx = gy * y * (1 - y)
//             computed as 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, with
//             e = exp(-|x|) <= 1: the same number, and exp never overflows
// The backward formulas use y, the forward output, so the forward input need not be
// kept for backward.
//
// Index map: one thread per element, any shape (the array is seen as flat):
//   t = blockIdx.x * blockDim.x + threadIdx.x  ->  element t; threads past n do nothing
// Cost: memory-bound, one read and one write per element (backward: two reads).

extern "C" __global__ void relu_forward(const float* x, float* y, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) y[t] = x[t] < 0.0f ? 0.0f : x[t];   // NaN passes through, as in PyTorch
}

extern "C" __global__ void relu_backward(const float* gy, const float* y, float* gx, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) gx[t] = y[t] > 0.0f ? gy[t] : 0.0f;
}

extern "C" __global__ void sigmoid_forward(const float* x, float* y, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float e = expf(-fabsf(x[t]));
    y[t] = x[t] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

extern "C" __global__ void sigmoid_backward(const float* gy, const float* y, float* gx, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) gx[t] = gy[t] * y[t] * (1.0f - y[t]);
}
