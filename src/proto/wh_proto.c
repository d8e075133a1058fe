/*
 * wh_proto.c - encode and decode protocol v1 frames (see wh_proto.h and
 * docs/PROTOCOL.md).  Pure functions over caller buffers: no I/O, no
 * allocation.  Decoding goes through a bounds-checked cursor, so no input
 * can make a decoder read outside [buf, buf + len).
 */
#include <errno.h>
#include <string.h>

#include "common/wh_err.h"
#include "proto/wh_proto.h"

/* ------------------------------------------------------------ cursors */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t rd_be(struct rd *r, size_t n)
{
	uint64_t v = 0;

	if (r->bad || r->left < n) {
		r->bad = true;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | r->p[i];
	r->p += n;
	r->left -= n;
	return v;
}

static uint8_t rd_u8(struct rd *r) { return (uint8_t)rd_be(r, 1); }
static uint16_t rd_u16(struct rd *r) { return (uint16_t)rd_be(r, 2); }
static uint32_t rd_u32(struct rd *r) { return (uint32_t)rd_be(r, 4); }
static uint64_t rd_u64(struct rd *r) { return rd_be(r, 8); }

static void rd_bytes(struct rd *r, uint8_t *out, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return;
	}
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
}

static void rd_str(struct rd *r, struct wh_str *s)
{
	uint16_t n = rd_u16(r);

	s->p = NULL;
	s->len = 0;
	if (r->bad || r->left < n) {
		r->bad = true;
		return;
	}
	s->p = (const char *)r->p;
	s->len = n;
	r->p += n;
	r->left -= n;
}

static bool rd_bool(struct rd *r)
{
	uint8_t v = rd_u8(r);

	if (v > 1)
		r->bad = true;
	return v == 1;
}

static void rd_ts(struct rd *r, struct wh_timespec *t)
{
	t->sec = (int64_t)rd_u64(r);
	t->nsec = rd_u32(r);
	if (t->nsec >= 1000000000U)
		r->bad = true;
}

struct wr {
	uint8_t *p;
	size_t left;
	bool bad;
};

