/*
 * wh_proto.h - wormhole protocol v1: frames and messages, pure encode and
 * decode with no I/O.  docs/PROTOCOL.md is the normative description; this
 * header is its C face.
 *
 * Every message travels in one frame:
 *
 *     u32 length    payload bytes after this 12-byte header
 *     u16 type      enum wh_msg_type
 *     u16 flags     reserved, must be 0 on send, ignored on receive
 *     u32 req_id    chosen by the requester, echoed in the response
 *     payload       |length| bytes, layout per type
 *
 * All integers are big-endian.  Strings are u16 length + bytes (no NUL).
 * Byte blobs (READ data) are the rest of the payload.
 *
 * Streams (see docs/PROTOCOL.md): the client opens one bidirectional control
 * stream first and runs HELLO / HELLO_ACK / AUTH / AUTH_OK on it; after that
 * the host pushes INVAL frames on it.  Every request then goes on a fresh
 * client-opened bidirectional stream: one request frame, FIN; one response
 * frame (the matching *_REPLY type or ERROR), FIN.
 *
 * Decoders never read past |len|, never allocate, and point string fields
 * into the caller's buffer (so the buffer must outlive the decoded message).
 * Every decoder rejects trailing bytes, lengths over the limits below, paths
 * that are not safe relative paths and names that are not single components.
 */
#ifndef WH_PROTO_H
#define WH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/wh_buf.h"

#define WH_PROTO_VERSION 1       /* the highest version we speak */
#define WH_PROTO_MIN_VERSION 1   /* the lowest version we accept */
#define WH_ALPN "wormhole/1"

#define WH_FRAME_HDR_LEN 12
#define WH_MAX_PATH 4096         /* bytes in a relative path */
#define WH_MAX_NAME 255          /* bytes in one path component */
#define WH_MAX_READ (1024 * 1024) /* bytes in one READ */
#define WH_MAX_REQ_FRAME 8192    /* payload bytes of any client->host frame */
#define WH_MAX_REPLY_FRAME (WH_MAX_CHUNK + 65536) /* payload, host->client */
#define WH_MAX_READDIR_ENTRIES 1024 /* entries in one READDIR_REPLY */
#define WH_MAX_ERRMSG 512        /* bytes of an ERROR's message */
#define WH_MAX_CHUNK (4 * 1024 * 1024) /* bytes in one CHUNK_REPLY */
#define WH_MANIFEST_ENTRY_LEN 44 /* u64 offset, u32 length, 32-byte hash */
#define WH_MAX_MANIFEST_ENTRIES 16384 /* entries in one MANIFEST_REPLY */
#define WH_PAKE_MSG_LEN 32
#define WH_CONFIRM_LEN 32

/* capability bits, negotiated in HELLO/HELLO_ACK (intersection wins) */
#define WH_CAP_INVAL     (1ULL << 0) /* host pushes INVAL frames */
#define WH_CAP_READDIRPLUS (1ULL << 1) /* READDIR_REPLY carries attributes */
#define WH_CAP_CHUNKS    (1ULL << 2) /* MANIFEST and CHUNK requests */
#define WH_CAP_MSTREAM   (1ULL << 3) /* MANIFEST_STREAM: a manifest in parts
				      * while the host computes it */
#define WH_MAX_MSTREAM_WAIT_MS 5000 /* the host waits at most this long */
#define WH_CAP_ZSTD      (1ULL << 5) /* CHUNK_REPLY and READ_REPLY may carry
				      * a zstd payload (WH_FLAG_ZSTD) */

/* frame header flags (0 unless a capability says otherwise) */
#define WH_FLAG_ZSTD 0x0001 /* CHUNK_REPLY, READ_REPLY: u32 raw_len, then
			     * a zstd frame of raw_len bytes as the data */
#define WH_CAP_SMALL     (1ULL << 6) /* GET_SMALL: several small files,
				      * whole, in one request */
#define WH_CAP_ZSMALL    (1ULL << 7) /* GET_SMALL_REPLY may carry a zstd
				      * payload (WH_FLAG_ZSTD); agreed only
				      * with ZSTD and SMALL */
#define WH_MAX_SMALL_FILES 64    /* files in one GET_SMALL */
#define WH_MAX_SMALL_FILE (256 * 1024) /* the largest file GET_SMALL sends */

