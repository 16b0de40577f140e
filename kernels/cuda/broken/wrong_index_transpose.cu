// BROKEN ON PURPOSE: a tiled transpose with the block indices not swapped  lesson 10
//
//   transpose: y[c, r] = x[r, c], x is R x C, y is C x R (row-major)
//   index map: block (bx, by) owns the 32 x 32 tile of x with corner
//   (32*by, 32*bx); thread (tx, ty) loads x[32*by + ty][32*bx + tx] into
//   tile[ty][tx], waits, then writes tile[tx][ty] to the transposed tile of y,
//   whose corner is (32*bx, 32*by): y[32*bx + ty][32*by + tx].
//
// What is wrong: the write uses the corner (32*by, 32*bx), the corner of the
// tile it read, not the transposed one. Inside one tile the transpose is
// right, so a test with a single 32 x 32 matrix passes.
//
// What the emulator reports: nothing by itself; the result is wrong in every
// thread order. A test against numpy on a matrix of several tiles that is not
// square (48 x 80) catches it: test the sizes that exercise the index map.
#define TILE 32

extern "C" __global__ void transpose(const float* x, float* y, int R, int C) {
    __shared__ float tile[TILE][TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int r = blockIdx.y * TILE + ty, c = blockIdx.x * TILE + tx;
    if (r < R && c < C) tile[ty][tx] = x[r * C + c];
    __syncthreads();
    int yr = blockIdx.y * TILE + ty;  // the bug: should be blockIdx.x * TILE + ty
    int yc = blockIdx.x * TILE + tx;  // the bug: should be blockIdx.y * TILE + tx
    if (yr < C && yc < R) y[yr * R + yc] = tile[tx][ty];
}
