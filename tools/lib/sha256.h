/*
 * sha256: FIPS 180-4 SHA-256, for the digests that tie every output to the
 * exact inputs that made it (compare with `sha256sum FILE`).
 */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t nbuf;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, unsigned char out[32]);
/* 64 lowercase hex digits and a NUL. */
void sha256_hex(const unsigned char d[32], char out[65]);

#endif