enum wh_msg_type {
	/* control stream */
	WH_MSG_HELLO = 1,       /* client -> host */
	WH_MSG_HELLO_ACK = 2,   /* host -> client */
	WH_MSG_AUTH = 3,        /* client -> host */
	WH_MSG_AUTH_OK = 4,     /* host -> client */
	WH_MSG_INVAL = 5,       /* host -> client, any time after AUTH_OK */

	/* requests (client -> host) and their replies */
	WH_MSG_ERROR = 16,      /* reply to anything */
	WH_MSG_LOOKUP = 17,
	WH_MSG_LOOKUP_REPLY = 18,
	WH_MSG_GETATTR = 19,
	WH_MSG_GETATTR_REPLY = 20,
	WH_MSG_READDIR = 21,
	WH_MSG_READDIR_REPLY = 22,
	WH_MSG_READ = 23,
	WH_MSG_READ_REPLY = 24,
	WH_MSG_READLINK = 25,
	WH_MSG_READLINK_REPLY = 26,
	WH_MSG_STATFS = 27,
	WH_MSG_STATFS_REPLY = 28,
	/* data plane, with WH_CAP_CHUNKS */
	WH_MSG_MANIFEST = 29,
	WH_MSG_MANIFEST_REPLY = 30,
	WH_MSG_CHUNK = 31,
	WH_MSG_CHUNK_REPLY = 32,
	/* with WH_CAP_MSTREAM */
	WH_MSG_MANIFEST_STREAM = 33,
	WH_MSG_MANIFEST_PART = 34,
	/* with WH_CAP_SMALL */
	WH_MSG_GET_SMALL = 40,
	WH_MSG_GET_SMALL_REPLY = 41,
};

struct wh_frame_hdr {
	uint32_t length;
	uint16_t type;
	uint16_t flags;
	uint32_t req_id;
};

/* A string that points into a decoded buffer (not NUL-terminated). */
struct wh_str {
	const char *p;
	uint16_t len;
};

struct wh_timespec {
	int64_t sec;
	uint32_t nsec; /* < 1e9 */
};

/* File attributes as the host sees them (lstat semantics). 
 * Wire: ino u64, mode u32, nlink u32, uid u32, gid u32, size u64,
 * blocks u64, blksize u32, atime, mtime, ctime (each i64 sec + u32 nsec)
 * = 80 bytes. */
struct wh_attr {
	uint64_t ino;
	uint32_t mode; /* S_IFREG, S_IFDIR or S_IFLNK plus permission bits */
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	uint64_t blocks; /* 512-byte units */
	uint32_t blksize;
	struct wh_timespec atime, mtime, ctime;
};
#define WH_ATTR_WIRE_LEN 80

/* Identifies one version of a file's content: if any field differs, the
 * bytes may differ.  Wire: size u64, mtime, ctime = 32 bytes. */
struct wh_version {
	uint64_t size;
	struct wh_timespec mtime, ctime;
};
#define WH_VERSION_WIRE_LEN 32

struct wh_msg_hello {
	uint16_t min_version, max_version;
	uint64_t caps;
	uint8_t pake_msg[WH_PAKE_MSG_LEN];
};

struct wh_msg_hello_ack {
	uint16_t version;
	uint64_t caps;
	uint8_t pake_msg[WH_PAKE_MSG_LEN];
	uint8_t confirm[WH_CONFIRM_LEN]; /* host's key confirmation */
};

struct wh_msg_auth {
	uint8_t confirm[WH_CONFIRM_LEN]; /* client's key confirmation */
};

/* INVAL: something in directory |dir| named |name| changed (created,
 * deleted, renamed, written, truncated, chmod...).  An empty |name| means
 * the directory itself changed.  An empty |dir| is the share's root. */
struct wh_msg_inval {
	struct wh_str dir;
	struct wh_str name;
};

struct wh_msg_error {
	int32_t err;          /* a positive Linux errno value */
	struct wh_str message; /* may be empty; at most WH_MAX_ERRMSG */
};

struct wh_msg_lookup {
	struct wh_str dir;  /* safe relative path, "" is the root */
	struct wh_str name; /* one component */
};

struct wh_msg_path { /* GETATTR, READLINK */
	struct wh_str path;
};

struct wh_msg_readdir {
	struct wh_str path;
	uint64_t cookie;     /* 0 to start; else next_cookie of a previous reply */
	uint32_t max_entries; /* 1..WH_MAX_READDIR_ENTRIES */
};

