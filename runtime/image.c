/* JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB, PIL's
 * resampler and torchvision's resize/crop/normalise (runtime/image.h).
 *
 * Both decoders report fatal errors through a callback that must not return;
 * it longjmps back into the decode function, which frees what it allocated
 * and returns a tern_status. Pointers allocated between setjmp and longjmp are
 * volatile so that their values survive the jump. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "common/error.h"
#include "runtime/image.h"

void tern_image_free(tern_image *image) {
    if (!image) return;
    free(image->rgb);
    memset(image, 0, sizeof *image);
}

static tern_status check_size(const char *what, uint64_t width, uint64_t height, tern_error *err) {
    if (width == 0 || height == 0 || width > TERN_IMAGE_MAX_SIDE || height > TERN_IMAGE_MAX_SIDE ||
        width * height > TERN_IMAGE_MAX_PIXELS)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "%s: %llu x %llu pixels is outside the limits (1 to %u a side, %u in all)",
                         what, (unsigned long long)width, (unsigned long long)height,
                         TERN_IMAGE_MAX_SIDE, TERN_IMAGE_MAX_PIXELS);
    return TERN_OK;
}

/* ---- JPEG --------------------------------------------------------------- */

#define JPEG_MAX_SCANS 1000 /* a progressive file needs ~10; thousands are a denial of service */

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_guard;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_guard *g = (jpeg_guard *)(void *)cinfo->err;
    cinfo->err->format_message(cinfo, g->message);
    longjmp(g->jump, 1);
}

/* Warnings are silent (the library prints nothing), except entropy-coded
 * data that runs out: at the end of the file (PIL refuses that too) or at a
 * marker inside it (PIL fills grey). libjpeg would decode every declared
 * scanline of grey from a few bytes, so a 100-byte file could cost seconds
 * of work per call; tern refuses both. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER))
        jpeg_on_error(cinfo);
}

static void jpeg_on_output(j_common_ptr cinfo) {
    (void)cinfo;
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_guard *g = (jpeg_guard *)(void *)cinfo->err;
        snprintf(g->message, sizeof g->message, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(g->jump, 1);
    }
}

/* PIL's CMYK -> RGB: r = (255 - k) - (c * (255 - k)) / 255, rounded. */
static uint8_t cmyk_channel(unsigned c, unsigned k) {
    const unsigned nk = 255 - k, t = c * nk + 128;
    const int v = (int)nk - (int)(((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v);
}

static tern_status decode_jpeg(const uint8_t *data, size_t size, tern_image *out, tern_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard g;
    uint8_t *volatile pixels = NULL;
    JSAMPLE *volatile row = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&g.pub);
    g.pub.error_exit = jpeg_on_error;
    g.pub.emit_message = jpeg_on_message;
    g.pub.output_message = jpeg_on_output;
    g.message[0] = '\0';
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return tern_fail(err, TERN_ERR_FORMAT, "JPEG: %s", g.message);
    }
    jpeg_create_decompress(&cinfo);
    g.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &g.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    tern_status st = check_size("JPEG", cinfo.image_width, cinfo.image_height, err);
    const uint64_t declared = (uint64_t)cinfo.image_width * cinfo.image_height;
    if (st == TERN_OK && declared > TERN_IMAGE_FREE_PIXELS && declared / TERN_IMAGE_PIXELS_PER_BYTE > size)
        st = tern_fail(err, TERN_ERR_FORMAT,
                       "JPEG: %u x %u pixels from %zu bytes (more than %u pixels a byte above %u pixels): "
                       "a truncated or hostile file",
                       cinfo.image_width, cinfo.image_height, size, TERN_IMAGE_PIXELS_PER_BYTE,
                       TERN_IMAGE_FREE_PIXELS);
    if (st != TERN_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    int cmyk = 0, inverted = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        inverted = cinfo.saw_Adobe_marker; /* Adobe writes CMYK inverted (PIL's "CMYK;I") */
        break;
    default:
        cinfo.out_color_space = JCS_RGB;
        break;
    }
    jpeg_start_decompress(&cinfo);
    const size_t w = cinfo.output_width, h = cinfo.output_height;
    const int comps = cinfo.output_components;
    if ((st = check_size("JPEG", w, h, err)) != TERN_OK || comps < 1 || comps > 4) {
        jpeg_destroy_decompress(&cinfo);
        return st != TERN_OK ? st
                             : tern_fail(err, TERN_ERR_UNSUPPORTED, "JPEG: %d colour components",
                                         comps);
    }
    pixels = malloc(w * h * 3);
    row = malloc(w * (size_t)comps);
    if (!pixels || !row) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "JPEG: out of memory for %zu x %zu pixels", w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[1] = {row};
        const size_t y = cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) break;
        uint8_t *dst = pixels + y * w * 3;
        for (size_t x = 0; x < w; x++) {
            const uint8_t *p = row + x * (size_t)comps;
            if (comps == 1) {
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = p[0];
            } else if (cmyk && comps == 4) {
                const unsigned k = inverted ? 255u - p[3] : p[3];
                for (int c = 0; c < 3; c++)
                    dst[3 * x + c] = cmyk_channel(inverted ? 255u - p[c] : p[c], k);
            } else {
                dst[3 * x] = p[0];
                dst[3 * x + 1] = p[1];
                dst[3 * x + 2] = p[2];
            }
        }
    }
    if (cinfo.output_scanline < cinfo.output_height) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return tern_fail(err, TERN_ERR_FORMAT, "JPEG: image data ends at row %u of %u",
                         cinfo.output_scanline, cinfo.output_height);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = (uint32_t)w;
    out->height = (uint32_t)h;
    out->rgb = pixels;
    return TERN_OK;
}

