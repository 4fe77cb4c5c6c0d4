/* report: runs people can look at. A self-contained HTML report (inline CSS and SVG, no
 * scripts, no network) drawn from one or more run directories (config.ini, metrics.jsonl,
 * eval.json, eval_steps.json, machine.json, whatever exists so far), and TensorBoard event files
 * (TFRecord framing of Event protocol buffers with scalar summaries, encoded by hand) written
 * beside the JSON lines so `tensorboard --logdir runs/` shows metalearn runs. */
#ifndef METALEARN_REPORT_H
#define METALEARN_REPORT_H

#include "metalearn/base.h"

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses ----
 * crc is the running value: start with 0, pass the result back in to continue. */
ML_API uint32_t ml_crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
ML_API uint32_t ml_crc32c_mask(uint32_t crc);

/* ---- TensorBoard event files ---- */
typedef struct ml_tfevents ml_tfevents;
/* Creates dir/events.out.tfevents.<unix time>.<hostname> (a new file each time, never
 * overwriting) and writes the file_version event. The caller closes with ml_tfevents_close. */
ML_API ml_status ml_tfevents_open(const char *dir, ml_tfevents **out);
ML_API const char *ml_tfevents_path(const ml_tfevents *w); /* valid until close */
/* One Event with one scalar summary value. wall_time in seconds since the epoch (0 = now). */
ML_API ml_status ml_tfevents_scalar(ml_tfevents *w, const char *tag, int64_t step, double wall_time, float value);
/* Every numeric key of a JSON object line (a metrics.jsonl line) except "iter" becomes a scalar
 * under its key, at step = the line's "iter"; lines without "iter" are skipped. Flushes. */
ML_API ml_status ml_tfevents_json_line(ml_tfevents *w, const char *json_line, double wall_time);
ML_API ml_status ml_tfevents_close(ml_tfevents *w); /* NULL is fine */
/* Encodes one Event record (framing included) into buf; returns its size, or the size needed
 * when cap is too small. file_version non-NULL writes a file_version event instead of a scalar. */
ML_API size_t ml_tfevents_encode(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                                 const char *tag, float value);

/* ---- machine information of a run ----
 * Writes dir/machine.json atomically: metalearn version, host name, CPU model, thread count and
 * the SIMD level (given by the caller, which knows the kernels). */
ML_API ml_status ml_run_info_write(const char *dir, int64_t threads, const char *simd);

/* ---- HTML report ----
 * Renders the runs (a run directory needs at least config.ini or metrics.jsonl) into one HTML
 * document. *html is NUL-terminated; the caller frees it with free(). */
ML_API ml_status ml_report_render(const char *const *run_dirs, int64_t n_runs, char **html, size_t *len);
/* ml_report_render, written atomically to out_path. */
ML_API ml_status ml_report_write(const char *const *run_dirs, int64_t n_runs, const char *out_path);

#endif