struct wh_msg_read {
	struct wh_str path;
	uint64_t offset;
	uint32_t length; /* 0..WH_MAX_READ */
};

struct wh_msg_attr_reply { /* LOOKUP_REPLY, GETATTR_REPLY */
	struct wh_attr attr;
};

/* READDIR_REPLY: next_cookie u64, eof u8, count u32, then |count| entries
 * each name (string) + attr.  Decoded lazily with wh_dirent_next(). */
struct wh_msg_readdir_reply {
	uint64_t next_cookie;
	bool eof;
	uint32_t count;
	const uint8_t *entries; /* encoded entries, |entries_len| bytes */
	size_t entries_len;
};

struct wh_dirent {
	struct wh_str name;
	struct wh_attr attr;
};

/* READ_REPLY: version, eof u8, then data (rest of payload).  With
 * WH_FLAG_ZSTD: version, eof u8, u32 raw_len, then a zstd frame that
 * decodes to raw_len bytes (1 <= data_len < raw_len <= WH_MAX_READ). */
struct wh_msg_read_reply {
	struct wh_version version;
	bool eof;           /* offset+len reached the end of the file */
	const uint8_t *data;
	uint32_t data_len;  /* bytes of |data| on the wire */
	bool zstd;          /* |data| is a zstd frame (decoded by the caller) */
	uint32_t raw_len;   /* bytes of file data: data_len unless |zstd| */
};

struct wh_msg_readlink_reply {
	struct wh_str target;
};

/* MANIFEST: the chunks of a regular file, from entry |start| on. */
struct wh_msg_manifest {
	struct wh_str path;
	uint32_t start;
};

/* MANIFEST_REPLY: version, u32 total, u32 start, u32 count, then |count|
 * entries (u64 offset, u32 length, 32-byte BLAKE3), read with
 * wh_manifest_entry(). */
struct wh_msg_manifest_reply {
	struct wh_version version;
	uint32_t total, start, count;
	const uint8_t *entries; /* count * WH_MANIFEST_ENTRY_LEN bytes */
};

/* MANIFEST_STREAM: like MANIFEST, but the host answers with the entries
 * known so far from |start| on while it is still computing the manifest,
 * waiting at most |wait_ms| (capped at WH_MAX_MSTREAM_WAIT_MS) for at least
 * one entry past |start|. */
struct wh_msg_manifest_stream {
	struct wh_str path;
	uint32_t start;
	uint32_t wait_ms;
};

/* MANIFEST_PART: version, u8 done, u32 known, u32 start, u32 count, then
 * |count| entries (as in MANIFEST_REPLY).  |known| is the number of
 * entries computed so far, the total once |done|; start + count <= known.
 * Read the entries with wh_manifest_part_entry(). */
struct wh_msg_manifest_part {
	struct wh_version version;
	bool done;
	uint32_t known, start, count;
	const uint8_t *entries; /* count * WH_MANIFEST_ENTRY_LEN bytes */
};

/* CHUNK: bytes [offset, offset+length) of |path|, which must hash to
 * |hash| in the file's version |version|. */
struct wh_msg_chunk {
	struct wh_str path;
	struct wh_version version;
	uint64_t offset;
	uint32_t length; /* 1..WH_MAX_CHUNK */
	uint8_t hash[32];
};

/* CHUNK_REPLY: 32-byte hash, then the data (rest of the payload).  With
 * WH_FLAG_ZSTD: hash, u32 raw_len, then a zstd frame that decodes to
 * raw_len bytes (1 <= data_len < raw_len <= WH_MAX_CHUNK). */
struct wh_msg_chunk_reply {
	uint8_t hash[32];
	const uint8_t *data;
	uint32_t data_len;  /* bytes of |data| on the wire */
	bool zstd;          /* |data| is a zstd frame (decoded by the caller) */
	uint32_t raw_len;   /* bytes of chunk data: data_len unless |zstd| */
};

/* GET_SMALL: u16 count (1..WH_MAX_SMALL_FILES), then |count| entries,
 * each str path, bool have, and when |have| the 32-byte BLAKE3 of the
 * copy the client already has.  Built with wh_small_req_encode(), read
 * with wh_small_req_next(). */
struct wh_msg_get_small {
	uint16_t count;
	const uint8_t *entries; /* encoded entries, |entries_len| bytes */
	size_t entries_len;
};