static void wr_be(struct wr *w, uint64_t v, size_t n)
{
	if (w->bad || w->left < n) {
		w->bad = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		w->p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	w->p += n;
	w->left -= n;
}

static void wr_u8(struct wr *w, uint8_t v) { wr_be(w, v, 1); }
static void wr_u16(struct wr *w, uint16_t v) { wr_be(w, v, 2); }
static void wr_u32(struct wr *w, uint32_t v) { wr_be(w, v, 4); }
static void wr_u64(struct wr *w, uint64_t v) { wr_be(w, v, 8); }

static void wr_bytes(struct wr *w, const void *p, size_t n)
{
	if (w->bad || w->left < n) {
		w->bad = true;
		return;
	}
	if (n)
		memcpy(w->p, p, n);
	w->p += n;
	w->left -= n;
}

static void wr_str(struct wr *w, const char *p, size_t n)
{
	if (n > UINT16_MAX) {
		w->bad = true;
		return;
	}
	wr_u16(w, (uint16_t)n);
	wr_bytes(w, p, n);
}

static void wr_ts(struct wr *w, const struct wh_timespec *t)
{
	wr_u64(w, (uint64_t)t->sec);
	wr_u32(w, t->nsec);
}

/* ------------------------------------------------------------ paths */

bool wh_name_valid(const char *n, size_t len)
{
	if (!n || len == 0 || len > WH_MAX_NAME)
		return false;
	if (len == 1 && n[0] == '.')
		return false;
	if (len == 2 && n[0] == '.' && n[1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (n[i] == '/' || n[i] == '\0')
			return false;
	return true;
}

bool wh_path_valid(const char *p, size_t len)
{
	size_t start = 0;

	if (len == 0)
		return true;
	if (!p || len > WH_MAX_PATH)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || p[i] == '/') {
			if (!wh_name_valid(p + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* ------------------------------------------------------------ attrs */

static void rd_attr(struct rd *r, struct wh_attr *a)
{
	a->ino = rd_u64(r);
	a->mode = rd_u32(r);
	a->nlink = rd_u32(r);
	a->uid = rd_u32(r);
	a->gid = rd_u32(r);
	a->size = rd_u64(r);
	a->blocks = rd_u64(r);
	a->blksize = rd_u32(r);
	rd_ts(r, &a->atime);
	rd_ts(r, &a->mtime);
	rd_ts(r, &a->ctime);
}

static void wr_attr(struct wr *w, const struct wh_attr *a)
{
	wr_u64(w, a->ino);
	wr_u32(w, a->mode);
	wr_u32(w, a->nlink);
	wr_u32(w, a->uid);
	wr_u32(w, a->gid);
	wr_u64(w, a->size);
	wr_u64(w, a->blocks);
	wr_u32(w, a->blksize);
	wr_ts(w, &a->atime);
	wr_ts(w, &a->mtime);
	wr_ts(w, &a->ctime);
}

static void rd_version(struct rd *r, struct wh_version *v)
{
	v->size = rd_u64(r);
	rd_ts(r, &v->mtime);
	rd_ts(r, &v->ctime);
}

static void wr_version(struct wr *w, const struct wh_version *v)
{
	wr_u64(w, v->size);
	wr_ts(w, &v->mtime);
	wr_ts(w, &v->ctime);
}

/* ------------------------------------------------------------ frames */

static bool type_known(uint16_t t)
{
	return (t >= WH_MSG_HELLO && t <= WH_MSG_INVAL) ||
	       (t >= WH_MSG_ERROR && t <= WH_MSG_MANIFEST_PART) ||
	       t == WH_MSG_GET_SMALL || t == WH_MSG_GET_SMALL_REPLY;
}

const char *wh_msg_type_name(uint16_t type)
{
	switch (type) {
	case WH_MSG_HELLO: return "HELLO";
	case WH_MSG_HELLO_ACK: return "HELLO_ACK";
	case WH_MSG_AUTH: return "AUTH";
	case WH_MSG_AUTH_OK: return "AUTH_OK";
	case WH_MSG_INVAL: return "INVAL";
	case WH_MSG_ERROR: return "ERROR";
	case WH_MSG_LOOKUP: return "LOOKUP";
	case WH_MSG_LOOKUP_REPLY: return "LOOKUP_REPLY";
	case WH_MSG_GETATTR: return "GETATTR";
	case WH_MSG_GETATTR_REPLY: return "GETATTR_REPLY";
	case WH_MSG_READDIR: return "READDIR";
	case WH_MSG_READDIR_REPLY: return "READDIR_REPLY";
	case WH_MSG_READ: return "READ";
	case WH_MSG_READ_REPLY: return "READ_REPLY";
	case WH_MSG_READLINK: return "READLINK";
	case WH_MSG_READLINK_REPLY: return "READLINK_REPLY";
	case WH_MSG_STATFS: return "STATFS";
	case WH_MSG_STATFS_REPLY: return "STATFS_REPLY";
	case WH_MSG_MANIFEST: return "MANIFEST";
	case WH_MSG_MANIFEST_REPLY: return "MANIFEST_REPLY";
	case WH_MSG_CHUNK: return "CHUNK";
	case WH_MSG_CHUNK_REPLY: return "CHUNK_REPLY";
	case WH_MSG_MANIFEST_STREAM: return "MANIFEST_STREAM";
	case WH_MSG_MANIFEST_PART: return "MANIFEST_PART";
	case WH_MSG_GET_SMALL: return "GET_SMALL";
	case WH_MSG_GET_SMALL_REPLY: return "GET_SMALL_REPLY";
	}
	return "UNKNOWN";
}

int wh_frame_hdr_decode(const uint8_t *buf, size_t len, size_t max_payload,
			struct wh_frame_hdr *hdr)
{
	struct rd r = { buf, len, false };

	if (len < WH_FRAME_HDR_LEN)
		return WH_ERR_SHORT;
	hdr->length = rd_u32(&r);
	hdr->type = rd_u16(&r);
	hdr->flags = rd_u16(&r);
	hdr->req_id = rd_u32(&r);
	if (hdr->length > max_payload)
		return WH_ERR_TOOBIG;
	if (!type_known(hdr->type))
		return WH_ERR_PROTO;
	return 0;
}

int wh_frame_gather(struct wh_buf *rx, const uint8_t *data, size_t len,
		    bool fin, size_t max_payload, struct wh_frame_hdr *hdr,
		    const char **why)
{
	size_t most = WH_FRAME_HDR_LEN + max_payload, flen;
	int rv;

	memset(hdr, 0, sizeof(*hdr));
	if (rx->len > most || len > most - rx->len) {
		*why = "frame too large";
		return WH_ERR_TOOBIG;
	}
	if (rx->len < WH_FRAME_HDR_LEN && rx->len + len >= WH_FRAME_HDR_LEN) {
		size_t h = WH_FRAME_HDR_LEN - rx->len;

		if (wh_buf_append(rx, data, h) < 0)
			return -ENOMEM;
		data += h;
		len -= h;
		if (wh_frame_hdr_decode(rx->data, rx->len, max_payload,
					hdr) == 0 &&
		    wh_buf_reserve(rx, hdr->length) < 0)
			return -ENOMEM;
	}
	if (len > 0 && wh_buf_append(rx, data, len) < 0)
		return -ENOMEM;
	rv = wh_frame_hdr_decode(rx->data, rx->len, max_payload, hdr);
	if (rv == WH_ERR_SHORT) {
		memset(hdr, 0, sizeof(*hdr));
		if (!fin)
			return 0;
		*why = "truncated frame";
		return WH_ERR_PROTO;
	}
	if (rv == WH_ERR_TOOBIG) {
		*why = "frame too large";
		return WH_ERR_TOOBIG;
	}
	if (rv < 0) {
		hdr->req_id = 0;
		*why = "malformed frame header";
		return WH_ERR_PROTO;
	}
	flen = WH_FRAME_HDR_LEN + (size_t)hdr->length;
	if (rx->len > flen) {
		*why = "trailing bytes after the frame";
		return WH_ERR_PROTO;
	}
	if (rx->len < flen) {
		if (!fin)
			return 0;
		*why = "truncated frame";
		return WH_ERR_PROTO;
	}
	return 1;
}

/* decode_dirents - check that exactly |count| entries fill |r|. */
static int walk_dirents(const struct wh_msg_readdir_reply *rr)
{
	struct wh_dirent ent;
	size_t pos = 0;
	uint32_t n = 0;
	int rv;

	while ((rv = wh_dirent_next(rr, &pos, &ent)) == 1)
		n++;
	if (rv < 0 || n != rr->count)
		return WH_ERR_PROTO;
	return 0;
}

/* rd_small_req - one GET_SMALL entry (r->bad if it is malformed; an
 * unsafe path sets |*bad_path|, the entry still consumed) */
static void rd_small_req(struct rd *r, struct wh_small_req *e,
			 bool *bad_path)
{
	rd_str(r, &e->path);
	e->have = rd_bool(r);
	if (e->have)
		rd_bytes(r, e->hash, 32);
	if (!r->bad && !wh_path_valid(e->path.p, e->path.len))
		*bad_path = true;
}

static void rd_small_ent(struct rd *r, struct wh_small_ent *e)
{
	memset(e, 0, sizeof(*e));
	e->status = rd_u8(r);
	switch (e->status) {
	case WH_SMALL_DATA:
	case WH_SMALL_SAME:
		rd_version(r, &e->version);
		rd_bytes(r, e->hash, 32);
		if (e->status == WH_SMALL_SAME)
			break;
		{
			uint32_t n = rd_u32(r);

			if (r->bad || n != e->version.size ||
			    n > WH_MAX_SMALL_FILE || r->left < n) {
				r->bad = true;
				break;
			}
			e->data = r->p;
			r->p += n;
			r->left -= n;
		}
		break;
	case WH_SMALL_ERROR:
		e->err = (int32_t)rd_u32(r);
		if (e->err <= 0 || e->err >= 4096)
			r->bad = true;
		break;
	default:
		r->bad = true;
	}
}

/* walk_small - check that exactly |count| well-formed entries fill
 * |p|..|p|+|len|: WH_ERR_PROTO if not, WH_ERR_PATH if a request entry's
 * path is unsafe */
static int walk_small(bool request, uint16_t count, const uint8_t *p,
		      size_t len)
{
	struct rd r = { p, len, false };
	bool bad_path = false;

	for (uint16_t i = 0; i < count && !r.bad; i++) {
		if (request) {
			struct wh_small_req e;

			rd_small_req(&r, &e, &bad_path);
		} else {
			struct wh_small_ent e;

			rd_small_ent(&r, &e);
		}
	}
	if (r.bad || r.left != 0)
		return WH_ERR_PROTO;
	return bad_path ? WH_ERR_PATH : 0;
}

int wh_msg_decode(const uint8_t *buf, size_t len, size_t max_payload,
		  struct wh_msg *msg)
{
	struct rd r;
	int rv;

	memset(msg, 0, sizeof(*msg));
	rv = wh_frame_hdr_decode(buf, len, max_payload, &msg->hdr);
	if (rv < 0)
		return rv;
	if (len < WH_FRAME_HDR_LEN + (size_t)msg->hdr.length)
		return WH_ERR_SHORT;
	if (len > WH_FRAME_HDR_LEN + (size_t)msg->hdr.length)
		return WH_ERR_PROTO;
	r.p = buf + WH_FRAME_HDR_LEN;
	r.left = msg->hdr.length;
	r.bad = false;

	switch (msg->hdr.type) {
	case WH_MSG_HELLO:
		msg->u.hello.min_version = rd_u16(&r);
		msg->u.hello.max_version = rd_u16(&r);
		msg->u.hello.caps = rd_u64(&r);
		rd_bytes(&r, msg->u.hello.pake_msg, WH_PAKE_MSG_LEN);
		if (!r.bad && msg->u.hello.min_version > msg->u.hello.max_version)
			return WH_ERR_PROTO;
		break;
	case WH_MSG_HELLO_ACK:
		msg->u.hello_ack.version = rd_u16(&r);
		msg->u.hello_ack.caps = rd_u64(&r);
		rd_bytes(&r, msg->u.hello_ack.pake_msg, WH_PAKE_MSG_LEN);
		rd_bytes(&r, msg->u.hello_ack.confirm, WH_CONFIRM_LEN);
		break;
	case WH_MSG_AUTH:
		rd_bytes(&r, msg->u.auth.confirm, WH_CONFIRM_LEN);
		break;
	case WH_MSG_AUTH_OK:
	case WH_MSG_STATFS:
		break;
	case WH_MSG_INVAL:
		rd_str(&r, &msg->u.inval.dir);
		rd_str(&r, &msg->u.inval.name);
		if (r.bad)
			break;
		if (!wh_path_valid(msg->u.inval.dir.p, msg->u.inval.dir.len))
			return WH_ERR_PATH;
		if (msg->u.inval.name.len &&
		    !wh_name_valid(msg->u.inval.name.p, msg->u.inval.name.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_ERROR:
		msg->u.error.err = (int32_t)rd_u32(&r);
		rd_str(&r, &msg->u.error.message);
		if (r.bad)
			break;
		if (msg->u.error.err <= 0 || msg->u.error.err >= 4096 ||
		    msg->u.error.message.len > WH_MAX_ERRMSG)
			return WH_ERR_PROTO;
		break;
	case WH_MSG_LOOKUP:
		rd_str(&r, &msg->u.lookup.dir);
		rd_str(&r, &msg->u.lookup.name);
		if (r.bad)
			break;
		if (!wh_path_valid(msg->u.lookup.dir.p, msg->u.lookup.dir.len) ||
		    !wh_name_valid(msg->u.lookup.name.p,
				   msg->u.lookup.name.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_GETATTR:
	case WH_MSG_READLINK:
		rd_str(&r, &msg->u.path.path);
		if (!r.bad &&
		    !wh_path_valid(msg->u.path.path.p, msg->u.path.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_READDIR:
		rd_str(&r, &msg->u.readdir.path);
		msg->u.readdir.cookie = rd_u64(&r);
		msg->u.readdir.max_entries = rd_u32(&r);
		if (r.bad)
			break;
		if (msg->u.readdir.max_entries == 0 ||
		    msg->u.readdir.max_entries > WH_MAX_READDIR_ENTRIES)
			return WH_ERR_PROTO;
		if (!wh_path_valid(msg->u.readdir.path.p,
				   msg->u.readdir.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_READ:
		rd_str(&r, &msg->u.read.path);
		msg->u.read.offset = rd_u64(&r);
		msg->u.read.length = rd_u32(&r);
		if (r.bad)
			break;
		if (msg->u.read.length > WH_MAX_READ)
			return WH_ERR_TOOBIG;
		if (!wh_path_valid(msg->u.read.path.p, msg->u.read.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_LOOKUP_REPLY:
	case WH_MSG_GETATTR_REPLY:
		rd_attr(&r, &msg->u.attr.attr);
		break;
	case WH_MSG_READDIR_REPLY:
		msg->u.readdir_reply.next_cookie = rd_u64(&r);
		msg->u.readdir_reply.eof = rd_bool(&r);
		msg->u.readdir_reply.count = rd_u32(&r);
		if (r.bad)
			break;
		if (msg->u.readdir_reply.count > WH_MAX_READDIR_ENTRIES)
			return WH_ERR_PROTO;
		msg->u.readdir_reply.entries = r.p;
		msg->u.readdir_reply.entries_len = r.left;
		r.p += r.left;
		r.left = 0;
		if (walk_dirents(&msg->u.readdir_reply) < 0)
			return WH_ERR_PROTO;
		break;
	case WH_MSG_READ_REPLY:
		rd_version(&r, &msg->u.read_reply.version);
		msg->u.read_reply.eof = rd_bool(&r);
		if (msg->hdr.flags & WH_FLAG_ZSTD) {
			msg->u.read_reply.zstd = true;
			msg->u.read_reply.raw_len = rd_u32(&r);
		}
		if (r.bad)
			break;
		if (r.left > WH_MAX_READ)
			return WH_ERR_TOOBIG;
		if (!msg->u.read_reply.zstd)
			msg->u.read_reply.raw_len = (uint32_t)r.left;
		else if (msg->u.read_reply.raw_len > WH_MAX_READ)
			return WH_ERR_TOOBIG;
		else if (r.left == 0 || r.left >= msg->u.read_reply.raw_len)
			return WH_ERR_PROTO; /* empty, or not smaller */
		msg->u.read_reply.data = r.p;
		msg->u.read_reply.data_len = (uint32_t)r.left;
		r.p += r.left;
		r.left = 0;
		break;
	case WH_MSG_READLINK_REPLY:
		rd_str(&r, &msg->u.readlink_reply.target);
		if (r.bad)
			break;
		if (msg->u.readlink_reply.target.len == 0 ||
		    msg->u.readlink_reply.target.len > WH_MAX_PATH ||
		    memchr(msg->u.readlink_reply.target.p, '\0',
			   msg->u.readlink_reply.target.len))
			return WH_ERR_PROTO;
		break;
	case WH_MSG_MANIFEST:
		rd_str(&r, &msg->u.manifest.path);
		msg->u.manifest.start = rd_u32(&r);
		if (!r.bad && !wh_path_valid(msg->u.manifest.path.p,
					     msg->u.manifest.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_MANIFEST_REPLY: {
		struct wh_msg_manifest_reply *mr = &msg->u.manifest_reply;

		rd_version(&r, &mr->version);
		mr->total = rd_u32(&r);
		mr->start = rd_u32(&r);
		mr->count = rd_u32(&r);
		if (r.bad)
			break;
		if (mr->count > WH_MAX_MANIFEST_ENTRIES ||
		    (uint64_t)mr->start + mr->count > mr->total ||
		    r.left != (size_t)mr->count * WH_MANIFEST_ENTRY_LEN)
			return WH_ERR_PROTO;
		mr->entries = r.p;
		r.p += r.left;
		r.left = 0;
		break;
	}
	case WH_MSG_MANIFEST_STREAM:
		rd_str(&r, &msg->u.manifest_stream.path);
		msg->u.manifest_stream.start = rd_u32(&r);
		msg->u.manifest_stream.wait_ms = rd_u32(&r);
		if (!r.bad && !wh_path_valid(msg->u.manifest_stream.path.p,
					     msg->u.manifest_stream.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_MANIFEST_PART: {
		struct wh_msg_manifest_part *mp = &msg->u.manifest_part;
		rd_version(&r, &mp->version);
		mp->done = rd_bool(&r);
		mp->known = rd_u32(&r);
		mp->start = rd_u32(&r);
		mp->count = rd_u32(&r);
		if (r.bad)
			break;
		if (mp->count > WH_MAX_MANIFEST_ENTRIES ||
		    (uint64_t)mp->start + mp->count > mp->known ||
		    r.left != (size_t)mp->count * WH_MANIFEST_ENTRY_LEN)
			return WH_ERR_PROTO;
		mp->entries = r.p;
		r.p += r.left;
		r.left = 0;
		break;
	}
	case WH_MSG_CHUNK:
		rd_str(&r, &msg->u.chunk.path);
		rd_version(&r, &msg->u.chunk.version);
		msg->u.chunk.offset = rd_u64(&r);
		msg->u.chunk.length = rd_u32(&r);
		rd_bytes(&r, msg->u.chunk.hash, 32);
		if (r.bad)
			break;
		if (msg->u.chunk.length == 0 ||
		    msg->u.chunk.length > WH_MAX_CHUNK)
			return WH_ERR_TOOBIG;
		if (!wh_path_valid(msg->u.chunk.path.p, msg->u.chunk.path.len))
			return WH_ERR_PATH;
		break;
	case WH_MSG_CHUNK_REPLY:
		rd_bytes(&r, msg->u.chunk_reply.hash, 32);
		if (msg->hdr.flags & WH_FLAG_ZSTD) {
			msg->u.chunk_reply.zstd = true;
			msg->u.chunk_reply.raw_len = rd_u32(&r);
		}
		if (r.bad)
			break;
		if (r.left > WH_MAX_CHUNK)
			return WH_ERR_TOOBIG;
		if (!msg->u.chunk_reply.zstd)
			msg->u.chunk_reply.raw_len = (uint32_t)r.left;
		else if (msg->u.chunk_reply.raw_len > WH_MAX_CHUNK)
			return WH_ERR_TOOBIG;
		else if (r.left == 0 || r.left >= msg->u.chunk_reply.raw_len)
			return WH_ERR_PROTO; /* empty, or not smaller */
		msg->u.chunk_reply.data = r.p;
		msg->u.chunk_reply.data_len = (uint32_t)r.left;
		r.p += r.left;
		r.left = 0;
		break;
	case WH_MSG_GET_SMALL:
	case WH_MSG_GET_SMALL_REPLY: {
		bool req = msg->hdr.type == WH_MSG_GET_SMALL;
		uint16_t *count = req ? &msg->u.get_small.count
				      : &msg->u.get_small_reply.count;
		const uint8_t **ents = req ? &msg->u.get_small.entries
					   : &msg->u.get_small_reply.entries;
		size_t *elen = req ? &msg->u.get_small.entries_len
				   : &msg->u.get_small_reply.entries_len;

		if (!req && (msg->hdr.flags & WH_FLAG_ZSTD)) {
			struct wh_msg_get_small_reply *z =
				&msg->u.get_small_reply;

			/* the payload, count and entries, as one zstd
			 * frame: checked once the caller decoded it */
			z->zstd = true;
			z->raw_len = rd_u32(&r);
			if (r.bad)
				break;
			if (z->raw_len > WH_MAX_REPLY_FRAME)
				return WH_ERR_TOOBIG;
			if (z->raw_len < 2 || r.left == 0 ||
			    r.left >= z->raw_len)
				return WH_ERR_PROTO; /* empty, not smaller */
			z->data = r.p;
			z->data_len = (uint32_t)r.left;
			r.p += r.left;
			r.left = 0;
			break;
		}
		*count = rd_u16(&r);
		if (r.bad)
			break;
		if (*count == 0 || *count > WH_MAX_SMALL_FILES)
			return WH_ERR_PROTO;
		*ents = r.p;
		*elen = r.left;
		r.p += r.left;
		r.left = 0;
		rv = walk_small(req, *count, *ents, *elen);
		if (rv < 0)
			return rv;
		break;
	}
	case WH_MSG_STATFS_REPLY: {
		struct wh_msg_statfs_reply *s = &msg->u.statfs_reply;

		s->bsize = rd_u32(&r);
		s->frsize = rd_u32(&r);
		s->namemax = rd_u32(&r);
		s->blocks = rd_u64(&r);
		s->bfree = rd_u64(&r);
		s->bavail = rd_u64(&r);
		s->files = rd_u64(&r);
		s->ffree = rd_u64(&r);
		break;
	}
	default:
		return WH_ERR_PROTO;
	}
	if (r.bad)
		return WH_ERR_PROTO;
	if (r.left != 0)
		return WH_ERR_PROTO;
	return 0;
}

ssize_t wh_msg_encode(const struct wh_msg *msg, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, false };
	const struct wh_str *a, *b;
	uint16_t flags = 0; /* WH_FLAG_ZSTD for a zstd reply */
	size_t payload;

	if (!type_known(msg->hdr.type))
		return WH_ERR_PROTO;
	/* header now, length patched at the end */
	wr_u32(&w, 0);
	wr_u16(&w, msg->hdr.type);
	wr_u16(&w, 0);
	wr_u32(&w, msg->hdr.req_id);

	switch (msg->hdr.type) {
	case WH_MSG_HELLO:
		wr_u16(&w, msg->u.hello.min_version);
		wr_u16(&w, msg->u.hello.max_version);
		wr_u64(&w, msg->u.hello.caps);
		wr_bytes(&w, msg->u.hello.pake_msg, WH_PAKE_MSG_LEN);
		break;
	case WH_MSG_HELLO_ACK:
		wr_u16(&w, msg->u.hello_ack.version);
		wr_u64(&w, msg->u.hello_ack.caps);
		wr_bytes(&w, msg->u.hello_ack.pake_msg, WH_PAKE_MSG_LEN);
		wr_bytes(&w, msg->u.hello_ack.confirm, WH_CONFIRM_LEN);
		break;
	case WH_MSG_AUTH:
		wr_bytes(&w, msg->u.auth.confirm, WH_CONFIRM_LEN);
		break;
	case WH_MSG_AUTH_OK:
	case WH_MSG_STATFS:
		break;
	case WH_MSG_INVAL:
		a = &msg->u.inval.dir;
		b = &msg->u.inval.name;
		if (a->len > WH_MAX_PATH || b->len > WH_MAX_NAME)
			return WH_ERR_TOOBIG;
		wr_str(&w, a->p, a->len);
		wr_str(&w, b->p, b->len);
		break;
	case WH_MSG_ERROR:
		if (msg->u.error.err <= 0 || msg->u.error.err >= 4096)
			return WH_ERR_PROTO;
		wr_u32(&w, (uint32_t)msg->u.error.err);
		wr_str(&w, msg->u.error.message.p,
		       msg->u.error.message.len > WH_MAX_ERRMSG
			       ? WH_MAX_ERRMSG
			       : msg->u.error.message.len);
		break;
	case WH_MSG_LOOKUP:
		a = &msg->u.lookup.dir;
		b = &msg->u.lookup.name;
		if (a->len > WH_MAX_PATH || b->len > WH_MAX_NAME)
			return WH_ERR_TOOBIG;
		wr_str(&w, a->p, a->len);
		wr_str(&w, b->p, b->len);
		break;
	case WH_MSG_GETATTR:
	case WH_MSG_READLINK:
		if (msg->u.path.path.len > WH_MAX_PATH)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.path.path.p, msg->u.path.path.len);
		break;
	case WH_MSG_READDIR:
		if (msg->u.readdir.path.len > WH_MAX_PATH)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.readdir.path.p, msg->u.readdir.path.len);
		wr_u64(&w, msg->u.readdir.cookie);
		wr_u32(&w, msg->u.readdir.max_entries);
		break;
	case WH_MSG_READ:
		if (msg->u.read.path.len > WH_MAX_PATH ||
		    msg->u.read.length > WH_MAX_READ)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.read.path.p, msg->u.read.path.len);
		wr_u64(&w, msg->u.read.offset);
		wr_u32(&w, msg->u.read.length);
		break;
	case WH_MSG_LOOKUP_REPLY:
	case WH_MSG_GETATTR_REPLY:
		wr_attr(&w, &msg->u.attr.attr);
		break;
	case WH_MSG_READDIR_REPLY:
		if (msg->u.readdir_reply.count > WH_MAX_READDIR_ENTRIES)
			return WH_ERR_TOOBIG;
		wr_u64(&w, msg->u.readdir_reply.next_cookie);
		wr_u8(&w, msg->u.readdir_reply.eof ? 1 : 0);
		wr_u32(&w, msg->u.readdir_reply.count);
		wr_bytes(&w, msg->u.readdir_reply.entries,
			 msg->u.readdir_reply.entries_len);
		break;
	case WH_MSG_READ_REPLY:
		if (msg->u.read_reply.data_len > WH_MAX_READ)
			return WH_ERR_TOOBIG;
		wr_version(&w, &msg->u.read_reply.version);
		wr_u8(&w, msg->u.read_reply.eof ? 1 : 0);
		if (msg->u.read_reply.zstd) {
			if (msg->u.read_reply.raw_len > WH_MAX_READ ||
			    msg->u.read_reply.data_len == 0 ||
			    msg->u.read_reply.data_len >=
				    msg->u.read_reply.raw_len)
				return WH_ERR_TOOBIG;
			flags = WH_FLAG_ZSTD;
			wr_u32(&w, msg->u.read_reply.raw_len);
		}
		wr_bytes(&w, msg->u.read_reply.data,
			 msg->u.read_reply.data_len);
		break;
	case WH_MSG_READLINK_REPLY:
		if (msg->u.readlink_reply.target.len > WH_MAX_PATH)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.readlink_reply.target.p,
		       msg->u.readlink_reply.target.len);
		break;
	case WH_MSG_MANIFEST:
		if (msg->u.manifest.path.len > WH_MAX_PATH)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.manifest.path.p, msg->u.manifest.path.len);
		wr_u32(&w, msg->u.manifest.start);
		break;
	case WH_MSG_MANIFEST_REPLY: {
		const struct wh_msg_manifest_reply *mr = &msg->u.manifest_reply;

		if (mr->count > WH_MAX_MANIFEST_ENTRIES)
			return WH_ERR_TOOBIG;
		wr_version(&w, &mr->version);
		wr_u32(&w, mr->total);
		wr_u32(&w, mr->start);
		wr_u32(&w, mr->count);
		wr_bytes(&w, mr->entries,
			 (size_t)mr->count * WH_MANIFEST_ENTRY_LEN);
		break;
	}
	case WH_MSG_MANIFEST_STREAM:
		if (msg->u.manifest_stream.path.len > WH_MAX_PATH)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.manifest_stream.path.p,
		       msg->u.manifest_stream.path.len);
		wr_u32(&w, msg->u.manifest_stream.start);
		wr_u32(&w, msg->u.manifest_stream.wait_ms);
		break;
	case WH_MSG_MANIFEST_PART: {
		const struct wh_msg_manifest_part *mp = &msg->u.manifest_part;

		if (mp->count > WH_MAX_MANIFEST_ENTRIES)
			return WH_ERR_TOOBIG;
		wr_version(&w, &mp->version);
		wr_u8(&w, mp->done ? 1 : 0);
		wr_u32(&w, mp->known);
		wr_u32(&w, mp->start);
		wr_u32(&w, mp->count);
		wr_bytes(&w, mp->entries,
			 (size_t)mp->count * WH_MANIFEST_ENTRY_LEN);
		break;
	}
	case WH_MSG_CHUNK:
		if (msg->u.chunk.path.len > WH_MAX_PATH ||
		    msg->u.chunk.length > WH_MAX_CHUNK)
			return WH_ERR_TOOBIG;
		wr_str(&w, msg->u.chunk.path.p, msg->u.chunk.path.len);
		wr_version(&w, &msg->u.chunk.version);
		wr_u64(&w, msg->u.chunk.offset);
		wr_u32(&w, msg->u.chunk.length);
		wr_bytes(&w, msg->u.chunk.hash, 32);
		break;
	case WH_MSG_CHUNK_REPLY:
		if (msg->u.chunk_reply.data_len > WH_MAX_CHUNK)
			return WH_ERR_TOOBIG;
		wr_bytes(&w, msg->u.chunk_reply.hash, 32);
		if (msg->u.chunk_reply.zstd) {
			if (msg->u.chunk_reply.raw_len > WH_MAX_CHUNK ||
			    msg->u.chunk_reply.data_len == 0 ||
			    msg->u.chunk_reply.data_len >=
				    msg->u.chunk_reply.raw_len)
				return WH_ERR_TOOBIG;
			flags = WH_FLAG_ZSTD;
			wr_u32(&w, msg->u.chunk_reply.raw_len);
		}
		wr_bytes(&w, msg->u.chunk_reply.data,
			 msg->u.chunk_reply.data_len);
		break;
	case WH_MSG_GET_SMALL:
		if (msg->u.get_small.count == 0 ||
		    msg->u.get_small.count > WH_MAX_SMALL_FILES)
			return WH_ERR_TOOBIG;
		wr_u16(&w, msg->u.get_small.count);
		wr_bytes(&w, msg->u.get_small.entries,
			 msg->u.get_small.entries_len);
		break;
	case WH_MSG_GET_SMALL_REPLY:
		if (msg->u.get_small_reply.zstd) {
			const struct wh_msg_get_small_reply *z =
				&msg->u.get_small_reply;

			if (z->raw_len > WH_MAX_REPLY_FRAME ||
			    z->raw_len < 2 || z->data_len == 0 ||
			    z->data_len >= z->raw_len)
				return WH_ERR_TOOBIG;
			flags = WH_FLAG_ZSTD;
			wr_u32(&w, z->raw_len);
			wr_bytes(&w, z->data, z->data_len);
			break;
		}
		if (msg->u.get_small_reply.count == 0 ||
		    msg->u.get_small_reply.count > WH_MAX_SMALL_FILES)
			return WH_ERR_TOOBIG;
		wr_u16(&w, msg->u.get_small_reply.count);
		wr_bytes(&w, msg->u.get_small_reply.entries,
			 msg->u.get_small_reply.entries_len);
		break;
	case WH_MSG_STATFS_REPLY: {
		const struct wh_msg_statfs_reply *s = &msg->u.statfs_reply;

		wr_u32(&w, s->bsize);
		wr_u32(&w, s->frsize);
		wr_u32(&w, s->namemax);
		wr_u64(&w, s->blocks);
		wr_u64(&w, s->bfree);
		wr_u64(&w, s->bavail);
		wr_u64(&w, s->files);
		wr_u64(&w, s->ffree);
		break;
	}
	default:
		return WH_ERR_PROTO;
	}
	if (w.bad)
		return WH_ERR_TOOBIG;
	payload = cap - w.left - WH_FRAME_HDR_LEN;
	if (payload > UINT32_MAX)
		return WH_ERR_TOOBIG;
	buf[0] = (uint8_t)(payload >> 24);
	buf[1] = (uint8_t)(payload >> 16);
	buf[2] = (uint8_t)(payload >> 8);
	buf[3] = (uint8_t)payload;
	buf[6] = (uint8_t)(flags >> 8);
	buf[7] = (uint8_t)flags;
	return (ssize_t)(cap - w.left);
}

ssize_t wh_read_reply_hdr_encode(uint32_t req_id, const struct wh_version *v,
				 bool eof, uint32_t data_len, uint8_t *buf,
				 size_t cap)
{
	struct wr w = { buf, cap, false };
	uint32_t payload = WH_VERSION_WIRE_LEN + 1 + data_len;

	if (data_len > WH_MAX_READ)
		return WH_ERR_TOOBIG;
	wr_u32(&w, payload);
	wr_u16(&w, WH_MSG_READ_REPLY);
	wr_u16(&w, 0);
	wr_u32(&w, req_id);
	wr_version(&w, v);
	wr_u8(&w, eof ? 1 : 0);
	if (w.bad)
		return WH_ERR_TOOBIG;
	return WH_READ_REPLY_HDR_LEN;
}

ssize_t wh_dirent_encode(const char *name, size_t name_len,
			 const struct wh_attr *attr, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, false };

	if (!wh_name_valid(name, name_len))
		return WH_ERR_TOOBIG;
	wr_str(&w, name, name_len);
	wr_attr(&w, attr);
	if (w.bad)
		return WH_ERR_TOOBIG;
	return (ssize_t)(cap - w.left);
}

/* rd_entry_at - point |r| at the entry at |pos| of |len| bytes of
 * entries: 1, or 0 at the end, or WH_ERR_PROTO past it (the cursor of the
 * wh_*_next iterators). */
static int rd_entry_at(struct rd *r, const uint8_t *entries, size_t len,
		       size_t pos)
{
	if (pos > len)
		return WH_ERR_PROTO;
	if (pos == len)
		return 0;
	r->p = entries + pos;
	r->left = len - pos;
	r->bad = false;
	return 1;
}

int wh_dirent_next(const struct wh_msg_readdir_reply *rr, size_t *pos,
		   struct wh_dirent *ent)
{
	struct rd r;
	int rv;

	rv = rd_entry_at(&r, rr->entries, rr->entries_len, *pos);
	if (rv <= 0)
		return rv;
	rd_str(&r, &ent->name);
	rd_attr(&r, &ent->attr);
	if (r.bad || !wh_name_valid(ent->name.p, ent->name.len))
		return WH_ERR_PROTO;
	*pos = rr->entries_len - r.left;
	return 1;
}

void wh_manifest_entry(const struct wh_msg_manifest_reply *r, uint32_t i,
		       uint64_t *offset, uint32_t *length, uint8_t hash[32])
{
	struct rd rr = { r->entries + (size_t)i * WH_MANIFEST_ENTRY_LEN,
			 WH_MANIFEST_ENTRY_LEN, false };

	*offset = rd_u64(&rr);
	*length = rd_u32(&rr);
	rd_bytes(&rr, hash, 32);
}

void wh_manifest_part_entry(const struct wh_msg_manifest_part *r, uint32_t i,
			    uint64_t *offset, uint32_t *length,
			    uint8_t hash[32])
{
	struct wh_msg_manifest_reply mr = { .entries = r->entries };

	wh_manifest_entry(&mr, i, offset, length, hash);
}

void wh_manifest_entry_encode(uint64_t offset, uint32_t length,
			      const uint8_t hash[32], uint8_t *buf)
{
	struct wr w = { buf, WH_MANIFEST_ENTRY_LEN, false };

	wr_u64(&w, offset);
	wr_u32(&w, length);
	wr_bytes(&w, hash, 32);
}

ssize_t wh_chunk_reply_hdr_encode(uint32_t req_id, const uint8_t hash[32],
				  uint32_t data_len, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, false };

	if (data_len > WH_MAX_CHUNK)
		return WH_ERR_TOOBIG;
	wr_u32(&w, 32 + data_len);
	wr_u16(&w, WH_MSG_CHUNK_REPLY);
	wr_u16(&w, 0);
	wr_u32(&w, req_id);
	wr_bytes(&w, hash, 32);
	if (w.bad)
		return WH_ERR_TOOBIG;
	return WH_CHUNK_REPLY_HDR_LEN;
}

ssize_t wh_zreply_hdr_encode(const uint8_t *frame, size_t frame_len,
			     uint32_t zlen, uint8_t *buf, size_t cap,
			     size_t *pdata_off)
{
	struct wh_frame_hdr hdr;
	struct wr w = { buf, cap, false };
	size_t fixed, raw;

	if (wh_frame_hdr_decode(frame, frame_len, WH_MAX_REPLY_FRAME, &hdr) <
		    0 ||
	    frame_len != WH_FRAME_HDR_LEN + (size_t)hdr.length ||
	    (hdr.flags & WH_FLAG_ZSTD))
		return WH_ERR_PROTO;
	if (hdr.type == WH_MSG_CHUNK_REPLY)
		fixed = 32;
	else if (hdr.type == WH_MSG_READ_REPLY)
		fixed = WH_VERSION_WIRE_LEN + 1;
	else if (hdr.type == WH_MSG_GET_SMALL_REPLY)
		fixed = 0; /* the whole payload, count included */
	else
		return WH_ERR_PROTO;
	if (hdr.length < fixed)
		return WH_ERR_PROTO;
	raw = hdr.length - fixed;
	if (zlen == 0 || zlen >= raw)
		return WH_ERR_PROTO;
	wr_u32(&w, (uint32_t)(fixed + 4 + zlen));
	wr_u16(&w, hdr.type);
	wr_u16(&w, WH_FLAG_ZSTD);
	wr_u32(&w, hdr.req_id);
	wr_bytes(&w, frame + WH_FRAME_HDR_LEN, fixed);
	wr_u32(&w, (uint32_t)raw);
	if (w.bad)
		return WH_ERR_TOOBIG;
	*pdata_off = WH_FRAME_HDR_LEN + fixed;
	return (ssize_t)(WH_FRAME_HDR_LEN + fixed + 4);
}

ssize_t wh_small_req_encode(const char *path, size_t path_len,
			    const uint8_t *hash, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, false };

	if (path_len > WH_MAX_PATH)
		return WH_ERR_TOOBIG;
	wr_str(&w, path, path_len);
	wr_u8(&w, hash ? 1 : 0);
	if (hash)
		wr_bytes(&w, hash, 32);
	if (w.bad)
		return WH_ERR_TOOBIG;
	return (ssize_t)(cap - w.left);
}

int wh_small_req_next(const struct wh_msg_get_small *m, size_t *pos,
		      struct wh_small_req *ent)
{
	struct rd r;
	int rv;
	bool bad_path = false;

	rv = rd_entry_at(&r, m->entries, m->entries_len, *pos);
	if (rv <= 0)
		return rv;
	rd_small_req(&r, ent, &bad_path);
	if (r.bad)
		return WH_ERR_PROTO;
	if (bad_path)
		return WH_ERR_PATH;
	*pos = m->entries_len - r.left;
	return 1;
}

ssize_t wh_small_reply_ent_encode(uint8_t status,
				  const struct wh_version *v,
				  const uint8_t *hash, int32_t err,
				  uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, false };

	wr_u8(&w, status);
	switch (status) {
	case WH_SMALL_DATA:
	case WH_SMALL_SAME:
		if (status == WH_SMALL_DATA && v->size > WH_MAX_SMALL_FILE)
			return WH_ERR_TOOBIG;
		wr_version(&w, v);
		wr_bytes(&w, hash, 32);
		if (status == WH_SMALL_DATA)
			wr_u32(&w, (uint32_t)v->size);
		break;
	case WH_SMALL_ERROR:
		wr_u32(&w, (uint32_t)(err > 0 && err < 4096 ? err : EIO));
		break;
	default:
		return WH_ERR_PROTO;
	}
	if (w.bad)
		return WH_ERR_TOOBIG;
	return (ssize_t)(cap - w.left);
}

ssize_t wh_small_reply_hdr_encode(uint32_t req_id, uint16_t count,
				  size_t entries_len, uint8_t *buf,
				  size_t cap)
{
	struct wr w = { buf, cap, false };

	if (count == 0 || count > WH_MAX_SMALL_FILES ||
	    entries_len > WH_MAX_REPLY_FRAME - 2)
		return WH_ERR_TOOBIG;
	wr_u32(&w, (uint32_t)(2 + entries_len));
	wr_u16(&w, WH_MSG_GET_SMALL_REPLY);
	wr_u16(&w, 0);
	wr_u32(&w, req_id);
	wr_u16(&w, count);
	if (w.bad)
		return WH_ERR_TOOBIG;
	return WH_SMALL_REPLY_HDR_LEN;
}

int wh_small_next(const struct wh_msg_get_small_reply *m, size_t *pos,
		  struct wh_small_ent *ent)
{
	struct rd r;
	int rv;

	rv = rd_entry_at(&r, m->entries, m->entries_len, *pos);
	if (rv <= 0)
		return rv;
	rd_small_ent(&r, ent);
	if (r.bad)
		return WH_ERR_PROTO;
	*pos = m->entries_len - r.left;
	return 1;
}

/* the largest frame wh_msg_encode can produce for |msg| */
static size_t encoded_bound(const struct wh_msg *msg)
{
	size_t n = WH_FRAME_HDR_LEN + 128; /* every fixed field */

	switch (msg->hdr.type) {
	case WH_MSG_INVAL:
		return n + msg->u.inval.dir.len + msg->u.inval.name.len;
	case WH_MSG_ERROR:
		return n + msg->u.error.message.len;
	case WH_MSG_READDIR_REPLY:
		return n + msg->u.readdir_reply.entries_len;
	case WH_MSG_READ_REPLY:
		return n + msg->u.read_reply.data_len;
	case WH_MSG_READLINK_REPLY:
		return n + msg->u.readlink_reply.target.len;
	case WH_MSG_MANIFEST_REPLY:
		return n + (size_t)msg->u.manifest_reply.count *
				   WH_MANIFEST_ENTRY_LEN;
	case WH_MSG_MANIFEST_PART:
		return n + (size_t)msg->u.manifest_part.count *
				   WH_MANIFEST_ENTRY_LEN;
	case WH_MSG_CHUNK_REPLY:
		return n + msg->u.chunk_reply.data_len;
	case WH_MSG_GET_SMALL:
		return n + msg->u.get_small.entries_len;
	case WH_MSG_GET_SMALL_REPLY:
		return n + msg->u.get_small_reply.entries_len +
		       msg->u.get_small_reply.data_len;
	default:
		return n + 2 * WH_MAX_PATH + WH_MAX_NAME;
	}
}

int wh_msg_append(struct wh_buf *b, const struct wh_msg *msg)
{
	ssize_t n;
	int rv;

	rv = wh_buf_reserve(b, encoded_bound(msg));
	if (rv < 0)
		return rv;
	n = wh_msg_encode(msg, b->data + b->len, b->cap - b->len);
	if (n < 0)
		return (int)n;
	b->len += (size_t)n;
	return 0;
}

int wh_error_append(struct wh_buf *b, uint32_t req_id, int err,
		    const char *message)
{
	struct wh_msg m;
	size_t mlen = strlen(message);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_ERROR;
	m.hdr.req_id = req_id;
	m.u.error.err = err > 0 && err < 4096 ? err : EIO;
	m.u.error.message.p = message;
	m.u.error.message.len =
		(uint16_t)(mlen > WH_MAX_ERRMSG ? WH_MAX_ERRMSG : mlen);
	return wh_msg_append(b, &m);
}
