/*
 * wh_zstd.c - the bounded zstd codec and the "is it worth it" tests (see
 * wh_zstd.h).  One compression and one decompression context per thread,
 * made on first use and freed when the thread exits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "chunk/wh_zstd.h"
#include "common/wh_err.h"
#include "common/wh_time.h"
#include "proto/wh_proto.h"

#define WINDOW_LOG_MAX 23 /* 8 MiB: twice the largest chunk */

static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static pthread_key_t cctx_key, dctx_key;

static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }

static void make_keys(void)
{
	pthread_key_create(&cctx_key, free_cctx);
	pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *thread_cctx(void)
{
	ZSTD_CCtx *c;

	pthread_once(&keys_once, make_keys);
	c = pthread_getspecific(cctx_key);
	if (!c) {
		c = ZSTD_createCCtx();
		if (c && pthread_setspecific(cctx_key, c) != 0) {
			ZSTD_freeCCtx(c);
			c = NULL;
		}
	}
	return c;
}

static ZSTD_DCtx *thread_dctx(void)
{
	ZSTD_DCtx *d;

	pthread_once(&keys_once, make_keys);
	d = pthread_getspecific(dctx_key);
	if (!d) {
		d = ZSTD_createDCtx();
		if (d && (ZSTD_isError(ZSTD_DCtx_setParameter(
				  d, ZSTD_d_windowLogMax, WINDOW_LOG_MAX)) ||
			  pthread_setspecific(dctx_key, d) != 0)) {
			ZSTD_freeDCtx(d);
			d = NULL;
		}
	}
	return d;
}

ssize_t wh_zstd_compress(void *dst, size_t cap, const void *src, size_t len,
			 int level)
{
	ZSTD_CCtx *c = thread_cctx();
	size_t n;

	if (!c)
		return -ENOMEM;
	if (len < 2 || cap == 0)
		return 0;
	if (level > WH_ZSTD_MAX_LEVEL)
		level = WH_ZSTD_MAX_LEVEL;
	/* a frame of at most len - 1 bytes, or nothing: zstd stops with
	 * dstSize_tooSmall as soon as the output would not be smaller */
	if (cap > len - 1)
		cap = len - 1;
	ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
	n = ZSTD_compress2(c, dst, cap, src, len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return 0; /* too small for |cap|: not worth it */
	}
	return n < len ? (ssize_t)n : 0;
}

int wh_zstd_decompress(void *dst, size_t raw_len, const void *src,
		       size_t len)
{
	ZSTD_DCtx *d = thread_dctx();
	size_t n;

	if (!d)
		return -ENOMEM;
	if (len == 0)
		return WH_ERR_PROTO;
	/* flat output buffer of exactly raw_len: zstd never writes past
	 * it, and fails with dstSize_tooSmall if the frame wants more */
	n = ZSTD_decompressDCtx(d, dst, raw_len, src, len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		/* a failed frame may leave the context mid-frame */
		ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
		return WH_ERR_PROTO;
	}
	return n == raw_len ? 0 : WH_ERR_PROTO;
}

int wh_zstd_small_unpack(struct wh_buf *resp, struct wh_msg *m)
{
	const struct wh_msg_get_small_reply *z = &m->u.get_small_reply;
	struct wh_buf out;
	struct wh_msg raw;
	uint8_t *p;
	int rv;

	if (m->hdr.type != WH_MSG_GET_SMALL_REPLY || !z->zstd)
		return 0;
	if (z->raw_len > WH_MAX_REPLY_FRAME)
		return WH_ERR_PROTO;
	wh_buf_init(&out);
	rv = wh_buf_reserve(&out, WH_FRAME_HDR_LEN + (size_t)z->raw_len);
	if (rv < 0)
		return rv;
	/* the frame as it would have been sent raw */
	p = out.data;
	p[0] = (uint8_t)(z->raw_len >> 24);
	p[1] = (uint8_t)(z->raw_len >> 16);
	p[2] = (uint8_t)(z->raw_len >> 8);
	p[3] = (uint8_t)z->raw_len;
	p[4] = (uint8_t)(WH_MSG_GET_SMALL_REPLY >> 8);
	p[5] = (uint8_t)WH_MSG_GET_SMALL_REPLY;
	p[6] = p[7] = 0;
	p[8] = (uint8_t)(m->hdr.req_id >> 24);
	p[9] = (uint8_t)(m->hdr.req_id >> 16);
	p[10] = (uint8_t)(m->hdr.req_id >> 8);
	p[11] = (uint8_t)m->hdr.req_id;
	rv = wh_zstd_decompress(p + WH_FRAME_HDR_LEN, z->raw_len, z->data,
				z->data_len);
	if (rv == 0) {
		out.len = WH_FRAME_HDR_LEN + (size_t)z->raw_len;
		if (wh_msg_decode(out.data, out.len, WH_MAX_REPLY_FRAME,
				  &raw) < 0 ||
		    raw.hdr.type != WH_MSG_GET_SMALL_REPLY)
			rv = WH_ERR_PROTO;
	}
	if (rv < 0) {
		wh_buf_free(&out);
		return rv == -ENOMEM ? rv : WH_ERR_PROTO;
	}
	wh_buf_free(resp);
	*resp = out;
	*m = raw;
	return 0;
}

double wh_zstd_sample_ratio(const void *p, size_t len, uint64_t *ns)
{
	static const size_t S = WH_ZSTD_SAMPLE_LEN;
	uint8_t sample[3 * WH_ZSTD_SAMPLE_LEN];
	uint8_t out[3 * WH_ZSTD_SAMPLE_LEN];
	const uint8_t *b = p;
	uint64_t t0 = wh_now_ns();
	size_t n;
	ssize_t z;

	if (len <= sizeof(sample)) {
		memcpy(sample, b, len);
		n = len;
	} else {
		memcpy(sample, b, S);
		memcpy(sample + S, b + len / 2 - S / 2, S);
		memcpy(sample + 2 * S, b + len - S, S);
		n = sizeof(sample);
	}
	z = wh_zstd_compress(out, sizeof(out), sample, n, 1);
	if (ns)
		*ns = wh_now_ns() - t0;
	if (z <= 0 || n == 0)
		return 1.0;
	return (double)z / (double)n;
}

bool wh_zstd_skip_name(const char *path, size_t len)
{
	/* containers and codecs whose payload is already compressed */
	static const char *const exts[] = {
		"7z", "aac", "apk", "avi", "avif", "br", "bz2", "cab", "crx",
		"deb", "docx", "epub", "flac", "flv", "gif", "gz", "heic",
		"heif", "iso", "jar", "jpeg", "jpg", "jxl", "lz", "lz4",
		"lzma", "lzo", "m4a", "m4v", "mkv", "mov", "mp3", "mp4",
		"mpeg", "mpg", "odp", "ods", "odt", "ogg", "opus", "pptx",
		"png", "rar", "rpm", "squashfs", "sz", "tbz", "tbz2", "tgz",
		"txz", "war", "webm", "webp", "whl", "wmv", "xlsx", "xz",
		"zip", "zst", "zstd",
	};
	size_t dot = len;

	while (dot > 0 && path[dot - 1] != '.' && path[dot - 1] != '/')
		dot--;
	if (dot == 0 || path[dot - 1] != '.' || dot == len)
		return false;
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t el = strlen(exts[i]);

		if (el == len - dot && strncasecmp(path + dot, exts[i], el) == 0)
			return true;
	}
	return false;
}

bool wh_zstd_enabled(void)
{
	const char *env = getenv("WORMHOLE_ZSTD");

	return !env || (strcasecmp(env, "off") != 0 && strcmp(env, "0") != 0 &&
			strcasecmp(env, "no") != 0);
}