struct wh_small_req {
	struct wh_str path;
	bool have;
	uint8_t hash[32]; /* when |have| */
};

/* GET_SMALL_REPLY: u16 count (the request's), then one entry per
 * requested file, in the request's order: u8 status, then
 *   WH_SMALL_DATA  version, 32-byte BLAKE3, u32 length (= version.size,
 *                  at most WH_MAX_SMALL_FILE), the file's bytes
 *   WH_SMALL_SAME  version, 32-byte BLAKE3 (the client's hash matched)
 *   WH_SMALL_ERROR i32 errno (1..4095)
 * Read with wh_small_next().
 * WH_FLAG_ZSTD (with WH_CAP_ZSMALL): u32 raw_len, then a zstd frame that
 * decodes to raw_len bytes (at most WH_MAX_REPLY_FRAME): the payload above,
 * count included; |count| and |entries| are then 0 and NULL until the
 * caller decodes it (wh_zstd_small_unpack). */
struct wh_msg_get_small_reply {
	uint16_t count;
	const uint8_t *entries;
	size_t entries_len;
	bool zstd;          /* |data| is a zstd frame of the payload */
	uint32_t raw_len;   /* bytes of the decoded payload */
	const uint8_t *data;
	uint32_t data_len;
};

enum wh_small_status {
	WH_SMALL_DATA = 0,
	WH_SMALL_SAME = 1,
	WH_SMALL_ERROR = 2,
};

struct wh_small_ent {
	uint8_t status;           /* enum wh_small_status */
	struct wh_version version; /* DATA, SAME */
	uint8_t hash[32];         /* DATA, SAME */
	int32_t err;              /* ERROR */
	const uint8_t *data;      /* DATA: version.size bytes */
};

struct wh_msg_statfs_reply {
	uint32_t bsize, frsize, namemax;
	uint64_t blocks, bfree, bavail, files, ffree;
};

struct wh_msg {
	struct wh_frame_hdr hdr;
	union {
		struct wh_msg_hello hello;
		struct wh_msg_hello_ack hello_ack;
		struct wh_msg_auth auth;
		struct wh_msg_inval inval;
		struct wh_msg_error error;
		struct wh_msg_lookup lookup;
		struct wh_msg_path path;  /* GETATTR, READLINK */
		struct wh_msg_readdir readdir;
		struct wh_msg_read read;
		struct wh_msg_attr_reply attr; /* LOOKUP_REPLY, GETATTR_REPLY */
		struct wh_msg_readdir_reply readdir_reply;
		struct wh_msg_read_reply read_reply;
		struct wh_msg_readlink_reply readlink_reply;
		struct wh_msg_statfs_reply statfs_reply;
		struct wh_msg_manifest manifest;
		struct wh_msg_manifest_reply manifest_reply;
		struct wh_msg_chunk chunk;
		struct wh_msg_chunk_reply chunk_reply;
		struct wh_msg_manifest_stream manifest_stream;
		struct wh_msg_manifest_part manifest_part;
		struct wh_msg_get_small get_small;
		struct wh_msg_get_small_reply get_small_reply;
		/* AUTH_OK and STATFS have no payload */
	} u;
};

/*
 * wh_frame_hdr_decode - decode the 12-byte header at |buf|.
 * Returns 0, WH_ERR_SHORT if len < WH_FRAME_HDR_LEN, WH_ERR_TOOBIG if the
 * payload length exceeds |max_payload|, WH_ERR_PROTO for an unknown type.
 */
int wh_frame_hdr_decode(const uint8_t *buf, size_t len, size_t max_payload,
			struct wh_frame_hdr *hdr);

/*
 * wh_frame_gather - add |len| bytes of a stream that carries one frame and
 * nothing else (a request stream, or its reply) to |rx|; |fin| says the
 * stream ended with them.  Once the header is in, room for the whole frame
 * is made at once.  Returns 1 when |rx| holds exactly the whole frame (its
 * header in |hdr|; bytes after it, in this call or a later one, are an
 * error), 0 when more is to come, -ENOMEM, or, with |*why| saying what was
 * wrong: WH_ERR_TOOBIG (more than WH_FRAME_HDR_LEN + |max_payload|
 * bytes, or a header announcing more), WH_ERR_PROTO (an unknown type,
 * bytes after the frame, the stream ending before the frame did).
 * |hdr->req_id| is the frame's once its header decoded, else 0.
 */
