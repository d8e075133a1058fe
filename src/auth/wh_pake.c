/*
 * wh_pake.c - CPace over ristretto255, bound to the TLS session.
 *
 * Construction (docs/PROTOCOL.md, "Authentication"):
 *   lv(x)      = one byte length of x, then x
 *   G          = ristretto255_from_hash(SHA-512("wormhole-cpace-v1" ||
 *                lv(code) || lv(sid)))        code: canonical join code
 *                                             sid: 32-byte TLS exporter
 *   y          = random scalar; msg = y*G     (32 bytes each way)
 *   K          = y * peer_msg                 (identity or invalid: fail)
 *   key        = BLAKE2b-256("wormhole-isk-v1" || lv(sid) || client_msg ||
 *                host_msg || K)
 *   host_tag   = HMAC-SHA-256(key, "host" || client_msg || host_msg)
 *   client_tag = HMAC-SHA-256(key, "client" || client_msg || host_msg)
 * Both sides learn the same key only if they used the same code and the
 * same sid; the tags prove it both ways.  A man in the middle holds two
 * TLS sessions with two sids, hence two generators: one guess per
 * connection at most.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "auth/wh_pake.h"
#include "common/wh_err.h"

enum { ST_NONE = 0, ST_STARTED, ST_FINISHED, ST_VERIFIED };

static void hash_lv(crypto_hash_sha512_state *st, const void *p, size_t n)
{
	uint8_t len = (uint8_t)n;

	crypto_hash_sha512_update(st, &len, 1);
	crypto_hash_sha512_update(st, p, n);
}

int wh_pake_start(struct wh_pake *p, enum wh_pake_role role,
		  const char *code, const uint8_t *sid, size_t sid_len,
		  uint8_t msg_out[static WH_PAKE_MSG_BYTES])
{
	static const char dst[] = "wormhole-cpace-v1";
	crypto_hash_sha512_state st;
	uint8_t h[crypto_hash_sha512_BYTES], g[32];
	size_t code_len;

	if (!p || !code || !sid || sid_len == 0 || sid_len > sizeof(p->sid) ||
	    (role != WH_PAKE_CLIENT && role != WH_PAKE_HOST))
		return -EINVAL;
	code_len = strlen(code);
	if (code_len == 0 || code_len > 255 || sodium_init() < 0)
		return -EINVAL;
	sodium_memzero(p, sizeof(*p));
	p->role = role;
	memcpy(p->sid, sid, sid_len);
	p->sid_len = sid_len;

	crypto_hash_sha512_init(&st);
	crypto_hash_sha512_update(&st, (const uint8_t *)dst, sizeof(dst) - 1);
	hash_lv(&st, code, code_len);
	hash_lv(&st, sid, sid_len);
	crypto_hash_sha512_final(&st, h);
	crypto_core_ristretto255_from_hash(g, h);
	crypto_core_ristretto255_scalar_random(p->scalar);
	if (crypto_scalarmult_ristretto255(p->my_msg, p->scalar, g) != 0) {
		sodium_memzero(h, sizeof(h));
		sodium_memzero(g, sizeof(g));
		wh_pake_wipe(p);
		return -EINVAL;
	}
	sodium_memzero(h, sizeof(h));
	sodium_memzero(g, sizeof(g));
	sodium_memzero(&st, sizeof(st));
	memcpy(msg_out, p->my_msg, WH_PAKE_MSG_BYTES);
	p->state = ST_STARTED;
	return 0;
}

static void tag(const uint8_t key[32], const char *label, const uint8_t *cm,
		const uint8_t *hm, uint8_t out[WH_PAKE_TAG_BYTES])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, 32);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label,
				      strlen(label));
	crypto_auth_hmacsha256_update(&st, cm, WH_PAKE_MSG_BYTES);
	crypto_auth_hmacsha256_update(&st, hm, WH_PAKE_MSG_BYTES);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

int wh_pake_finish(struct wh_pake *p,
		   const uint8_t peer_msg[static WH_PAKE_MSG_BYTES],
		   uint8_t tag_out[static WH_PAKE_TAG_BYTES])
{
	static const char dst[] = "wormhole-isk-v1";
	crypto_generichash_state st;
	const uint8_t *cm, *hm;
	uint8_t k[32], len;

	if (!p || p->state != ST_STARTED)
		return -EINVAL;
	if (!crypto_core_ristretto255_is_valid_point(peer_msg) ||
	    crypto_scalarmult_ristretto255(k, p->scalar, peer_msg) != 0) {
		sodium_memzero(k, sizeof(k));
		return WH_ERR_AUTH;
	}
	memcpy(p->peer_msg, peer_msg, WH_PAKE_MSG_BYTES);
	cm = p->role == WH_PAKE_CLIENT ? p->my_msg : p->peer_msg;
	hm = p->role == WH_PAKE_CLIENT ? p->peer_msg : p->my_msg;

	crypto_generichash_init(&st, NULL, 0, WH_PAKE_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)dst, sizeof(dst) - 1);
	len = (uint8_t)p->sid_len;
	crypto_generichash_update(&st, &len, 1);
	crypto_generichash_update(&st, p->sid, p->sid_len);
	crypto_generichash_update(&st, cm, WH_PAKE_MSG_BYTES);
	crypto_generichash_update(&st, hm, WH_PAKE_MSG_BYTES);
	crypto_generichash_update(&st, k, sizeof(k));
	crypto_generichash_final(&st, p->key, WH_PAKE_KEY_BYTES);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(&st, sizeof(st));

	tag(p->key, p->role == WH_PAKE_HOST ? "host" : "client", cm, hm,
	    p->my_tag);
	tag(p->key, p->role == WH_PAKE_HOST ? "client" : "host", cm, hm,
	    p->peer_tag);
	sodium_memzero(p->scalar, sizeof(p->scalar));
	memcpy(tag_out, p->my_tag, WH_PAKE_TAG_BYTES);
	p->state = ST_FINISHED;
	return 0;
}

int wh_pake_verify(struct wh_pake *p,
		   const uint8_t peer_tag[static WH_PAKE_TAG_BYTES])
{
	if (!p || p->state != ST_FINISHED)
		return -EINVAL;
	if (sodium_memcmp(p->peer_tag, peer_tag, WH_PAKE_TAG_BYTES) != 0)
		return WH_ERR_AUTH;
	p->state = ST_VERIFIED;
	return 0;
}

void wh_pake_wipe(struct wh_pake *p)
{
	if (p)
		sodium_memzero(p, sizeof(*p));
}
