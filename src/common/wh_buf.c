/* wh_buf.c - growable byte buffer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_buf.h"

void wh_buf_init(struct wh_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void wh_buf_free(struct wh_buf *b)
{
	free(b->data);
	wh_buf_init(b);
}

int wh_buf_reserve(struct wh_buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *p;

	if (extra > SIZE_MAX - b->len)
		return -ENOMEM;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	p = realloc(b->data, ncap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int wh_buf_append(struct wh_buf *b, const void *p, size_t n)
{
	int rv;

	if (n == 0)
		return 0;
	rv = wh_buf_reserve(b, n);
	if (rv < 0)
		return rv;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void wh_buf_consume(struct wh_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void *wh_zalloc(size_t n, size_t size)
{
	size_t bytes;
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	bytes = n * size;
	p = malloc(bytes ? bytes : 1);
	/* explicit_bzero: the compiler would make malloc + memset calloc */
	if (p)
		explicit_bzero(p, bytes);
	return p;
}
