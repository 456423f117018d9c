/* Fuzz target: JPEG and PNG decoding (the format from the signature), then a
 * small resize of what decoded, so the pixel buffer is read in full. */
#include <stdint.h>

#include "runtime/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_image img;
    tern_error err;
    if (tern_image_decode(data, size, &img, &err) != TERN_OK) return 0;
    /* Large images are legal but slow to resize; the decode was the target. */
    if ((uint64_t)img.width * img.height <= (1u << 16)) {
        tern_image small;
        if (tern_image_resize(&img, 7, 5, TERN_INTERP_BICUBIC, &small, &err) == TERN_OK) tern_image_free(&small);
    }
    tern_image_free(&img);
    return 0;
}
