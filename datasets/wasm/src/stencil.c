/* stencil: ITERS Jacobi sweeps of the 5-point stencil on an N x N float64 grid (args: N ITERS,
   default 256 50). Writes the final grid to stdout as raw little-endian float64, so a host
   implementation (meshbench.bench.exec) can be compared with it bit for bit. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 256;
    int iters = argc > 2 ? atoi(argv[2]) : 50;
    if (n < 3 || iters < 0) return 2;
    double *u = malloc(sizeof(double) * n * n), *v = malloc(sizeof(double) * n * n);
    if (!u || !v) return 3;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) u[i * n + j] = v[i * n + j] = (double)((i * 31 + j * 17) % 101) / 101.0;
    for (int t = 0; t < iters; t++) {
        for (int i = 1; i < n - 1; i++)
            for (int j = 1; j < n - 1; j++)
                v[i * n + j] = 0.25 * (u[(i - 1) * n + j] + u[(i + 1) * n + j] +
                                       u[i * n + j - 1] + u[i * n + j + 1]);
        double *w = u;
        u = v;
        v = w;
    }
    fwrite(u, sizeof(double), (size_t)n * n, stdout);
    return 0;
}
