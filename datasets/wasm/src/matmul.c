/* matmul: C = A x B for N x N float64 matrices (arg: N, default 200), i-k-j loop order.
   Writes C to stdout as raw little-endian float64 (compared bit for bit by the benchmark). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n < 1) return 2;
    double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n);
    double *c = calloc((size_t)n * n, sizeof(double));
    if (!a || !b || !c) return 3;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            a[i * n + j] = (double)((i * 7 + j * 3) % 13) / 13.0 - 0.5;
            b[i * n + j] = (double)((i * 5 + j * 11) % 17) / 17.0 - 0.25;
        }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double aik = a[i * n + k];
            for (int j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
        }
    fwrite(c, sizeof(double), (size_t)n * n, stdout);
    return 0;
}
