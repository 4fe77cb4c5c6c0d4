/* Image decoding from memory: PNG with libspng, JPEG with libjpeg(-turbo). Both are capped at
 * ML_IMAGE_MAX_SIDE per side before any pixel buffer is allocated, and libjpeg's fatal errors
 * come back through longjmp instead of its default exit(). Output is 1 (luminance) or 3 (RGB)
 * channels, planar (C, H, W), alpha composited over white. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <spng.h>

#include "data/internal.h"

/* Interleaved RGBA8 (n pixels) -> planar channels. */
static void rgba_to_planar(const uint8_t *rgba, int64_t n, int64_t channels, uint8_t *out) {
  for (int64_t i = 0; i < n; i++) {
    const uint8_t *p = rgba + 4 * i;
    unsigned a = p[3];
    unsigned rgb[3];
    for (int k = 0; k < 3; k++) rgb[k] = (p[k] * a + 255u * (255u - a) + 127u) / 255u;
    if (channels == 1)
      out[i] = (uint8_t)((299u * rgb[0] + 587u * rgb[1] + 114u * rgb[2] + 500u) / 1000u);
    else
      for (int k = 0; k < 3; k++) out[k * n + i] = (uint8_t)rgb[k];
  }
}

static ml_status decode_png(const uint8_t *buf, size_t len, int64_t channels, const char *what, ml__image *out) {
  spng_ctx *ctx = spng_ctx_new(0);
  if (!ctx) return ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
  ml_status st = ML_OK;
  uint8_t *rgba = NULL;
  struct spng_ihdr ihdr;
  size_t size = 0;
  spng_set_image_limits(ctx, ML_IMAGE_MAX_SIDE, ML_IMAGE_MAX_SIDE);
  spng_set_chunk_limits(ctx, (size_t)16 << 20, (size_t)16 << 20);
  int e = spng_set_png_buffer(ctx, buf, len);
  if (!e) e = spng_get_ihdr(ctx, &ihdr);
  if (!e && (ihdr.width == 0 || ihdr.height == 0 || ihdr.width > ML_IMAGE_MAX_SIDE || ihdr.height > ML_IMAGE_MAX_SIDE)) {
    st = ml_error(ML_ERR_FORMAT, "%s: PNG of %ux%u exceeds the %dx%d limit", what, ihdr.width, ihdr.height,
                  ML_IMAGE_MAX_SIDE, ML_IMAGE_MAX_SIDE);
    goto done;
  }
  /* Grayscale without transparency (Omniglot: 1-bit) decodes straight to 8-bit gray, several
   * times faster than spng's generic RGBA8 path. */
  struct spng_trns trns;
  bool gray = !e && ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth <= 8 &&
              spng_get_trns(ctx, &trns) == SPNG_ECHUNKAVAIL;
  int fmt = gray ? SPNG_FMT_G8 : SPNG_FMT_RGBA8;
  if (!e) e = spng_decoded_image_size(ctx, fmt, &size);
  if (!e) {
    rgba = malloc(size);
    if (!rgba) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
      goto done;
    }
    e = spng_decode_image(ctx, rgba, size, fmt, gray ? 0 : SPNG_DECODE_TRNS);
  }
  if (e) {
    st = ml_error(ML_ERR_FORMAT, "%s: corrupt PNG (%s)", what, spng_strerror(e));
    goto done;
  }
  int64_t n = (int64_t)ihdr.width * ihdr.height;
  out->px = malloc((size_t)(n * channels));
  if (!out->px) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
    goto done;
  }
  if (gray)
    for (int64_t c = 0; c < channels; c++) memcpy(out->px + c * n, rgba, (size_t)n);
  else
    rgba_to_planar(rgba, n, channels, out->px);
  out->c = channels;
  out->h = ihdr.height;
  out->w = ihdr.width;
done:
  free(rgba);
  spng_ctx_free(ctx);
  return st;
}

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
  jpeg_err *je = (jpeg_err *)cinfo->err;
  je->pub.format_message(cinfo, je->msg);
  longjmp(je->jump, 1);
}
static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; }

