/*
 * wh_zstd.h - zstd for chunk and read payloads: a bounded codec and the
 * cheap tests that decide whether compressing is worth trying.
 *
 * The codec never expands data: wh_zstd_compress() reports "not smaller"
 * instead of producing a payload that is not strictly smaller than its
 * input.  The decoder is given the exact uncompressed length the reply
 * declared and writes at most that many bytes: a frame that decodes to
 * more (a decompression bomb), to fewer, that is corrupt, that asks for a
 * window larger than a chunk or that has bytes after it is refused.
 * Contexts are per thread (created on first use, freed at thread exit),
 * so every function here is thread-safe and allocates only once per
 * thread.
 */
#ifndef WH_ZSTD_H
#define WH_ZSTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/wh_buf.h"

struct wh_msg;

#define WH_ZSTD_MIN_LEN 512     /* shorter payloads are always sent raw */
#define WH_ZSTD_SAMPLE_LEN 4096 /* bytes in each of the three samples */
#define WH_ZSTD_MAX_LEVEL 19

/*
 * wh_zstd_compress - compress |len| bytes of |src| at |level| (1..19, or a
 * negative "fast" level) into |dst| (|cap| bytes).  Returns the compressed
 * length, which is always < len, or 0 when the result would not be
 * smaller than |len| or does not fit in |cap| (send raw), or -ENOMEM.
 */
ssize_t wh_zstd_compress(void *dst, size_t cap, const void *src, size_t len,
			 int level);

/*
 * wh_zstd_decompress - decode the zstd frame |src| (|len| bytes) into
 * exactly |raw_len| bytes at |dst| (which has room for |raw_len|, never
 * more is written).  Returns 0, WH_ERR_PROTO (corrupt input, a frame that
 * decodes to more or fewer than |raw_len| bytes, trailing bytes, a window
 * over WH_MAX_CHUNK) or -ENOMEM.
 */
int wh_zstd_decompress(void *dst, size_t raw_len, const void *src,
		       size_t len);

/*
 * wh_zstd_small_unpack - if |m| (decoded from the frame in |resp|) is a
 * GET_SMALL_REPLY in its zstd form (WH_CAP_ZSMALL), decode its payload
 * into exactly its declared raw_len bytes (wh_zstd_decompress' bounds),
 * replace |resp| by the raw frame and |m| by the decoding of it, which
 * must be a well-formed GET_SMALL_REPLY.  Returns 0 (also when there was
 * nothing to decode), WH_ERR_PROTO (a frame that decodes to anything
 * else) or -ENOMEM; on failure |resp| and |m| are left as they were.
 */
int wh_zstd_small_unpack(struct wh_buf *resp, struct wh_msg *m);

/*
 * wh_zstd_sample_ratio - an estimate of how well |len| bytes of |p|
 * compress: compressed size / size of three samples (start, middle, end,
 * WH_ZSTD_SAMPLE_LEN each) at the fastest level, or of all of |p| when it
 * is shorter than the samples.  1.0 means incompressible.  |*ns| (may be
 * NULL) gets the time it took.
 */
double wh_zstd_sample_ratio(const void *p, size_t len, uint64_t *ns);

/*
 * wh_zstd_skip_name - true if the file name |path| (|len| bytes) ends in
 * an extension of an already compressed format (mp4, mkv, zip, gz, zst,
 * jpg, png, ...), case-insensitively: compressing those wastes CPU.
 */
bool wh_zstd_skip_name(const char *path, size_t len);

/*
 * wh_zstd_enabled - false when $WORMHOLE_ZSTD is "off", "0" or "no": then
 * a client does not ask for compressed replies and a host offers none.
 */
bool wh_zstd_enabled(void);

#endif /* WH_ZSTD_H */