/* ---- PNG ---------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t size, at;
    char message[256];
} png_source;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_on_read(png_structp png, png_bytep out, size_t n) {
    png_source *src = png_get_io_ptr(png);
    if (n > src->size - src->at) png_error(png, "file is truncated");
    memcpy(out, src->data + src->at, n);
    src->at += n;
}

static tern_status decode_png(const uint8_t *data, size_t size, tern_image *out, tern_error *err) {
    /* libpng refuses sizes over the user limits with only "Invalid IHDR data":
     * check the IHDR's own width and height first, for a message that says why. */
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        const uint32_t iw = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        const uint32_t ih = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        tern_status st = check_size("PNG", iw, ih, err);
        if (st != TERN_OK) return st;
    }
    png_source src = {data, size, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "PNG: out of memory");
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return tern_fail(err, TERN_ERR_FORMAT, "PNG: %s", src.message);
    }
    png_set_user_limits(png, TERN_IMAGE_MAX_SIDE, TERN_IMAGE_MAX_SIDE);
    png_set_read_fn(png, &src, png_on_read);
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    tern_status st = check_size("PNG", w, h, err);
    if (st != TERN_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    /* PIL's convert("RGB"): palette colours (transparency ignored), grey
     * replicated, alpha dropped, 16-bit samples cut to their high byte. */
    const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (!(color & PNG_COLOR_MASK_COLOR) && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        png_destroy_read_struct(&png, &info, NULL);
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "PNG: colour type %d at %d bits does not convert to 8-bit RGB", color,
                         depth);
    }
    pixels = malloc((size_t)w * h * 3);
    rows = malloc(h * sizeof *rows);
    if (!pixels || !rows) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "PNG: out of memory for %u x %u pixels", w, h);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->width = w;
    out->height = h;
    out->rgb = pixels;
    return TERN_OK;
}

tern_status tern_image_decode(const void *data, size_t size, tern_image *out, tern_error *err) {
    if (!out || (!data && size)) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_image_decode: NULL argument");
    memset(out, 0, sizeof *out);
    const uint8_t *p = data;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return decode_jpeg(p, size, out, err);
    if (size >= 8 && memcmp(p, png_sig, 8) == 0) return decode_png(p, size, out, err);
    return tern_fail(err, TERN_ERR_UNSUPPORTED, "not a JPEG or PNG file (%zu bytes)", size);
}

tern_status tern_image_load(const char *path, tern_image *out, tern_error *err) {
    if (!path || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_image_load: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return tern_fail(err, TERN_ERR_IO, "cannot read %s: not a regular file", path);
    }
    if ((unsigned long)size > TERN_IMAGE_MAX_FILE) {
        fclose(f);
        return tern_fail(err, TERN_ERR_FORMAT, "%s: %ld bytes is larger than the %u allowed", path,
                         size, TERN_IMAGE_MAX_FILE);
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
    }
    const size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    tern_status st;
    if (got != (size_t)size)
        st = tern_fail(err, TERN_ERR_IO, "cannot read %s", path);
    else if ((st = tern_image_decode(buf, got, out, err)) != TERN_OK)
        tern_fail_context(err, st, "%s", path);
    free(buf);
    return st;
}

/* ---- Resampling: PIL's ImagingResample ----------------------------------
 * Per output pixel a window of input pixels and its weights, the filter
 * stretched by the downscale factor (antialiasing); weights normalised to
 * sum 1 and then to fixed point with 22 fraction bits; each pass rounds and
 * clips to 8 bits. Only the outputs asked for are computed: any sub-window
 * of the output is identical to the same window of the full resize. */

#define PRECISION_BITS (32 - 8 - 2)

static double filter_support(tern_interpolation f) {
    return f == TERN_INTERP_BICUBIC ? 2.0 : 1.0;
}

