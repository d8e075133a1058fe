/*
 * fuzz_sigdb.c - the signal server's database as another program, a bug
 * or a disk may leave it: rows of any type and length in the rooms table
 * (its own schema, or one without constraints that lets NULLs and text
 * in), loaded into a server at start as `wormhole signal` does.  Input:
 * u8 mode (bit 0: the loose schema), then rows of five columns, each a tag
 * byte (% 4: 0 a blob and 1 text, of the length in the next byte, 2 an
 * integer of the next 8 bytes, 3 NULL) and its bytes.  Whatever the rows,
 * loading neither crashes nor leaks, every room handed to the server has
 * valid addresses and at most WH_SIG_MAX_CANDS candidates, and the server
 * then holds at most max_rooms rooms, each found by its name until it
 * expires.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/wh_log.h"
#include "signal/wh_sigdb.h"
#include "signal/wh_sigsrv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS 1700000000000ULL
#define MAX_ROOMS 8

static char path[96], wal[112], shm[112];

static void rm_db(void)
{
	unlink(path);
	unlink(wal);
	unlink(shm);
}

struct load {
	struct wh_sigsrv *srv;
	struct wh_sig_room rooms[64];
	unsigned n;
};

static bool addr_ok(const struct wh_sig_addr *a)
{
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

static int restore(void *ud, const struct wh_sig_room *r)
{
	struct load *l = ud;
	int rv;

	if (!addr_ok(&r->host) || r->ncand > WH_SIG_MAX_CANDS)
		abort();
	for (unsigned i = 0; i < r->ncand; i++)
		if (!addr_ok(&r->cand[i]))
			abort();
	rv = wh_sigsrv_restore(l->srv, r, NOW_MS);
	if (rv == 0 && l->n < sizeof(l->rooms) / sizeof(l->rooms[0]))
		l->rooms[l->n++] = *r;
	return rv;
}

/* bind column |col| from the input at |*pos|; false when it ran out */
static bool bind_one(sqlite3_stmt *st, int col, const uint8_t *data,
		     size_t size, size_t *pos)
{
	uint8_t tag, len;
	sqlite3_int64 v = 0;

	if (*pos >= size)
		return false;
	tag = data[(*pos)++] % 4;
	switch (tag) {
	case 0:
	case 1:
		if (*pos >= size)
			return false;
		len = data[(*pos)++];
		if (len > size - *pos)
			len = (uint8_t)(size - *pos);
		if (tag == 0)
			sqlite3_bind_blob(st, col, data + *pos, len,
					  SQLITE_TRANSIENT);
		else
			sqlite3_bind_text(st, col, (const char *)data + *pos,
					  len, SQLITE_TRANSIENT);
		*pos += len;
		break;
	case 2:
		for (int i = 0; i < 8 && *pos < size; i++)
			v = (sqlite3_int64)((uint64_t)v << 8 | data[(*pos)++]);
		sqlite3_bind_int64(st, col, v);
		break;
	default:
		sqlite3_bind_null(st, col);
		break;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_sigsrv_opts o;
	struct wh_sigdb *db;
	sqlite3_stmt *ins;
	struct load l;
	sqlite3 *raw;
	size_t pos = 1;
	int rv;

	if (!path[0]) {
		/* in RAM where there is /dev/shm: SQLite syncs a lot */
		snprintf(path, sizeof(path), "%s/wh-fuzz-sigdb-%d.db",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
			 (int)getpid());
		snprintf(wal, sizeof(wal), "%s-wal", path);
		snprintf(shm, sizeof(shm), "%s-shm", path);
		atexit(rm_db);
		wh_log_set_level(WH_LOG_ERROR);
	}
	if (size < 1 || size > 4096)
		return 0;
	rm_db();
	if (sqlite3_open(path, &raw) != SQLITE_OK)
		abort();
	if ((data[0] & 1) &&
	    sqlite3_exec(raw, "CREATE TABLE rooms(room, token_hash, host, "
			 "cands, expires_ms)", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	sqlite3_close(raw);
	/* the server's own connection makes its schema where there is none */
	if (wh_sigdb_open(path, &db) != 0)
		abort();
	if (sqlite3_open(path, &raw) != SQLITE_OK ||
	    sqlite3_exec(raw, "PRAGMA synchronous=OFF; BEGIN", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(raw, "INSERT OR REPLACE INTO rooms VALUES "
			       "(?1, ?2, ?3, ?4, ?5)", -1, &ins,
			       NULL) != SQLITE_OK)
		abort();
	for (int row = 0; row < 32 && pos < size; row++) {
		bool all = true;

		sqlite3_reset(ins);
		sqlite3_clear_bindings(ins);
		for (int c = 1; c <= 5 && all; c++)
			all = bind_one(ins, c, data, size, &pos);
		(void)sqlite3_step(ins); /* may break a constraint */
	}
	sqlite3_finalize(ins);
	if (sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	sqlite3_close(raw);

	wh_sigsrv_opts_default(&o);
	o.max_rooms = MAX_ROOMS;
	o.max_sources = 16;
	memset(&l, 0, sizeof(l));
	if (wh_sigsrv_new(&o, NULL, &l.srv) != 0)
		abort();
	rv = wh_sigdb_load(db, NOW_MS, restore, &l);
	if (rv < -4095 || rv > 32)
		abort();
	if (wh_sigsrv_nrooms(l.srv) > MAX_ROOMS)
		abort();
	for (unsigned i = 0; i < l.n; i++) {
		const struct wh_sig_room *r =
			wh_sigsrv_find(l.srv, l.rooms[i].room, NOW_MS);

		if (!r || r->expires_ms <= NOW_MS)
			abort();
	}
	wh_sigsrv_expire(l.srv, UINT64_MAX);
	if (wh_sigsrv_nrooms(l.srv) != 0)
		abort();
	wh_sigsrv_del(l.srv);
	wh_sigdb_close(db);
	return 0;
}