int wh_frame_gather(struct wh_buf *rx, const uint8_t *data, size_t len,
		    bool fin, size_t max_payload, struct wh_frame_hdr *hdr,
		    const char **why);

/*
 * wh_msg_decode - decode one whole frame (header + payload) from |buf|.
 * |len| must be exactly WH_FRAME_HDR_LEN + hdr.length, else WH_ERR_PROTO
 * (or WH_ERR_SHORT when shorter).  String fields point into |buf|.
 * Returns 0 or WH_ERR_PROTO / WH_ERR_SHORT / WH_ERR_TOOBIG / WH_ERR_PATH.
 */
int wh_msg_decode(const uint8_t *buf, size_t len, size_t max_payload,
		  struct wh_msg *msg);

/*
 * wh_msg_encode - encode |msg| (msg->hdr.type and req_id are used; length
 * is computed) into |buf| of |cap| bytes.  Returns the frame length or
 * WH_ERR_TOOBIG if |cap| is too small or a field exceeds a limit.
 * For READ_REPLY the data is copied from msg->u.read_reply.data; to avoid
 * the copy use wh_read_reply_hdr_encode().  For READDIR_REPLY, entries are
 * copied from msg->u.readdir_reply.entries (built with wh_dirent_encode()).
 */
ssize_t wh_msg_encode(const struct wh_msg *msg, uint8_t *buf, size_t cap);

/*
 * wh_msg_append - encode |msg| at the end of |b| (grown as needed).
 * Returns 0, -ENOMEM, or wh_msg_encode's error.
 */
int wh_msg_append(struct wh_buf *b, const struct wh_msg *msg);

/*
 * wh_error_append - append an ERROR frame for |req_id| with |err| (a
 * positive errno; anything outside 1..4095 is sent as EIO) and |message|
 * (cut at WH_MAX_ERRMSG).  Returns 0 or -ENOMEM.
 */
int wh_error_append(struct wh_buf *b, uint32_t req_id, int err,
		    const char *message);

/*
 * wh_read_reply_hdr_encode - write the frame header and READ_REPLY fields
 * for |data_len| bytes of data that the caller places right after; returns
 * the number of header bytes written (WH_READ_REPLY_HDR_LEN) or
 * WH_ERR_TOOBIG.
 */
#define WH_READ_REPLY_HDR_LEN (WH_FRAME_HDR_LEN + WH_VERSION_WIRE_LEN + 1)
ssize_t wh_read_reply_hdr_encode(uint32_t req_id, const struct wh_version *v,
				 bool eof, uint32_t data_len, uint8_t *buf,
				 size_t cap);

/*
 * wh_dirent_encode - append one READDIR_REPLY entry to |buf| (cap bytes).
 * Returns bytes written or WH_ERR_TOOBIG (no room / name too long).
 */
ssize_t wh_dirent_encode(const char *name, size_t name_len,
			 const struct wh_attr *attr, uint8_t *buf, size_t cap);

/*
 * wh_dirent_next - decode the next entry of a READDIR_REPLY.  |*pos| starts
 * at 0; returns 1 with |*ent| filled and *pos advanced, 0 at the end, or
 * WH_ERR_PROTO on malformed entries (including a name that is not a single
 * valid component).
 */
int wh_dirent_next(const struct wh_msg_readdir_reply *r, size_t *pos,
		   struct wh_dirent *ent);

/*
 * wh_manifest_entry - decode entry |i| (< count) of a MANIFEST_REPLY.
 */
void wh_manifest_entry(const struct wh_msg_manifest_reply *r, uint32_t i,
		       uint64_t *offset, uint32_t *length, uint8_t hash[32]);
/* wh_manifest_part_entry - decode entry |i| (< count) of a MANIFEST_PART. */
void wh_manifest_part_entry(const struct wh_msg_manifest_part *r, uint32_t i,
			    uint64_t *offset, uint32_t *length,
			    uint8_t hash[32]);
/*
 * wh_manifest_entry_encode - write one entry at |buf| (44 bytes).
 */
void wh_manifest_entry_encode(uint64_t offset, uint32_t length,
			      const uint8_t hash[32], uint8_t *buf);

/*
 * wh_chunk_reply_hdr_encode - header and hash of a CHUNK_REPLY whose
 * |data_len| bytes the caller places right after (no copy).
 */
