"""conv2d, rung v1: the formula as straight loops (numba).           lessons 01, 12

Stride (sh, sw), zero padding (ph, pw), kernel taps (p, q):
    y[n,f,i,j]  = b[f] + sum_c sum_p sum_q  w[f,c,p,q] * x[n,c, i*sh+p-ph, j*sw+q-pw]
    gw[f,c,p,q] = sum_n sum_i sum_j  gy[n,f,i,j] * x[n,c, i*sh+p-ph, j*sw+q-pw]
    gb[f]       = sum_n sum_i sum_j  gy[n,f,i,j]
    gx[n,c,h,v] = sum_f sum_p sum_q  gy[n,f,i,j] * w[f,c,p,q]
                  over the taps that land on (h, v): h = i*sh+p-ph, v = j*sw+q-pw
(a pixel outside the image reads 0; v is the input column, w being the weight.)

Index map: one output element per iteration of the inner loop body.
    forward   prange over n; element y[n,f,i,j] <- its C*KH*KW taps
    gx        prange over n; element gx[n,c,h,v] <- the (f, p, q) whose tap lands on it
    gw, gb    prange over f (every image adds into every weight, so the images cannot
              be split between threads without partial sums); element gw[f,c,p,q]
Cost: 2*N*F*C*KH*KW*Ho*Wo FLOPs a pass, the same as every rung; what differs
is how fast they run (lesson 12 times the ladder: `minicnn bench --ladder conv2d`).
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def forward(x, w, b, sh, sw, ph, pw, y):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) -> y (N,F,Ho,Wo), overwritten."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for n in prange(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    acc = b[f]
                    for c in range(C):
                        for p in range(KH):
                            h = i * sh + p - ph
                            for q in range(KW):
                                v = j * sw + q - pw
                                if 0 <= h < H and 0 <= v < W:
                                    acc += w[f, c, p, q] * x[n, c, h, v]
                    y[n, f, i, j] = acc


@njit(parallel=True, cache=True)
def backward(x, w, gy, sh, sw, ph, pw, gx, gw, gb):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> gx, gw, gb (shapes of x, w, b),
    overwritten."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for n in prange(N):
        for c in range(C):
            for h in range(H):
                for v in range(W):
                    acc = 0.0
                    for f in range(F):
                        for p in range(KH):
                            for q in range(KW):
                                i, j = h + ph - p, v + pw - q       # = i*sh and j*sw
                                if i % sh == 0 and j % sw == 0 and 0 <= i < Ho * sh \
                                        and 0 <= j < Wo * sw:
                                    acc += gy[n, f, i // sh, j // sw] * w[f, c, p, q]
                    gx[n, c, h, v] = acc
    for f in prange(F):
        acc_b = 0.0
        for n in range(N):
            for i in range(Ho):
                for j in range(Wo):
                    acc_b += gy[n, f, i, j]
        gb[f] = acc_b
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    acc = 0.0
                    for n in range(N):
                        for i in range(Ho):
                            h = i * sh + p - ph
                            for j in range(Wo):
                                v = j * sw + q - pw
                                if 0 <= h < H and 0 <= v < W:
                                    acc += gy[n, f, i, j] * x[n, c, h, v]
                    gw[f, c, p, q] = acc
