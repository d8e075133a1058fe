/*
 * wh_pake.h - the join-code PAKE: CPace over ristretto255 (libsodium),
 * bound to the TLS session by using the TLS exporter as CPace's session id.
 *
 * Both sides derive a generator G from the canonical join code and the
 * session id, pick a random scalar, exchange scalar*G (32 bytes each way),
 * and derive a shared key from the Diffie-Hellman result and the transcript.
 * Each side then proves it holds the key with a MAC over the transcript
 * (a key confirmation tag, different for host and client).  A man in the
 * middle has two different TLS sessions, hence two different generators,
 * and can test at most one guess of the code per connection.
 *
 * Flow:
 *   client: wh_pake_start(CLIENT) -> send msg (in HELLO)
 *   host:   wh_pake_start(HOST); wh_pake_finish(client msg) -> send msg and
 *           its confirm tag (in HELLO_ACK)
 *   client: wh_pake_finish(host msg); wh_pake_verify(host tag) (fails with
 *           WH_ERR_AUTH on a wrong code) -> send its own tag (in AUTH)
 *   host:   wh_pake_verify(client tag) -> AUTH_OK, or ERROR and count a
 *           failed attempt.
 *
 * The struct is embedded by the caller; wh_pake_wipe() erases all secrets
 * and must be called when done, on success or failure.
 */
#ifndef WH_PAKE_H
#define WH_PAKE_H

#include <stddef.h>
#include <stdint.h>

#define WH_PAKE_MSG_BYTES 32
#define WH_PAKE_TAG_BYTES 32
#define WH_PAKE_KEY_BYTES 32

enum wh_pake_role {
	WH_PAKE_CLIENT = 0,
	WH_PAKE_HOST = 1,
};

struct wh_pake {
	enum wh_pake_role role;
	int state;
	uint8_t scalar[32];
	uint8_t sid[64];
	size_t sid_len;
	uint8_t my_msg[WH_PAKE_MSG_BYTES];
	uint8_t peer_msg[WH_PAKE_MSG_BYTES];
	uint8_t key[WH_PAKE_KEY_BYTES]; /* shared key, after finish */
	uint8_t my_tag[WH_PAKE_TAG_BYTES];
	uint8_t peer_tag[WH_PAKE_TAG_BYTES]; /* expected tag of the peer */
};

/*
 * wh_pake_start - begin a run.  |code| is the canonical join code (from
 * wh_code_parse/generate); |sid| is the session id (the TLS exporter
 * output, 1..64 bytes).  Writes our 32-byte message to |msg_out|.
 * Returns 0, or -EINVAL on bad arguments.
 */
int wh_pake_start(struct wh_pake *p, enum wh_pake_role role,
		  const char *code, const uint8_t *sid, size_t sid_len,
		  uint8_t msg_out[static WH_PAKE_MSG_BYTES]);

/*
 * wh_pake_finish - take the peer's message, derive the shared key and our
 * confirmation tag (written to |tag_out|).  Returns 0, or WH_ERR_AUTH if
 * the peer's message is not a valid group element (or is the identity).
 */
int wh_pake_finish(struct wh_pake *p,
		   const uint8_t peer_msg[static WH_PAKE_MSG_BYTES],
		   uint8_t tag_out[static WH_PAKE_TAG_BYTES]);

/*
 * wh_pake_verify - check the peer's confirmation tag in constant time.
 * Returns 0 if the peer knows the same code, WH_ERR_AUTH if not.
 */
int wh_pake_verify(struct wh_pake *p,
		   const uint8_t peer_tag[static WH_PAKE_TAG_BYTES]);

/* wh_pake_wipe - erase every secret in |p| (safe on a zeroed struct). */
void wh_pake_wipe(struct wh_pake *p);

#endif /* WH_PAKE_H */
