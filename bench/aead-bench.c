/*
 * aead-bench.c - CPU per QUIC packet of AES-128-GCM (1,452-byte packets,
 * a 20-byte header as associated data, encrypted in place as ngtcp2 does)
 * in the libraries Debian offers: the GnuTLS call ngtcp2_crypto_gnutls
 * makes (gnutls_aead_cipher_encrypt/decrypt), GnuTLS's lower-level
 * cipher calls, nettle's gcm_aes128 and OpenSSL's EVP; and the header
 * protection mask (one AES block) as ngtcp2_crypto_gnutls computes it.
 *
 *     cc -O2 bench/aead-bench.c -o aead-bench -lgnutls -lnettle -lcrypto
 *     ./aead-bench [packets per round]
 *
 * Prints, per call, the least thread CPU time of 7 rounds (the machine is
 * shared: the least is the one the neighbours disturbed least).  Each
 * contestant's output is checked against GnuTLS's, so a wrong call shows.
 * Not built by CMake: nettle-dev and libssl-dev are not dependencies of
 * wormhole (bench/README.md, "The packet's AES-GCM").
 */
#define _POSIX_C_SOURCE 200809L
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/gcm.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEN 1452 /* payload of a full packet */
#define AD 20	 /* a short header with a 16-byte connection ID */
#define TAG 16
#define ROUNDS 7

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t key[16] = { 0x1f, 0x36, 0x96, 0x13, 0xdd, 0x76, 0xd5, 0x46 };
static uint8_t ad[AD], pkt[LEN + TAG], ref[LEN + TAG], plain[LEN];
static gnutls_aead_cipher_hd_t aead;
static gnutls_cipher_hd_t gc, hp;
static struct gcm_aes128_ctx ng;
static EVP_CIPHER_CTX *oe, *od;

static void nonce(uint8_t iv[12], unsigned i)
{
	memset(iv, 0x5a, 12);
	iv[8] ^= (uint8_t)(i >> 24);
	iv[9] ^= (uint8_t)(i >> 16);
	iv[10] ^= (uint8_t)(i >> 8);
	iv[11] ^= (uint8_t)i;
}

static void g_aead_enc(unsigned i)
{
	uint8_t iv[12];
	size_t n = sizeof(pkt);

	nonce(iv, i);
	if (gnutls_aead_cipher_encrypt(aead, iv, 12, ad, AD, TAG, pkt, LEN,
				       pkt, &n) != 0 || n != LEN + TAG)
		abort();
}

static void g_aead_dec(unsigned i)
{
	uint8_t iv[12];
	size_t n = sizeof(pkt);

	nonce(iv, i);
	if (gnutls_aead_cipher_decrypt(aead, iv, 12, ad, AD, TAG, pkt,
				       LEN + TAG, pkt, &n) != 0)
		abort();
}

static void g_cipher_enc(unsigned i)
{
	uint8_t iv[12];

	nonce(iv, i);
	gnutls_cipher_set_iv(gc, iv, 12);
	gnutls_cipher_add_auth(gc, ad, AD);
	gnutls_cipher_encrypt2(gc, pkt, LEN, pkt, LEN);
	gnutls_cipher_tag(gc, pkt + LEN, TAG);
}

static void n_enc(unsigned i)
{
	uint8_t iv[12];

	nonce(iv, i);
	gcm_aes128_set_iv(&ng, 12, iv);
	gcm_aes128_update(&ng, AD, ad);
	gcm_aes128_encrypt(&ng, LEN, pkt, pkt);
	gcm_aes128_digest(&ng, TAG, pkt + LEN);
}

static void n_dec(unsigned i)
{
	uint8_t iv[12], tag[TAG];

	nonce(iv, i);
	gcm_aes128_set_iv(&ng, 12, iv);
	gcm_aes128_update(&ng, AD, ad);
	gcm_aes128_decrypt(&ng, LEN, pkt, pkt);
	gcm_aes128_digest(&ng, TAG, tag);
	if (memcmp(tag, pkt + LEN, TAG) != 0)
		abort();
}

static void o_enc(unsigned i)
{
	uint8_t iv[12];
	int n;

	nonce(iv, i);
	EVP_EncryptInit_ex(oe, NULL, NULL, NULL, iv);
	EVP_EncryptUpdate(oe, NULL, &n, ad, AD);
	EVP_EncryptUpdate(oe, pkt, &n, pkt, LEN);
	EVP_EncryptFinal_ex(oe, pkt + n, &n);
	EVP_CIPHER_CTX_ctrl(oe, EVP_CTRL_GCM_GET_TAG, TAG, pkt + LEN);
}

