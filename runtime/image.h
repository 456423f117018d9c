/* Images for vision models: JPEG and PNG decoding, and the preprocessing a
 * model's tern_image_config asks for (resize, centre crop, normalise).
 *
 * The pipeline follows what timm and Hugging Face do with PIL, so that logits
 * match theirs: images are decoded to 8-bit RGB (PIL's "RGB" mode: grayscale
 * replicated, alpha dropped, 16-bit samples reduced to their high byte), the
 * resize is PIL's ImagingResample (separable, antialiased when shrinking,
 * fixed-point coefficients, 8-bit rounding between the two passes), the crop
 * is torchvision's CenterCrop and the scaling is float32 x / 255 then
 * (x - mean) / std. Untrusted files give errors, never a crash or exit. */
#ifndef TERN_RUNTIME_IMAGE_H
#define TERN_RUNTIME_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits on decoded images: more is refused before anything is allocated. */
#define TERN_IMAGE_MAX_SIDE 16384u
#define TERN_IMAGE_MAX_PIXELS (1u << 28)
#define TERN_IMAGE_MAX_FILE (1u << 30) /* bytes of an encoded file */
/* A JPEG above TERN_IMAGE_FREE_PIXELS must bring at least one byte per
 * TERN_IMAGE_PIXELS_PER_BYTE pixels: arithmetic-coded scans that stop early
 * decode silently to grey, so a 115-byte file could otherwise declare 100
 * Mpixel (300 MB, seconds of work). Real photos carry far more. */
#define TERN_IMAGE_FREE_PIXELS (1u << 24)
#define TERN_IMAGE_PIXELS_PER_BYTE 4096u

/* 8-bit RGB, rows top to bottom, pixels interleaved: rgb[(y * width + x) * 3 + c]. */
typedef struct tern_image {
    uint32_t width;
    uint32_t height;
    uint8_t *rgb;
} tern_image;

/* Decodes a JPEG or PNG held in memory (the format comes from its signature). */
tern_status tern_image_decode(const void *data, size_t size, tern_image *out, tern_error *err);
/* Reads and decodes a file. */
tern_status tern_image_load(const char *path, tern_image *out, tern_error *err);
void tern_image_free(tern_image *image);

/* PIL's Image.resize(width, height) with its BILINEAR or BICUBIC filter. */
tern_status tern_image_resize(const tern_image *src, uint32_t width, uint32_t height,
                              tern_interpolation interp, tern_image *out, tern_error *err);

/* The whole preprocessing of one image into out[3][cfg->height][cfg->width]:
 * resize the short side to cfg->resize_short keeping the aspect ratio
 * (torchvision's Resize(int)), or, when resize_short is 0, straight to
 * height x width (Hugging Face's image processors); then the centre crop
 * (zero padding where the image is smaller) and the normalisation. Needs
 * cfg->channels == 3. */
tern_status tern_image_preprocess(const tern_image *image, const tern_image_config *cfg,
                                  float *out, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
