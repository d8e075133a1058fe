/*
 * wh_host.h - `wormhole host`: serve a folder to authenticated peers.
 *
 * Owns the event loop of the host: the QUIC endpoint, the share's change
 * watch, the signals.  Each connection authenticates with the PAKE on its
 * control stream before any request is served; requests are served by
 * wh_share_serve(); changes seen by the watch are pushed to every
 * authenticated client as INVAL frames.
 */
#ifndef WH_HOST_H
#define WH_HOST_H

#include <stdio.h>

#define WH_HOST_MAX_FAILURES 10 /* failed PAKE runs before a code is locked */

struct wh_host_opts {
	const char *dir;    /* the folder to share */
	const char *listen; /* "ADDR:PORT" */
	const char *code;   /* canonical join code */
	const char *cache_dir; /* manifest cache; NULL: the default */
	const char *signal; /* "ADDR:PORT" of a signal server, or NULL */
	FILE *out;          /* where "join code:" and "listening:" go */
};

/*
 * wh_host_run - serve until SIGINT or SIGTERM.  Returns 0 after a clean
 * shutdown, or a negative error (logged) if the host could not start.
 */
int wh_host_run(const struct wh_host_opts *opts);

#endif /* WH_HOST_H */
