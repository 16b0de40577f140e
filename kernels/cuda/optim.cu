// Optimiser updates, in place                                        lesson 10
//                                                       (the maths: lesson 06)
//   SGD (PyTorch's rule):
//     g' = g + weight_decay * p
//     buf = g' on the first step, else momentum * buf + (1 - dampening) * g'
//     d = g' + momentum * buf if nesterov, else buf       (d = g' when momentum == 0)
//     p -= lr * d
//   Adam (PyTorch's rule, L2 weight decay, step counted from 1):
//     g' = g + weight_decay * p
//     m = beta1 * m + (1 - beta1) * g'            v = beta2 * v + (1 - beta2) * g'^2
//     p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)
//     with step_size = lr / (1 - beta1^step) and sqrt_bc2 = sqrt(1 - beta2^step),
//     worked out once per step on the host (in double precision)
//
// Index map: one thread per parameter element, t = blockIdx.x * blockDim.x + threadIdx.x.
// Every element's update reads and writes only its own slots of p, buf, m, v.
// Cost: memory-bound, 3 to 4 arrays read and 2 to 3 written per element.

extern "C" __global__ void sgd_step(float* p, const float* g, float* buf, int n,
                                    float lr, float momentum, float dampening,
                                    float weight_decay, int nesterov, int first)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float d = g[t] + weight_decay * p[t];
    if (momentum != 0.0f) {
        float b = first ? d : momentum * buf[t] + (1.0f - dampening) * d;
        buf[t] = b;
        d = nesterov ? d + momentum * b : b;
    }
    p[t] -= lr * d;
}

extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, int n,
                                     float step_size, float beta1, float beta2, float eps,
                                     float weight_decay, float sqrt_bc2)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float d = g[t] + weight_decay * p[t];
    float mt = beta1 * m[t] + (1.0f - beta1) * d;
    float vt = beta2 * v[t] + (1.0f - beta2) * d * d;
    m[t] = mt;
    v[t] = vt;
    p[t] -= step_size * mt / (sqrtf(vt) / sqrt_bc2 + eps);
}
