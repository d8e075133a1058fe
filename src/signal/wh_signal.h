/*
 * wh_signal.h - `wormhole signal`: the rendezvous server's loop.
 *
 * One UDP socket, one thread: each datagram goes through wh_sigsrv_handle()
 * and its answers are sent; rooms are expired once a second; rooms live in
 * the SQLite database |db| (wh_sigdb) so a restart loses none.  Prints
 * "listening: ADDR:PORT" on |out| once ready.  SIGINT/SIGTERM stop it.
 */
#ifndef WH_SIGNAL_H
#define WH_SIGNAL_H

#include <stdio.h>

#include "signal/wh_sigsrv.h"

struct wh_signal_opts {
	const char *listen; /* "ADDR:PORT" */
	const char *db;     /* SQLite file */
	struct wh_sigsrv_opts srv;
	FILE *out;
};

/* wh_signal_run - 0 after a clean shutdown, or a negative error (logged). */
int wh_signal_run(const struct wh_signal_opts *opts);

#endif /* WH_SIGNAL_H */
