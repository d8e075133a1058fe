/*
 * wh_sigdb.h - the signal server's rooms in SQLite, so that a restart
 * between a host's registration and a client's join loses nothing.
 *
 * One table, rooms(room, token_hash, host, cands, expires_ms); a row is
 * written when a room is created or refreshed and deleted when it goes.
 * The database keeps only what pairing needs (no join code, no client
 * address).  WAL journal, synchronous=NORMAL: a crash may lose the last
 * refresh, which the host repeats within its refresh interval anyway.
 */
#ifndef WH_SIGDB_H
#define WH_SIGDB_H

#include <stdint.h>

#include "signal/wh_sigsrv.h"

struct wh_sigdb;

/* wh_sigdb_open - open or create |path|.  0 or a negative error (logged). */
int wh_sigdb_open(const char *path, struct wh_sigdb **pdb);
void wh_sigdb_close(struct wh_sigdb *db);

/* wh_sigdb_load - delete rows expired at |now_ms|, then call |fn| for each
 * remaining room.  Returns the number of rooms given, or an error. */
int wh_sigdb_load(struct wh_sigdb *db, uint64_t now_ms,
		  int (*fn)(void *ud, const struct wh_sig_room *r), void *ud);

/* wh_sigdb_store - a struct wh_sigsrv_store writing to |db|. */
void wh_sigdb_store(struct wh_sigdb *db, struct wh_sigsrv_store *st);

#endif /* WH_SIGDB_H */
