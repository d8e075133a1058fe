/*
 * fuzz_rdv.c - the client's side of the rendezvous (wh_rdv_client, what
 * wh_rdv_join runs) against a hostile signal server and hostile peers:
 * datagrams of any bytes from the server's address or elsewhere, and
 * well-formed PEERS, ERROR, PUNCH and other replies with the join's
 * transaction id or another, between steps of time.  What must hold:
 *  - what it sends decodes: JOIN only to the server and only before
 *    PEERS, PUNCH only after it, only to the host's candidates of the
 *    server's family, with our room and transaction; the ack of a probe
 *    goes back to where the probe came from; nothing once it ended;
 *  - it ends with a path only on a PUNCH of this join (room and txn), and
 *    that PUNCH's source is the path; with -ENOENT / -EBUSY only on an
 *    ERROR with this txn from the server's address; with WH_ERR_TIMEOUT
 *    or -EHOSTUNREACH only when its time ran out; always with a sentence.
 *
 * Input: u8 setup (bit 0: the server is IPv6; bits 1-7: timeout / 100 ms),
 * then operations, each an opcode byte (low 3 bits the kind, bit 3: use
 * another txn, bit 4: another room / a source other than the server):
 *   0  time passes: u16 ms
 *   1  a raw datagram: u8 length, bytes
 *   2  PEERS: u8 ncand, then per address u8 family bit, u16 port, 16 bytes
 *   3  ERROR: u8 code
 *   4  PUNCH: u8 source (an index into the host's candidates, or other
 *      addresses), u8 ack
 *   5  REGISTERED / PEER_JOIN / JOIN with our txn: u8 type
 * anything else ends the input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "proto/wh_sig.h"
#include "signal/wh_rendezvous.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char code[] = "7KJM-XBCD-QRST-VWYZ";

struct fz {
	struct sockaddr_storage sig;
	socklen_t siglen;
	uint8_t room[WH_SIG_ROOM_LEN];
	uint8_t txn[WH_SIG_TXN_LEN];
	bool have_txn;
	bool ended;
	bool peers; /* a PEERS it must have taken came */
	struct wh_sig_msg pm; /* that PEERS */
	uint64_t now, deadline, punch_end;
	/* the PUNCH probe being delivered, whose ack may go out now */
	const struct sockaddr *probe_from;
	socklen_t probe_fromlen;
	bool acked;
};

static struct fz z;

static bool sa_same(const struct sockaddr *a, const struct sockaddr *b)
{
	struct wh_sig_addr x, y;

	return wh_sig_addr_from_sa(a, &x) == 0 &&
	       wh_sig_addr_from_sa(b, &y) == 0 && wh_sig_addr_eq(&x, &y);
}

static int on_send(void *ud, const struct sockaddr *to, socklen_t tolen,
		   const void *data, size_t len)
{
	struct wh_sig_msg m;
	struct wh_sig_addr a;

	(void)ud;
	(void)tolen;
	if (z.ended)
		abort(); /* it sends after it ended */
	if (wh_sig_decode(data, len, &m) != 0)
		abort();
	if (m.type == WH_SIG_JOIN) {
		if (!sa_same(to, (struct sockaddr *)&z.sig) || z.peers)
			abort();
		if (memcmp(m.room, z.room, sizeof(z.room)))
			abort();
		if (z.have_txn && memcmp(m.txn, z.txn, sizeof(z.txn)))
			abort(); /* the txn changed */
		memcpy(z.txn, m.txn, sizeof(z.txn));
		z.have_txn = true;
		return 0;
	}
	if (m.type != WH_SIG_PUNCH || !z.have_txn ||
	    memcmp(m.txn, z.txn, sizeof(z.txn)) ||
	    memcmp(m.room, z.room, sizeof(z.room)))
		abort();
	if (m.ack) {
		/* the answer to the probe being delivered, to its source */
		if (!z.probe_from || z.acked ||
		    !sa_same(to, z.probe_from))
			abort();
		z.acked = true;
		return 0;
	}
	if (!z.peers || to->sa_family != z.sig.ss_family ||
	    wh_sig_addr_from_sa(to, &a) != 0)
		abort();
	for (unsigned i = 0; i < z.pm.ncand; i++) {
		/* a candidate given as v4-mapped IPv6 is sent to as such and
		 * reads back as IPv4: compare the addresses, not spellings */
		struct sockaddr_storage ss;

		wh_sig_addr_to_sa(&z.pm.cand[i], &ss);
		if (sa_same(to, (struct sockaddr *)&ss))
			return 0;
	}
	abort(); /* a PUNCH to an address the host did not give */
}

