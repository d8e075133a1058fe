/* wh_addr.h - "HOST:PORT" parsing and printing (IPv4, IPv6, names). */
#ifndef WH_ADDR_H
#define WH_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define WH_ADDRSTRLEN 64

/*
 * wh_addr_parse - parse "HOST:PORT", "[V6]:PORT" (HOST may be a name,
 * resolved with getaddrinfo; the first UDP-capable result wins).
 * Returns 0 or WH_ERR_ADDR.
 */
int wh_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* wh_addr_str - "1.2.3.4:5" or "[::1]:5" into |buf|; returns buf. */
char *wh_addr_str(const struct sockaddr *sa, char *buf, size_t size);

#endif /* WH_ADDR_H */
