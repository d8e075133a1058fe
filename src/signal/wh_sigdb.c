/* wh_sigdb.c - the signal server's rooms in SQLite. */
#include "signal/wh_sigdb.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"
#include "common/wh_log.h"

#define ADDR_BLOB 19 /* family, port (2), ip (16) */

struct wh_sigdb {
	sqlite3 *db;
	sqlite3_stmt *put, *del;
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS rooms ("
	" room BLOB PRIMARY KEY,"
	" token_hash BLOB NOT NULL,"
	" host BLOB NOT NULL,"
	" cands BLOB NOT NULL,"
	" expires_ms INTEGER NOT NULL);";

static void addr_pack(const struct wh_sig_addr *a, uint8_t *p)
{
	p[0] = a->family;
	p[1] = (uint8_t)(a->port >> 8);
	p[2] = (uint8_t)a->port;
	memcpy(p + 3, a->ip, 16);
}

static bool addr_unpack(const uint8_t *p, struct wh_sig_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = p[0];
	a->port = (uint16_t)(p[1] << 8 | p[2]);
	memcpy(a->ip, p + 3, 16);
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

int wh_sigdb_open(const char *path, struct wh_sigdb **pdb)
{
	struct wh_sigdb *d = calloc(1, sizeof(*d));
	char *msg = NULL;

	if (!d)
		return -ENOMEM;
	if (sqlite3_open(path, &d->db) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(d->db, 2000);
	if (sqlite3_exec(d->db, schema, NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(d->db,
			       "INSERT OR REPLACE INTO rooms VALUES "
			       "(?1, ?2, ?3, ?4, ?5)", -1, &d->put,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(d->db, "DELETE FROM rooms WHERE room = ?1", -1,
			       &d->del, NULL) != SQLITE_OK)
		goto fail;
	*pdb = d;
	return 0;
fail:
	wh_err("signal database '%s': %s", path,
	       msg ? msg : d->db ? sqlite3_errmsg(d->db) : "cannot open");
	sqlite3_free(msg);
	wh_sigdb_close(d);
	return -EIO;
}

void wh_sigdb_close(struct wh_sigdb *d)
{
	if (!d)
		return;
	sqlite3_finalize(d->put);
	sqlite3_finalize(d->del);
	sqlite3_close(d->db);
	free(d);
}

int wh_sigdb_load(struct wh_sigdb *d, uint64_t now_ms,
		  int (*fn)(void *ud, const struct wh_sig_room *r), void *ud)
{
	sqlite3_stmt *st = NULL;
	int n = 0, rc;

	if (sqlite3_prepare_v2(d->db, "DELETE FROM rooms WHERE expires_ms <= ?1",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
	sqlite3_step(st);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(d->db, "SELECT room, token_hash, host, cands, "
			       "expires_ms FROM rooms", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wh_sig_room r;
		const uint8_t *cands = sqlite3_column_blob(st, 3);
		int clen = sqlite3_column_bytes(st, 3);
		bool ok = true;

		memset(&r, 0, sizeof(r));
		if (sqlite3_column_bytes(st, 0) != WH_SIG_ROOM_LEN ||
		    sqlite3_column_bytes(st, 1) != WH_SIG_TOKEN_LEN ||
		    sqlite3_column_bytes(st, 2) != ADDR_BLOB ||
		    clen % ADDR_BLOB != 0 ||
		    clen / ADDR_BLOB > WH_SIG_MAX_CANDS)
			continue; /* not ours: skip the row */
		memcpy(r.room, sqlite3_column_blob(st, 0), WH_SIG_ROOM_LEN);
		memcpy(r.token_hash, sqlite3_column_blob(st, 1),
		       WH_SIG_TOKEN_LEN);
		ok = addr_unpack(sqlite3_column_blob(st, 2), &r.host);
		r.ncand = (uint8_t)(clen / ADDR_BLOB);
		for (unsigned i = 0; i < r.ncand; i++)
			ok = ok && addr_unpack(cands + i * ADDR_BLOB,
					       &r.cand[i]);
		r.expires_ms = (uint64_t)sqlite3_column_int64(st, 4);
		if (ok && fn(ud, &r) == 0)
			n++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : -EIO;
}

static int db_put(void *ud, const struct wh_sig_room *r)
{
	struct wh_sigdb *d = ud;
	uint8_t host[ADDR_BLOB], cands[ADDR_BLOB * WH_SIG_MAX_CANDS];
	int rc;

	addr_pack(&r->host, host);
	for (unsigned i = 0; i < r->ncand; i++)
		addr_pack(&r->cand[i], cands + i * ADDR_BLOB);
	sqlite3_reset(d->put);
	sqlite3_bind_blob(d->put, 1, r->room, WH_SIG_ROOM_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(d->put, 2, r->token_hash, WH_SIG_TOKEN_LEN,
			  SQLITE_STATIC);
	sqlite3_bind_blob(d->put, 3, host, sizeof(host), SQLITE_STATIC);
	sqlite3_bind_blob(d->put, 4, cands, (int)(r->ncand * ADDR_BLOB),
			  SQLITE_STATIC);
	sqlite3_bind_int64(d->put, 5, (sqlite3_int64)r->expires_ms);
	rc = sqlite3_step(d->put);
	sqlite3_reset(d->put);
	if (rc != SQLITE_DONE) {
		wh_warn("signal database: cannot store a room: %s",
			sqlite3_errmsg(d->db));
		return -EIO;
	}
	return 0;
}

static void db_del(void *ud, const uint8_t room[WH_SIG_ROOM_LEN])
{
	struct wh_sigdb *d = ud;

	sqlite3_reset(d->del);
	sqlite3_bind_blob(d->del, 1, room, WH_SIG_ROOM_LEN, SQLITE_STATIC);
	if (sqlite3_step(d->del) != SQLITE_DONE)
		wh_warn("signal database: cannot delete a room: %s",
			sqlite3_errmsg(d->db));
	sqlite3_reset(d->del);
}

void wh_sigdb_store(struct wh_sigdb *d, struct wh_sigsrv_store *st)
{
	st->ud = d;
	st->put = db_put;
	st->del = db_del;
}