static void check_end(struct wh_rdv_client *c, int rv)
{
	const char *e;

	if (rv == 0)
		return;
	z.ended = true;
	if (rv == 1)
		return;
	e = wh_rdv_client_error(c);
	if (!e || !e[0])
		abort();
}

static socklen_t make_addr(struct sockaddr_storage *ss, bool v6,
			   const uint8_t *ip, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		memcpy(&a->sin6_addr, ip, 16);
		return sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		memcpy(&a->sin_addr, ip, 4);
		return sizeof(*a);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t lo6[16] = { [15] = 1 }, lo4[4] = { 127, 0, 0, 1 },
			     other4[4] = { 192, 0, 2, 7 };
	struct wh_rdv_client *c;
	struct sockaddr_storage other;
	socklen_t otherlen;
	uint8_t token[WH_SIG_TOKEN_LEN];
	struct wh_sig_addr mine = { .family = 4, .port = 5000,
				    .ip = { 10, 0, 0, 9 } };
	bool v6;
	int timeout_ms, rv;
	size_t off = 1;

	if (size < 1)
		return 0;
	wh_log_set_level(getenv("FUZZ_VERBOSE") ? WH_LOG_DEBUG
						: WH_LOG_ERROR);
	memset(&z, 0, sizeof(z));
	v6 = data[0] & 1;
	z.siglen = make_addr(&z.sig, v6, v6 ? lo6 : lo4, 7700);
	otherlen = make_addr(&other, false, other4, 7700);
	if (wh_rdv_derive(code, z.room, token) != 0)
		abort();
	timeout_ms = (data[0] >> 1) * 100;
	z.now = 1000 * WH_NS_PER_MS;
	z.deadline = z.now + (uint64_t)timeout_ms * WH_NS_PER_MS;
	if (wh_rdv_client_new(code, (struct sockaddr *)&z.sig, z.siglen,
			      &mine, 1, timeout_ms, z.now, on_send, NULL,
			      &c) != 0)
		abort();
	rv = wh_rdv_client_tick(c, z.now);
	check_end(c, rv);
	if (!rv && !z.have_txn)
		abort(); /* the first tick sends JOIN */

	while (off < size && !z.ended) {
		uint8_t op = data[off++], kind = op & 7;
		bool wrong_txn = op & 8, elsewhere = op & 16;
		const struct sockaddr *from = elsewhere
						      ? (struct sockaddr *)&other
						      : (struct sockaddr *)&z.sig;
		socklen_t fromlen = elsewhere ? otherlen : z.siglen;
		struct sockaddr_storage src;
		uint8_t buf[WH_SIG_MAX_DGRAM];
		struct wh_sig_msg m;
		int n = -1;

		memset(&m, 0, sizeof(m));
		memcpy(m.txn, z.txn, sizeof(m.txn));
		if (wrong_txn)
			m.txn[0] ^= 0x80;
		switch (kind) {
		case 0: {
			uint64_t ms;

			if (size - off < 2)
				goto done;
			ms = (uint64_t)data[off] << 8 | data[off + 1];
			off += 2;
			z.now += ms * WH_NS_PER_MS;
			rv = wh_rdv_client_tick(c, z.now);
			if ((rv == WH_ERR_TIMEOUT &&
			     (z.peers || z.now < z.deadline)) ||
			    (rv == -EHOSTUNREACH && !z.peers) ||
			    (rv == -EHOSTUNREACH && z.now < z.punch_end &&
			     z.now < z.deadline) ||
			    (rv && rv != WH_ERR_TIMEOUT &&
			     rv != -EHOSTUNREACH))
				abort();
			check_end(c, rv);
			if (wh_rdv_client_timeout_ms(c, z.now) < 0)
				abort();
			continue;
		}
		case 1: {
			size_t len;

			if (size - off < 1)
				goto done;
			len = data[off++];
			if (len > size - off)
				len = size - off;
			rv = wh_rdv_client_input(c, z.now, data + off, len, from,
						 fromlen);
			off += len;
			/* raw bytes carry some txn; only a path or an ERROR
			 * from the server may end it */
			if (rv && rv != 1 && rv != -ENOENT && rv != -EBUSY)
				abort();
			if ((rv == -ENOENT || rv == -EBUSY) && elsewhere)
				abort();
			check_end(c, rv);
			continue;
		}
		case 2:
			if (size - off < 1)
				goto done;
			m.type = WH_SIG_PEERS;
			m.refl = mine;
			m.ncand = data[off++] % (WH_SIG_MAX_CANDS + 1);
			for (unsigned i = 0; i < m.ncand; i++) {
				struct wh_sig_addr *a = &m.cand[i];

				if (size - off < 19)
					goto done;
				a->family = (data[off] & 1) ? 6 : 4;
				a->port = (uint16_t)(data[off + 1] << 8 |
						     data[off + 2]);
				memcpy(a->ip, data + off + 3, 16);
				if (a->family == 4)
					memset(a->ip + 4, 0, 12);
				off += 19;
			}
			break;
		case 3:
			if (size - off < 1)
				goto done;
			m.type = WH_SIG_ERROR;
			m.code = data[off++];
			break;
		case 4: {
			uint8_t k;

			if (size - off < 2)
				goto done;
			m.type = WH_SIG_PUNCH;
			memcpy(m.room, z.room, sizeof(m.room));
			if (elsewhere)
				m.room[3] ^= 1;
			k = data[off];
			m.ack = data[off + 1] & 1;
			off += 2;
			if (z.peers && k < z.pm.ncand) {
				fromlen = wh_sig_addr_to_sa(&z.pm.cand[k], &src);
				from = (struct sockaddr *)&src;
			} else if (k & 1) {
				from = (struct sockaddr *)&other;
				fromlen = otherlen;
			} else {
				from = (struct sockaddr *)&z.sig;
				fromlen = z.siglen;
			}
			break;
		}
		case 5:
			if (size - off < 1)
				goto done;
			m.type = (uint8_t)(1 + data[off++] % 8);
			if (m.type == WH_SIG_PEERS || m.type == WH_SIG_PUNCH ||
			    m.type == WH_SIG_ERROR)
				m.type = WH_SIG_REGISTERED;
			m.refl = mine;
			m.ttl_s = 60;
			memcpy(m.room, z.room, sizeof(m.room));
			break;
		default:
			goto done;
		}
		n = wh_sig_encode(&m, buf, sizeof(buf));
		if (n < 0)
			continue; /* not a datagram (a port 0, say) */
		z.probe_from = m.type == WH_SIG_PUNCH && !m.ack ? from : NULL;
		z.probe_fromlen = fromlen;
		z.acked = false;
		rv = wh_rdv_client_input(c, z.now, buf, (size_t)n, from,
					 fromlen);
		switch (m.type) {
		case WH_SIG_PUNCH: {
			bool ours = !wrong_txn && !elsewhere;
			socklen_t pl;
			const struct sockaddr *p;

			if (rv != (ours ? 1 : 0))
				abort();
			if (ours && !m.ack && !z.acked)
				abort(); /* a probe not answered */
			if (!ours)
				break;
			p = wh_rdv_client_peer(c, &pl);
			if (!p || pl != fromlen || !sa_same(p, from))
				abort();
			break;
		}
		case WH_SIG_ERROR:
			if (wrong_txn || elsewhere) {
				if (rv != 0)
					abort();
			} else if (rv != (m.code == WH_SIGE_NOROOM ? -ENOENT
								   : -EBUSY)) {
				abort();
			}
			break;
		case WH_SIG_PEERS:
			if (rv != 0)
				abort();
			if (!wrong_txn && !elsewhere && !z.peers) {
				z.peers = true;
				z.pm = m;
				z.punch_end = z.now +
					      WH_RDV_PUNCH_MS * WH_NS_PER_MS;
			}
			break;
		default:
			if (rv != 0)
				abort();
			break;
		}
		z.probe_from = NULL;
		check_end(c, rv);
	}
done:
	if (!z.ended) {
		/* time runs out */
		z.now += (uint64_t)(timeout_ms + WH_RDV_PUNCH_MS + 1) *
			 WH_NS_PER_MS;
		rv = wh_rdv_client_tick(c, z.now);
		if (rv != (z.peers ? -EHOSTUNREACH : WH_ERR_TIMEOUT))
			abort();
		check_end(c, rv);
		if (wh_rdv_client_tick(c, z.now + 1) != rv)
			abort(); /* it stays ended */
	}
	wh_rdv_client_del(c);
	return 0;
}
