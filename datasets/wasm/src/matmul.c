/* matmul: C = A x B for N x N float64 matrices (arg: N, default 200). Writes C to stdout as
   raw little-endian float64, compared bit for bit by the benchmark with a plain i-k-j loop.

   Register-blocked with wasm SIMD: eight columns of a row of C stay in four f64x2 registers
   while k runs, so every element is still 0 + a[i][0]*b[0][j] + a[i][1]*b[1][j] + ... in
   ascending k, exactly the additions (and roundings) of the i-k-j loop. No fused
   multiply-add: wasm has none outside relaxed SIMD. */
#include <stdio.h>
#include <stdlib.h>
#include <wasm_simd128.h>

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
    for (int i = 0; i < n; i++) {
        const double *arow = a + (size_t)i * n;
        double *crow = c + (size_t)i * n;
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            v128_t c0 = wasm_f64x2_splat(0.0), c1 = c0, c2 = c0, c3 = c0;
            for (int k = 0; k < n; k++) {
                v128_t aik = wasm_f64x2_splat(arow[k]);
                const double *bk = b + (size_t)k * n + j;
                c0 = wasm_f64x2_add(c0, wasm_f64x2_mul(aik, wasm_v128_load(bk)));
                c1 = wasm_f64x2_add(c1, wasm_f64x2_mul(aik, wasm_v128_load(bk + 2)));
                c2 = wasm_f64x2_add(c2, wasm_f64x2_mul(aik, wasm_v128_load(bk + 4)));
                c3 = wasm_f64x2_add(c3, wasm_f64x2_mul(aik, wasm_v128_load(bk + 6)));
            }
            wasm_v128_store(crow + j, c0);
            wasm_v128_store(crow + j + 2, c1);
            wasm_v128_store(crow + j + 4, c2);
            wasm_v128_store(crow + j + 6, c3);
        }
        for (; j < n; j++) {
            double s = 0.0;
            for (int k = 0; k < n; k++) s += arow[k] * b[(size_t)k * n + j];
            crow[j] = s;
        }
    }
    fwrite(c, sizeof(double), (size_t)n * n, stdout);
    return 0;
}
