/*
 * wh_chunk.h - content-defined chunking and file manifests.
 *
 * Files are cut where a rolling gear hash of the content hits a mask
 * (FastCDC-style, with normalized chunking: a stricter mask before the
 * average size, a looser one after), so an insertion near the start of a
 * file moves one or two boundaries instead of all that follow.  Sizes:
 * WH_CDC_MIN 256 KiB, WH_CDC_AVG 1 MiB (target), WH_CDC_MAX 4 MiB.  The gear
 * table is derived from a fixed seed, so boundaries are the same on every
 * machine and in every version of this format.
 *
 * A manifest lists a file's chunks in order: (offset, length, BLAKE3-256).
 */
#ifndef WH_CHUNK_H
#define WH_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_CDC_MIN (256 * 1024)
#define WH_CDC_AVG (1024 * 1024)
#define WH_CDC_MAX (4 * 1024 * 1024)
#define WH_HASH_LEN 32

/*
 * wh_cdc_cut - the length of the next chunk at the start of |data|.
 * |len| bytes are available; |eof| says no more follow.  Returns a length
 * in [1, len], or 0 when more data is needed to decide (only when !eof and
 * len < WH_CDC_MAX).  Returns 0 for len == 0.
 */
size_t wh_cdc_cut(const uint8_t *data, size_t len, bool eof);
/* wh_cdc_cut_ref - the same cut, one byte at a time: the plain statement
 * of the format, kept to check wh_cdc_cut against. */
size_t wh_cdc_cut_ref(const uint8_t *data, size_t len, bool eof);

struct wh_chunk {
	uint64_t offset;
	uint32_t length;
	uint8_t hash[WH_HASH_LEN];
};

struct wh_manifest {
	uint64_t size;          /* file size the chunks cover */
	struct wh_chunk *chunks;
	size_t n, cap;
};

void wh_manifest_init(struct wh_manifest *m);
void wh_manifest_free(struct wh_manifest *m);

/*
 * wh_manifest_build - read |fd| from offset 0 to its end, cut it into
 * chunks and hash each one.  Returns 0 or -errno (-ENOMEM, read errors).
 * |m| is reset first.
 */
int wh_manifest_build(int fd, struct wh_manifest *m);

/*
 * wh_chunk_fd - read |fd| from offset 0 up to its end or |limit| bytes,
 * whichever comes first, and call |cb| once per chunk, in order, as soon
 * as the chunk is cut and hashed.  |*size| gets the bytes covered.  A
 * negative return from |cb| stops the scan and is returned.  Returns 0 or
 * -errno.
 */
typedef int (*wh_chunk_cb)(void *ud, const struct wh_chunk *c);
int wh_chunk_fd(int fd, uint64_t limit, wh_chunk_cb cb, void *ud,
		uint64_t *size);

/*
 * wh_chunk_fd_hint - wh_chunk_fd, the same chunks, for a file whose earlier
 * version had manifest |old| (NULL or empty: wh_chunk_fd): the stretches
 * that kept their bytes are checked against the old chunks' hashes rather
 * than searched for cuts again.  |*kept| (if not NULL) gets the bytes
 * of the chunks so found.
 */
int wh_chunk_fd_hint(int fd, uint64_t limit, const struct wh_manifest *old,
		     wh_chunk_cb cb, void *ud, uint64_t *size, uint64_t *kept);

/* wh_blake3 - one-shot BLAKE3-256 of |len| bytes. */
void wh_blake3(const void *data, size_t len, uint8_t out[static WH_HASH_LEN]);

/* wh_blake3_fd - BLAKE3-256 of everything readable from |fd| (streamed
 * in large blocks).  Returns 0 or -errno. */
int wh_blake3_fd(int fd, uint8_t out[static WH_HASH_LEN]);

/* wh_hash_hex - 64 lowercase hex digits and a NUL into |out|. */
void wh_hash_hex(const uint8_t hash[static WH_HASH_LEN], char out[static 65]);

#endif /* WH_CHUNK_H */