static double filter_eval(tern_interpolation f, double x) {
    if (x < 0.0) x = -x;
    if (f == TERN_INTERP_BILINEAR) return x < 1.0 ? 1.0 - x : 0.0;
    const double a = -0.5; /* PIL's bicubic */
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    size_t ksize;
    int *bounds;  /* per output: first input, count */
    int32_t *kk;  /* per output: ksize fixed-point weights */
} resample_coeffs;

static void coeffs_free(resample_coeffs *c) {
    free(c->bounds);
    free(c->kk);
}

/* Coefficients of outputs [o0, o0 + n) of a resize from in_size to out_size. */
static tern_status coeffs_make(uint32_t in_size, uint32_t out_size, uint32_t o0, uint32_t n,
                               tern_interpolation f, resample_coeffs *c, tern_error *err) {
    memset(c, 0, sizeof *c);
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter_support(f) * filterscale;
    c->ksize = (size_t)ceil(support) * 2 + 1;
    double *w = malloc(c->ksize * sizeof *w);
    c->bounds = malloc((size_t)n * 2 * sizeof *c->bounds);
    c->kk = calloc((size_t)n * c->ksize, sizeof *c->kk);
    if (!w || !c->bounds || !c->kk) {
        free(w);
        coeffs_free(c);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for resize coefficients");
    }
    for (uint32_t i = 0; i < n; i++) {
        const double center = ((double)(o0 + i) + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > (int)in_size) xmax = (int)in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = filter_eval(f, (x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->kk + (size_t)i * c->ksize;
        for (int x = 0; x < xmax; x++) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
    }
    free(w);
    return TERN_OK;
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* The window [x0, x0 + cw) x [y0, y0 + ch) of src resized to out_w x out_h,
 * into a new cw x ch image. */
static tern_status resize_window(const tern_image *src, uint32_t out_w, uint32_t out_h,
                                 uint32_t x0, uint32_t y0, uint32_t cw, uint32_t ch,
                                 tern_interpolation f, tern_image *out, tern_error *err) {
    memset(out, 0, sizeof *out);
    const int need_h = out_w != src->width, need_v = out_h != src->height;
    resample_coeffs hc = {0}, vc = {0};
    tern_status st;
    if ((st = coeffs_make(src->width, out_w, x0, cw, f, &hc, err)) != TERN_OK) return st;
    if ((st = coeffs_make(src->height, out_h, y0, ch, f, &vc, err)) != TERN_OK) {
        coeffs_free(&hc);
        return st;
    }
    /* Rows of the source the vertical pass reads. */
    const uint32_t first = (uint32_t)vc.bounds[0];
    const uint32_t last = (uint32_t)(vc.bounds[2 * (ch - 1)] + vc.bounds[2 * (ch - 1) + 1]);
    const uint32_t rows = need_v ? last - first : ch;
    const uint32_t row0 = need_v ? first : y0;
    uint8_t *tmp = malloc((size_t)cw * (rows ? rows : 1) * 3);
    uint8_t *dst = malloc((size_t)cw * ch * 3);
    if (!tmp || !dst) {
        free(tmp);
        free(dst);
        coeffs_free(&hc);
        coeffs_free(&vc);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory resizing to %u x %u", out_w, out_h);
    }
    /* Horizontal pass: source rows [row0, row0 + rows), output columns of the window. */
    for (uint32_t y = 0; y < rows; y++) {
        const uint8_t *in = src->rgb + (size_t)(row0 + y) * src->width * 3;
        uint8_t *o = tmp + (size_t)y * cw * 3;
        for (uint32_t x = 0; x < cw; x++) {
            if (!need_h) {
                memcpy(o + 3 * x, in + 3 * (size_t)(x0 + x), 3);
                continue;
            }
            const int xmin = hc.bounds[2 * x], xn = hc.bounds[2 * x + 1];
            const int32_t *k = hc.kk + (size_t)x * hc.ksize;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int i = 0; i < xn; i++) {
                const uint8_t *p = in + 3 * (size_t)(xmin + i);
                s0 += p[0] * k[i];
                s1 += p[1] * k[i];
                s2 += p[2] * k[i];
            }
            o[3 * x] = clip8(s0);
            o[3 * x + 1] = clip8(s1);
            o[3 * x + 2] = clip8(s2);
        }
    }
    /* Vertical pass over the horizontal pass's rows. */
    for (uint32_t y = 0; y < ch; y++) {
        uint8_t *o = dst + (size_t)y * cw * 3;
        if (!need_v) {
            memcpy(o, tmp + (size_t)y * cw * 3, (size_t)cw * 3);
            continue;
        }
        const int ymin = vc.bounds[2 * y] - (int)first, yn = vc.bounds[2 * y + 1];
        const int32_t *k = vc.kk + (size_t)y * vc.ksize;
        for (uint32_t x = 0; x < cw * 3; x++) {
            int32_t s = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < yn; i++) s += tmp[(size_t)(ymin + i) * cw * 3 + x] * k[i];
            o[x] = clip8(s);
        }
    }
    free(tmp);
    coeffs_free(&hc);
    coeffs_free(&vc);
    out->width = cw;
    out->height = ch;
    out->rgb = dst;
    return TERN_OK;
}

tern_status tern_image_resize(const tern_image *src, uint32_t width, uint32_t height,
                              tern_interpolation interp, tern_image *out, tern_error *err) {
    if (!src || !src->rgb || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_image_resize: NULL argument");
    tern_status st = check_size("resize", width, height, err);
    if (st != TERN_OK) return st;
    return resize_window(src, width, height, 0, 0, width, height, interp, out, err);
}

/* torchvision's CenterCrop offset: round((size - crop) / 2) with Python's
 * round-half-to-even, or minus the left/top padding when the crop is larger. */
static int64_t crop_offset(uint64_t size, uint64_t crop) {
    if (crop > size) return -(int64_t)((crop - size) / 2);
    const uint64_t d = size - crop, half = d / 2;
    return (int64_t)(d % 2 == 0 || half % 2 == 0 ? half : half + 1);
}

tern_status tern_image_preprocess(const tern_image *image, const tern_image_config *cfg,
                                  float *out, tern_error *err) {
    if (!image || !image->rgb || !cfg || !out)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_image_preprocess: NULL argument");
    if (cfg->channels != 3)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "the model takes %u channels; images give 3 (RGB)",
                         cfg->channels);
    if (cfg->width == 0 || cfg->height == 0 || cfg->width > TERN_IMAGE_MAX_SIDE ||
        cfg->height > TERN_IMAGE_MAX_SIDE || cfg->resize_short > TERN_IMAGE_MAX_SIDE)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "image config %u x %u (resize %u) is out of range",
                         cfg->width, cfg->height, cfg->resize_short);
    if (cfg->interpolation != TERN_INTERP_BILINEAR && cfg->interpolation != TERN_INTERP_BICUBIC)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "unknown interpolation %d", (int)cfg->interpolation);
    const uint64_t w = image->width, h = image->height;
    uint64_t rw = cfg->width, rh = cfg->height;
    if (cfg->resize_short) {
        /* torchvision: the short side becomes resize_short, the long side
         * int(resize_short * long / short). */
        const uint64_t s = cfg->resize_short;
        const uint64_t longer = (uint64_t)((double)(s * (w > h ? w : h)) / (double)(w < h ? w : h));
        if (w <= h) {
            rw = s;
            rh = longer;
        } else {
            rh = s;
            rw = longer;
        }
        if (rw == 0 || rh == 0 || rw > INT32_MAX / 2 || rh > INT32_MAX / 2)
            return tern_fail(err, TERN_ERR_INVALID_ARG,
                             "a %llu x %llu image resized to short side %llu is %llu x %llu",
                             (unsigned long long)w, (unsigned long long)h,
                             (unsigned long long)s, (unsigned long long)rw, (unsigned long long)rh);
    }
    const int64_t left = crop_offset(rw, cfg->width), top = crop_offset(rh, cfg->height);
    /* The part of the crop inside the resized image. */
    const int64_t x_lo = left < 0 ? -left : 0, y_lo = top < 0 ? -top : 0;
    const int64_t x_hi = (int64_t)rw - left < (int64_t)cfg->width ? (int64_t)rw - left : cfg->width;
    const int64_t y_hi = (int64_t)rh - top < (int64_t)cfg->height ? (int64_t)rh - top : cfg->height;
    tern_image win;
    tern_status st = resize_window(image, (uint32_t)rw, (uint32_t)rh, (uint32_t)(left + x_lo),
                                   (uint32_t)(top + y_lo), (uint32_t)(x_hi - x_lo),
                                   (uint32_t)(y_hi - y_lo), cfg->interpolation, &win, err);
    if (st != TERN_OK) return st;
    const size_t plane = (size_t)cfg->width * cfg->height;
    for (uint32_t c = 0; c < 3; c++) {
        const float mean = cfg->mean[c], std = cfg->std[c];
        float *o = out + c * plane;
        for (int64_t y = 0; y < cfg->height; y++) {
            for (int64_t x = 0; x < cfg->width; x++) {
                uint8_t v = 0; /* torchvision pads with black */
                if (y >= y_lo && y < y_hi && x >= x_lo && x < x_hi)
                    v = win.rgb[((size_t)(y - y_lo) * win.width + (size_t)(x - x_lo)) * 3 + c];
                o[y * cfg->width + x] = ((float)v / 255.0f - mean) / std;
            }
        }
    }
    tern_image_free(&win);
    return TERN_OK;
}
