/* wh_tls.c - TLS settings shared by both transports. */
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "net/wh_tls.h"

#define TLS_PRIORITY_BASE                                                    \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"            \
	"+CHACHA20-POLY1305:+AES-256-GCM:-GROUP-ALL:+GROUP-X25519:"          \
	"+GROUP-SECP256R1"

const char *wh_tls_priority(int tcp)
{
	return tcp ? TLS_PRIORITY_BASE
		   : TLS_PRIORITY_BASE ":%DISABLE_TLS13_COMPAT_MODE";
}

int wh_tls_make_server_cred(gnutls_certificate_credentials_t *pcred)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_certificate_credentials_t cred = NULL;
	unsigned char serial[16];
	time_t now = time(NULL);
	int rv;

	rv = gnutls_x509_privkey_init(&key);
	if (rv == 0)
		rv = gnutls_x509_privkey_generate(
			key, GNUTLS_PK_ECDSA,
			GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
	if (rv == 0)
		rv = gnutls_x509_crt_init(&crt);
	if (rv == 0)
		rv = gnutls_x509_crt_set_version(crt, 3);
	if (rv == 0)
		rv = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
	if (rv == 0) {
		serial[0] &= 0x7f;
		rv = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
	}
	if (rv == 0)
		rv = gnutls_x509_crt_set_activation_time(crt, now - 86400);
	if (rv == 0)
		rv = gnutls_x509_crt_set_expiration_time(crt,
							 now + 3650L * 86400);
	if (rv == 0)
		rv = gnutls_x509_crt_set_dn(crt, "CN=wormhole", NULL);
	if (rv == 0)
		rv = gnutls_x509_crt_set_key(crt, key);
	if (rv == 0)
		rv = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
	if (rv == 0)
		rv = gnutls_certificate_allocate_credentials(&cred);
	if (rv == 0)
		rv = gnutls_certificate_set_x509_key(cred, &crt, 1, key);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	if (rv != 0) {
		wh_err("tls: cannot create the host certificate: %s",
		       gnutls_strerror(rv));
		if (cred)
			gnutls_certificate_free_credentials(cred);
		return WH_ERR_TLS;
	}
	*pcred = cred;
	return 0;
}