static void o_dec(unsigned i)
{
	uint8_t iv[12];
	int n;

	nonce(iv, i);
	EVP_DecryptInit_ex(od, NULL, NULL, NULL, iv);
	EVP_DecryptUpdate(od, NULL, &n, ad, AD);
	EVP_DecryptUpdate(od, pkt, &n, pkt, LEN);
	EVP_CIPHER_CTX_ctrl(od, EVP_CTRL_GCM_SET_TAG, TAG, pkt + LEN);
	if (EVP_DecryptFinal_ex(od, pkt + n, &n) != 1)
		abort();
}

static void g_hp(unsigned i)
{
	/* ngtcp2_crypto_gnutls: one AES-ECB block as CBC with a zero IV */
	uint8_t iv[16] = { 0 }, out[16];

	pkt[0] = (uint8_t)i;
	gnutls_cipher_set_iv(hp, iv, 16);
	gnutls_cipher_encrypt2(hp, pkt, 16, out, 16);
	pkt[1] = out[0];
}

/* run - |f| on |n| packets, ROUNDS times; the least ns per packet.
 * |enc|: each packet starts as the plaintext; the result of packet 0 is
 * compared with GnuTLS's (|ref|).  A decrypting |f| starts from |ref|. */
static double run(void (*f)(unsigned), unsigned n, int enc, int check)
{
	double best = 1e30;

	for (int r = 0; r < ROUNDS; r++) {
		double t0 = cpu_now(), t;

		for (unsigned i = 0; i < n; i++) {
			if (enc) {
				memcpy(pkt, plain, LEN);
			} else {
				memcpy(pkt, ref, LEN + TAG);
			}
			f(0);
		}
		t = (cpu_now() - t0) / n * 1e9;
		if (t < best)
			best = t;
	}
	if (check && memcmp(pkt, enc ? ref : plain,
			    enc ? LEN + TAG : LEN) != 0) {
		fprintf(stderr, "aead-bench: wrong output\n");
		exit(1);
	}
	return best;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 200000;
	gnutls_datum_t k = { key, 16 };
	uint8_t iv[16] = { 0 };
	double copy;

	for (int i = 0; i < LEN; i++)
		plain[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < AD; i++)
		ad[i] = (uint8_t)(0x40 + i);
	if (gnutls_aead_cipher_init(&aead, GNUTLS_CIPHER_AES_128_GCM, &k) ||
	    gnutls_cipher_init(&gc, GNUTLS_CIPHER_AES_128_GCM, &k,
			       &(gnutls_datum_t){ iv, 12 }) ||
	    gnutls_cipher_init(&hp, GNUTLS_CIPHER_AES_128_CBC, &k,
			       &(gnutls_datum_t){ iv, 16 }))
		return 1;
	gcm_aes128_set_key(&ng, key);
	oe = EVP_CIPHER_CTX_new();
	od = EVP_CIPHER_CTX_new();
	EVP_EncryptInit_ex(oe, EVP_aes_128_gcm(), NULL, key, NULL);
	EVP_DecryptInit_ex(od, EVP_aes_128_gcm(), NULL, key, NULL);
	memcpy(pkt, plain, LEN);
	g_aead_enc(0);
	memcpy(ref, pkt, LEN + TAG);

	copy = run(g_hp, n, 1, 0); /* the memcpy each round makes, and HP */
	printf("%u packets of %d bytes, least of %d rounds, ns a packet "
	       "(the plaintext copy each takes included):\n", n, LEN, ROUNDS);
	printf("  header protection mask (GnuTLS AES-CBC block)  %6.0f\n",
	       copy);
	printf("  GnuTLS gnutls_aead_cipher_encrypt (ngtcp2's)   %6.0f\n",
	       run(g_aead_enc, n, 1, 1));
	printf("  GnuTLS gnutls_aead_cipher_decrypt (ngtcp2's)   %6.0f\n",
	       run(g_aead_dec, n, 0, 1));
	printf("  GnuTLS gnutls_cipher_* (set_iv, auth, tag)     %6.0f\n",
	       run(g_cipher_enc, n, 1, 1));
	printf("  nettle gcm_aes128 encrypt                      %6.0f\n",
	       run(n_enc, n, 1, 1));
	printf("  nettle gcm_aes128 decrypt                      %6.0f\n",
	       run(n_dec, n, 0, 1));
	printf("  OpenSSL EVP aes-128-gcm encrypt                %6.0f\n",
	       run(o_enc, n, 1, 1));
	printf("  OpenSSL EVP aes-128-gcm decrypt                %6.0f\n",
	       run(o_dec, n, 0, 1));
	EVP_CIPHER_CTX_free(oe);
	EVP_CIPHER_CTX_free(od);
	gnutls_cipher_deinit(hp);
	gnutls_cipher_deinit(gc);
	gnutls_aead_cipher_deinit(aead);
	return 0;
}