/* Separate from decode_jpeg so that nothing the longjmp can clobber lives in a register: all
 * state is in *s, which outlives the setjmp frame. */
typedef struct {
  struct jpeg_decompress_struct cinfo;
  jpeg_err err;
  uint8_t *row, *px;
} jpeg_state;

static ml_status decode_jpeg(const uint8_t *buf, size_t len, int64_t channels, const char *what, ml__image *out) {
  jpeg_state *s = calloc(1, sizeof *s);
  if (!s) return ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
  ml_status st = ML_OK;
  s->cinfo.err = jpeg_std_error(&s->err.pub);
  s->err.pub.error_exit = jpeg_fail;
  s->err.pub.emit_message = jpeg_quiet;
  if (setjmp(s->err.jump)) {
    st = ml_error(ML_ERR_FORMAT, "%s: corrupt JPEG (%s)", what, s->err.msg);
    goto done;
  }
  jpeg_create_decompress(&s->cinfo);
  jpeg_mem_src(&s->cinfo, buf, (unsigned long)len);
  jpeg_read_header(&s->cinfo, TRUE);
  if (s->cinfo.image_width == 0 || s->cinfo.image_height == 0 || s->cinfo.image_width > ML_IMAGE_MAX_SIDE ||
      s->cinfo.image_height > ML_IMAGE_MAX_SIDE) {
    st = ml_error(ML_ERR_FORMAT, "%s: JPEG of %ux%u exceeds the %dx%d limit", what, s->cinfo.image_width,
                  s->cinfo.image_height, ML_IMAGE_MAX_SIDE, ML_IMAGE_MAX_SIDE);
    goto done;
  }
  s->cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&s->cinfo);
  int64_t w = s->cinfo.output_width, h = s->cinfo.output_height, oc = s->cinfo.output_components;
  if (oc != channels) {
    st = ml_error(ML_ERR_FORMAT, "%s: JPEG decodes to %lld channels, wanted %lld", what, (long long)oc,
                  (long long)channels);
    goto done;
  }
  s->row = malloc((size_t)(w * oc));
  s->px = malloc((size_t)(w * h * oc));
  if (!s->row || !s->px) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
    goto done;
  }
  while (s->cinfo.output_scanline < s->cinfo.output_height) {
    int64_t y = s->cinfo.output_scanline;
    JSAMPROW rows[1] = {s->row};
    if (jpeg_read_scanlines(&s->cinfo, rows, 1) != 1) {
      st = ml_error(ML_ERR_FORMAT, "%s: truncated JPEG", what);
      goto done;
    }
    for (int64_t x = 0; x < w; x++)
      for (int64_t k = 0; k < oc; k++) s->px[k * w * h + y * w + x] = s->row[x * oc + k];
  }
  jpeg_finish_decompress(&s->cinfo);
  out->px = s->px;
  s->px = NULL;
  out->c = channels;
  out->h = h;
  out->w = w;
done:
  jpeg_destroy_decompress(&s->cinfo);
  free(s->row);
  free(s->px);
  free(s);
  return st;
}

ml_status ml__image_decode(const uint8_t *buf, size_t len, int64_t channels, const char *what, ml__image *out) {
  memset(out, 0, sizeof *out);
  if (channels != 1 && channels != 3) return ml_error(ML_ERR_ARG, "%s: channels must be 1 or 3", what);
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= 8 && !memcmp(buf, png_sig, 8)) return decode_png(buf, len, channels, what, out);
  if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return decode_jpeg(buf, len, channels, what, out);
  return ml_error(ML_ERR_FORMAT, "%s: not a PNG or JPEG image", what);
}

ml_status ml__omniglot_png(const uint8_t *buf, size_t len, int64_t s, const char *what, uint8_t *dst) {
  ml__image im;
  ml_status st = ml__image_decode(buf, len, 1, what, &im);
  if (st) return st;
  /* white paper, black ink -> ink = 255 */
  for (int64_t i = 0; i < im.h * im.w; i++) im.px[i] = (uint8_t)(255 - im.px[i]);
  ml_image_resize_area(im.px, im.h, im.w, dst, s, s);
  free(im.px);
  return ML_OK;
}