#define WH_CHUNK_REPLY_HDR_LEN (WH_FRAME_HDR_LEN + 32)
ssize_t wh_chunk_reply_hdr_encode(uint32_t req_id, const uint8_t hash[32],
				  uint32_t data_len, uint8_t *buf, size_t cap);

/*
 * wh_zreply_hdr_encode - the header of a zstd form of the CHUNK_REPLY,
 * READ_REPLY or GET_SMALL_REPLY frame at |frame| (|frame_len| bytes, raw
 * data, as built by the encoders above), for a zstd payload of |zlen|
 * bytes: the frame header with WH_FLAG_ZSTD and the new length, the same
 * fixed fields (none for GET_SMALL_REPLY: its whole payload is the data),
 * then u32 raw_len (the raw frame's data length).  Writes it at |buf|
 * (|cap| bytes, at least WH_ZREPLY_HDR_MAX; not overlapping |frame|);
 * *pdata_off gets where the data starts in |frame|.  Returns the header
 * length, or WH_ERR_PROTO when |frame| is not such a reply or |zlen| is
 * not smaller than its data (never expand), WH_ERR_TOOBIG if |cap| is.
 */
#define WH_ZREPLY_HDR_MAX (WH_READ_REPLY_HDR_LEN + 4)
ssize_t wh_zreply_hdr_encode(const uint8_t *frame, size_t frame_len,
			     uint32_t zlen, uint8_t *buf, size_t cap,
			     size_t *pdata_off);

/*
 * GET_SMALL helpers.
 *
 * wh_small_req_encode - append one GET_SMALL entry (|path|, and |hash| or
 * NULL when the client has no copy) to |buf| of |cap| bytes.  Returns the
 * bytes written or WH_ERR_TOOBIG (no room, or the path is over
 * WH_MAX_PATH).
 * wh_small_req_next - decode the next entry of a GET_SMALL; |*pos| starts
 * at 0.  Returns 1 with |*ent| filled (|path| points into the frame), 0 at
 * the end, or WH_ERR_PROTO / WH_ERR_PATH for a malformed entry.
 * wh_small_reply_ent_encode - write the status and fields of one reply
 * entry (for DATA without the data, which the caller places right after:
 * |v->size| bytes).  |v| and |hash| are unused for ERROR, |err| for the
 * others.  Returns bytes written or WH_ERR_TOOBIG.
 * wh_small_reply_hdr_encode - the frame header and count of a
 * GET_SMALL_REPLY whose entries (|entries_len| bytes) the caller places
 * right after; returns WH_SMALL_REPLY_HDR_LEN or WH_ERR_TOOBIG.
 * wh_small_next - decode the next reply entry; like wh_small_req_next
 * (|data| points into the frame).
 */
#define WH_SMALL_REPLY_HDR_LEN (WH_FRAME_HDR_LEN + 2)
#define WH_SMALL_ENT_MAX_HDR (1 + WH_VERSION_WIRE_LEN + 32 + 4)
ssize_t wh_small_req_encode(const char *path, size_t path_len,
			    const uint8_t *hash, uint8_t *buf, size_t cap);
int wh_small_req_next(const struct wh_msg_get_small *m, size_t *pos,
		      struct wh_small_req *ent);
ssize_t wh_small_reply_ent_encode(uint8_t status,
				  const struct wh_version *v,
				  const uint8_t *hash, int32_t err,
				  uint8_t *buf, size_t cap);
ssize_t wh_small_reply_hdr_encode(uint32_t req_id, uint16_t count,
				  size_t entries_len, uint8_t *buf,
				  size_t cap);
int wh_small_next(const struct wh_msg_get_small_reply *m, size_t *pos,
		  struct wh_small_ent *ent);

/*
 * wh_path_valid - true if |p| (len bytes) is a safe relative path: empty
 * (the root), or components separated by single '/', none empty, "." or
 * "..", no NUL byte, each at most WH_MAX_NAME bytes, total at most
 * WH_MAX_PATH, no leading or trailing '/'.  Any other byte is allowed
 * (names need not be UTF-8).
 */
bool wh_path_valid(const char *p, size_t len);
/* wh_name_valid - true if |n| is one valid, non-empty component. */
bool wh_name_valid(const char *n, size_t len);

/* wh_msg_type_name - "LOOKUP", ... or "UNKNOWN" */
const char *wh_msg_type_name(uint16_t type);

#endif /* WH_PROTO_H */
