/*
 * wh_zhost.h - the host's side of per-chunk compression: when to send a
 * CHUNK_REPLY or READ_REPLY as zstd (WH_CAP_ZSTD), at which level, and
 * how fast the link to a client is.
 *
 * A reply is compressed only when it pays:
 *   - never for names of already compressed formats (wh_zstd_skip_name),
 *     for payloads under WH_ZSTD_MIN_LEN, or for chunks this host has
 *     already found incompressible (a small cache by chunk hash);
 *   - a sample (three 4 KiB pieces at the fastest level) estimates the
 *     ratio; incompressible data goes raw without compressing the rest;
 *   - the level follows the link: with R the measured delivery rate of
 *     the connection, S_L the measured compression speed of level L (per
 *     core, times the cores the workers can use) and r_L the expected
 *     ratio, level L moves min(S_L, R / r_L) bytes of file per second
 *     against R for raw data; the best level wins if it beats raw by at
 *     least 20%, else the reply goes raw (a fast link or a slow CPU);
 *   - what the model predicts is checked: compressed replies must deliver
 *     more file bytes per second than raw ones did (struct wh_zrate);
 *   - when the network thread is on the CPU more than half of the time,
 *     the transfer is bound by CPU, not by the link, and compressing would
 *     take CPU from it: raw (the usual case on loopback and fast LANs);
 *   - the result is sent only if it is smaller than the raw payload.
 * Compression runs in the host's worker threads, after the request was
 * served, never on the network thread.
 *
 * $WORMHOLE_ZSTD: "off" (or "0") disables compression (the capability is
 * not offered), "auto" (the default) is the rule above, a number 1..19
 * compresses every compressible reply at that level whatever the link
 * (for tests and measurements).
 */
#ifndef WH_ZHOST_H
#define WH_ZHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wh_buf.h"

struct wh_zhost;

/*
 * wh_zhost_new - the compression policy from $WORMHOLE_ZSTD.  Returns 0
 * with *pz set, 0 with *pz NULL when compression is disabled, or -ENOMEM.
 * Free with wh_zhost_del().
 */
int wh_zhost_new(struct wh_zhost **pz);
void wh_zhost_del(struct wh_zhost *z);

/* What the host knows of the path when a request is handed out. */
struct wh_zlink {
	double rate;     /* delivery rate of the connection, bytes/s; 0:
			  * not measured yet */
	double net_busy; /* share of the time the network thread spent on
			  * the CPU lately (0..1) */
	bool hold;       /* raw for now: the rate is being measured, or
			  * compressing did not pay here (wh_zrate_allow) */
	bool small;      /* the client takes zstd GET_SMALL replies
			  * (WH_CAP_ZSMALL) */
};

/*
 * wh_zhost_pack - |resp| holds the reply frame to request |req| (|len|
 * bytes); if it is a CHUNK_REPLY, READ_REPLY or (with |link->small|)
 * GET_SMALL_REPLY worth compressing for the path |link|, replace it by its
 * zstd form.  A GET_SMALL_REPLY is compressed whole (entries and files
 * together, one zstd frame), under the same rule, unless every file it
 * was asked for has the name of a compressed format.  Leaves |resp| as it was
 * otherwise (including on any failure).  Returns the bytes saved (0 if
 * sent raw).  Thread-safe.
 */
size_t wh_zhost_pack(struct wh_zhost *z, const uint8_t *req, size_t len,
		     struct wh_buf *resp, const struct wh_zlink *link);

/*
 * The delivery rate of one connection, and whether compressing pays on
 * it, as measured (loop thread only).
 *
 * The raw rate: reply bytes delivered (their streams closed, i.e.
 * acknowledged) per second, counted only while replies are raw and at
 * least WH_ZRATE_BACKLOG bytes of them are on their way.  With less the
 * sender is limited by the application, and the time says nothing of the
 * link, so those periods are left out, as BBR leaves out app-limited
 * samples.  A sample above the estimate replaces it (slow start); one
 * below moves it half way.
 *
 * The trial: the model of wh_zhost_pack can be wrong (a client that is
 * itself the bottleneck looks like a slow link, decoding costs it CPU,
 * and the raw rate above can be underestimated), so the decision is
 * checked by measuring both ways alike: file bytes delivered per second
 * of wall time over WH_ZRATE_TRIAL_MS windows, first raw (nothing is
 * compressed before one raw window), then with compressed replies.
 * Unless compressing beats raw by 10%, it is held off for a while (4 s,
 * doubling on each failure up to 64 s) and raw is measured again.  While
 * it pays, every WH_ZRATE_REFRESH_MS a raw window is measured afresh.
 */
#define WH_ZRATE_BACKLOG (512 * 1024)
#define WH_ZRATE_TRIAL_MS 1000
#define WH_ZRATE_REFRESH_MS 15000
struct wh_zrate {
	uint64_t outstanding;  /* reply bytes sent, not yet delivered */
	uint64_t last;         /* ns of the last event */
	uint64_t busy_ns;      /* backlogged raw time in the current sample */
	uint64_t bytes;        /* raw bytes delivered in the current sample */
	double rate;           /* raw bytes per second, 0 until measured */
	bool fresh;            /* raw_wall measured since the last trial */
	double raw_wall;       /* file bytes per second, raw, wall clock */
	bool trying;           /* compressed replies are being measured */
	uint64_t w_start;      /* ns: first delivery of the current window */
	uint64_t w_file;       /* file bytes delivered since */
	uint64_t z_since;      /* ns: the trial began (for the refresh) */
	uint64_t hold_until;   /* ns: no compression before this */
	uint64_t hold_ns;      /* the next hold */
};

/* wh_zrate_sent - a reply of |wire| bytes carrying |file| bytes of file
 * data (more than |wire| if compressed) was handed to the transport. */
void wh_zrate_sent(struct wh_zrate *r, size_t wire, size_t file,
		   uint64_t now);
/* wh_zrate_done - that reply was delivered (its stream closed). */
void wh_zrate_done(struct wh_zrate *r, size_t wire, size_t file,
		   uint64_t now);
/* wh_zrate_get - the raw rate in bytes per second, 0 while unknown. */
double wh_zrate_get(const struct wh_zrate *r);
/* wh_zrate_allow - whether the next reply may be compressed: the raw rate
 * is known and fresh, and no failed trial holds compression off. */
bool wh_zrate_allow(const struct wh_zrate *r, uint64_t now);

#endif /* WH_ZHOST_H */
