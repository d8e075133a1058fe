/*
 * wh_tls.h - what the QUIC and the TLS-over-TCP transports share about TLS:
 * the priority string (TLS 1.3 only, AEAD ciphers, X25519/P-256) and the
 * host's ephemeral self-signed certificate.  Peers authenticate with the
 * PAKE bound to the TLS exporter, never with certificates.
 */
#ifndef WH_TLS_H
#define WH_TLS_H

#include <gnutls/gnutls.h>

/* wh_tls_priority - for gnutls_priority_set_direct(); |tcp| keeps the
 * TLS 1.3 middlebox compatibility mode, which QUIC must not use. */
const char *wh_tls_priority(int tcp);

/* wh_tls_make_server_cred - a fresh ECDSA P-256 key and self-signed
 * certificate in new credentials.  0 or WH_ERR_TLS (logged). */
int wh_tls_make_server_cred(gnutls_certificate_credentials_t *pcred);

#endif /* WH_TLS_H */
