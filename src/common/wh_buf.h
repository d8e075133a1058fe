/*
 * wh_buf.h - a growable byte buffer.
 *
 * struct wh_buf is embedded by its users: wh_buf_init() zeroes it,
 * wh_buf_free() releases its memory (but not the struct itself).
 */
#ifndef WH_BUF_H
#define WH_BUF_H

#include <stddef.h>
#include <stdint.h>

struct wh_buf {
	uint8_t *data;
	size_t len; /* bytes in use */
	size_t cap; /* bytes allocated */
};

void wh_buf_init(struct wh_buf *b);
void wh_buf_free(struct wh_buf *b);
/* Ensure room for |extra| more bytes after len. 0 or -ENOMEM. */
int wh_buf_reserve(struct wh_buf *b, size_t extra);
/* Append |n| bytes. 0 or -ENOMEM. */
int wh_buf_append(struct wh_buf *b, const void *p, size_t n);
/* Drop the first |n| bytes (n <= len), moving the rest to the front. */
void wh_buf_consume(struct wh_buf *b, size_t n);
static inline void wh_buf_reset(struct wh_buf *b) { b->len = 0; }

/*
 * wh_zalloc - |n| elements of |size| bytes, zeroed by writing them now;
 * NULL when out of memory or n * size overflows.  For large tables that
 * are read before they are written (hash tables): calloc's fresh pages
 * map the shared zero page when first read, and the first write to each
 * after that is a copy-on-write fault that flushes every other CPU's TLB
 * (an IPI each, dear in a virtual machine).  Free with free().
 */
void *wh_zalloc(size_t n, size_t size);

#endif /* WH_BUF_H */
