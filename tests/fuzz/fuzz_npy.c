/* Fuzz target: tern_npy_read_f32 (it takes a path: the input goes to a
 * temporary file first). */
#include <stdint.h>
#include <stdlib.h>

#include "formats/npy.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[4096], path[4096];
    if (fuzz_tmpdir(dir, sizeof dir) != 0) return 0;
    if (fuzz_write(dir, "input.npy", data, size, path, sizeof path) == 0) {
        float *values = NULL;
        uint32_t ndim = 0;
        uint64_t shape[4];
        tern_error err;
        if (tern_npy_read_f32(path, &values, &ndim, shape, &err) == TERN_OK) {
            uint64_t n = 1;
            for (uint32_t d = 0; d < ndim; d++) n *= shape[d];
            volatile float sink = 0;
            for (uint64_t i = 0; i < n; i++) sink += values[i]; /* reads every element it claims */
            (void)sink;
        }
        free(values);
    }
    fuzz_rmdir(dir);
    return 0;
}
