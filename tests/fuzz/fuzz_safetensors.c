/* Fuzz target: the safetensors reader over memory, then every tensor
 * converted to float32 (tensors above a bound are skipped so that a
 * header claiming a huge shape does not make the harness itself slow). */
#include <stdint.h>
#include <stdlib.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ELEMENTS (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_safetensors st;
    tern_error err;
    if (tern_safetensors_open_memory(data, size, &st, &err) != TERN_OK) return 0;
    for (uint32_t i = 0; i < st.n_tensors; i++) {
        const tern_st_tensor *t = &st.tensors[i];
        if (tern_safetensors_find(&st, t->name) == NULL) abort(); /* every listed name is found */
        (void)tern_st_dtype_name(t->dtype);
        if (t->n_elements > FUZZ_MAX_ELEMENTS) continue;
        float *out = malloc(t->n_elements ? t->n_elements * sizeof(float) : 1);
        if (!out) continue;
        (void)tern_st_to_f32(t, out, &err);
        free(out);
    }
    tern_safetensors_close(&st);
    return 0;
}
