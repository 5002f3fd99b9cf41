/* st: safetensors round trips for every dtype, and every malformed frame rejected with its message. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonl.h"
#include "sha256.h"
#include "st.h"
#include "tap.h"

/* A frame from a header string and n data bytes, as a stream. */
static FILE *
frame(const char *header, const unsigned char *data, size_t n, size_t *size, char **mem)
{
	size_t h = strlen(header);
	FILE *fp;

	*mem = NULL;
	*size = 0;
	fp = open_memstream(mem, size);
	for (int i = 0; i < 8; i++)
		putc((int)((uint64_t)h >> (8 * i)) & 0xff, fp);
	fwrite(header, 1, h, fp);
	fwrite(data, 1, n, fp);
	fclose(fp);
	return fmemopen(*mem, *size, "rb");
}

/* Read a frame and check it fails with a message containing want. */
static void
rejects(const char *what, const char *header, size_t ndata, const char *want)
{
	static unsigned char zeros[256];
	struct st_frame f;
	char err[ST_ERRLEN] = "", *mem;
	size_t size;
	FILE *fp = frame(header, zeros, ndata, &size, &mem);
	int rc = st_read(&f, fp, "t.st", err, sizeof err);

	ok(rc == -1 && strstr(err, want) && strncmp(err, "t.st: ", 6) == 0,
	    "rejects %s: \"%s\"", what, err);
	if (rc == 0)
		st_free(&f);
	fclose(fp);
	free(mem);
}

static void
round_trip(void)
{
	float f32[6] = {1.5f, -2.25f, 3e-38f, 1e38f, 0.0f, -0.0f};
	double f64[2] = {3.141592653589793, -1e-300};
	int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
	int64_t i64[2] = {INT64_MIN, INT64_MAX};
	uint8_t u8[5] = {0, 1, 127, 128, 255};
	int64_t s6[2] = {2, 3}, s2[1] = {2}, s3[1] = {3}, s5[1] = {5}, s0[2] = {0, 4};
	struct st_writer w;
	struct st_frame f;
	char err[ST_ERRLEN], *mem = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&mem, &size);
	const struct st_tensor *t;
	uint64_t hlen = 0;

	st_writer_init(&w);
	st_writer_meta(&w, "p", "97");
	st_writer_meta(&w, "note", "quote \" and unicode \xc3\xa9");
	st_writer_add(&w, "a.f32", ST_F32, 2, s6, f32);
	st_writer_add(&w, "b.f64", ST_F64, 1, s2, f64);
	st_writer_add(&w, "c.i32", ST_I32, 1, s3, i32);
	st_writer_add(&w, "d.i64", ST_I64, 1, s2, i64);
	st_writer_add(&w, "e.u8", ST_U8, 1, s5, u8);
	st_writer_add(&w, "f.empty", ST_F32, 2, s0, f32);
	st_writer_add(&w, "g.scalar", ST_F64, 0, NULL, f64);
	ok(st_write(&w, fp) == 0, "writer succeeds");
	fclose(fp);
	st_writer_free(&w);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | (unsigned char)mem[i];
	ok(hlen % 8 == 0 && (mem[8 + hlen - 1] == ' ' || mem[8 + hlen - 1] == '}'),
	    "header length %llu is a multiple of 8, padded with spaces", (unsigned long long)hlen);

	fp = fmemopen(mem, size, "rb");
	ok(st_read(&f, fp, "mem", err, sizeof err) == 0, "reader accepts the writer's frame");
	ok(getc(fp) == EOF, "reader consumed exactly one frame");
	fclose(fp);
	ok(f.ntensors == 7, "seven tensors read back");
	t = st_find(&f, "a.f32");
	ok(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
	    memcmp(t->data, f32, sizeof f32) == 0, "F32 round trip, bit for bit");
	t = st_find(&f, "b.f64");
	ok(t && t->dtype == ST_F64 && memcmp(t->data, f64, sizeof f64) == 0, "F64 round trip");
	t = st_find(&f, "c.i32");
	ok(t && t->dtype == ST_I32 && memcmp(t->data, i32, sizeof i32) == 0, "I32 round trip");
	t = st_find(&f, "d.i64");
	ok(t && t->dtype == ST_I64 && memcmp(t->data, i64, sizeof i64) == 0, "I64 round trip");
	t = st_find(&f, "e.u8");
	ok(t && t->dtype == ST_U8 && memcmp(t->data, u8, sizeof u8) == 0, "U8 round trip");
	t = st_find(&f, "f.empty");
	ok(t && t->numel == 0 && t->nbytes == 0 && t->shape[1] == 4, "empty tensor round trip");
	t = st_find(&f, "g.scalar");
	ok(t && t->ndim == 0 && t->numel == 1 && memcmp(t->data, f64, 8) == 0, "scalar round trip");
	ok(st_meta(&f, "p") && strcmp(st_meta(&f, "p"), "97") == 0 &&
	    strcmp(st_meta(&f, "note"), "quote \" and unicode \xc3\xa9") == 0,
	    "metadata round trip");
	ok(st_expect(&f, "a.f32", ST_F64, 2, s6, err, sizeof err) == NULL &&
	    strcmp(err, "tensor 'a.f32' has dtype F32, expected F64") == 0, "expect: dtype mismatch: %s", err);
	ok(st_expect(&f, "a.f32", ST_F32, 2, (int64_t[]){2, 4}, err, sizeof err) == NULL &&
	    strcmp(err, "tensor 'a.f32' has shape [2, 3], expected [2, 4] (-1: any)") == 0,
	    "expect: shape mismatch: %s", err);
	ok(st_expect(&f, "zz", ST_F32, 0, NULL, err, sizeof err) == NULL &&
	    strcmp(err, "missing tensor 'zz'") == 0, "expect: missing tensor");
	ok(st_expect(&f, "a.f32", ST_F32, 2, (int64_t[]){-1, 3}, err, sizeof err) != NULL,
	    "expect: -1 matches any extent");
	{
		struct sha256 sh;
		unsigned char d[32];
		sha256_init(&sh);
		sha256_update(&sh, mem, size);
		sha256_final(&sh, d);
		ok(memcmp(d, f.digest, 32) == 0, "frame digest is SHA-256 of its bytes");
	}
	st_free(&f);
	free(mem);
	(void)s2; (void)s3; (void)s5;
}

static void
malformed(void)
{
	struct st_frame f;
	char err[ST_ERRLEN], *mem = NULL;
	unsigned char buf[16] = {0};
	FILE *fp;
	size_t size;

	fp = fmemopen(buf, 1, "rb");
	fgetc(fp); /* an empty stream: fmemopen rejects size 0 */
	ok(st_read(&f, fp, "t.st", err, sizeof err) == 1, "empty stream is end of input, not an error");
	fclose(fp);

	fp = fmemopen(buf, 3, "rb");
	ok(st_read(&f, fp, "t.st", err, sizeof err) == -1 &&
	    strcmp(err, "t.st: truncated: 3 of the 8 bytes of header length") == 0,
	    "rejects a truncated length: %s", err);
	fclose(fp);

	buf[0] = 0x01; buf[3] = 0x10;  /* 0x10000001: 268 MB */
	fp = fmemopen(buf, 16, "rb");
	ok(st_read(&f, fp, "t.st", err, sizeof err) == -1 && strstr(err, "exceeds the limit of 100000000"),
	    "rejects a huge header length: %s", err);
	fclose(fp);

	memset(buf, 0, sizeof buf);
	buf[0] = 100;
	fp = fmemopen(buf, 16, "rb");
	ok(st_read(&f, fp, "t.st", err, sizeof err) == -1 &&
	    strcmp(err, "t.st: truncated header: 8 of 100 bytes") == 0, "rejects a truncated header: %s", err);
	fclose(fp);

	rejects("an empty header", "", 0, "does not start with '{'");
	rejects("a non-object header", "[1, 2]  ", 0, "does not start with '{'");
	rejects("invalid JSON", "{\"a\": {\"dtype\": \"F32\",}", 0, "invalid JSON");
	rejects("garbage after the JSON", "{}x      ", 0, "invalid JSON");
	rejects("duplicate keys", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "invalid JSON");
	rejects("an unknown dtype", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}",
	    2, "unsupported dtype 'BF16'");
	rejects("a missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
	    "missing or non-string dtype");
	rejects("a negative extent", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
	    0, "shape[0] is not a non-negative integer");
	rejects("a non-integer extent", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}",
	    1, "shape[0] is not a non-negative integer");
	rejects("a shape whose product overflows",
	    "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}",
	    8, "shape is too large");
	rejects("too many dimensions",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
	    "9 dimensions (at most 8)");
	rejects("offsets that disagree with the shape",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
	    "data_offsets span 4 bytes but F32 shape needs 8");
	rejects("offsets that end before they begin",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "end before they begin");
	rejects("malformed offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}",
	    1, "data_offsets must be [begin, end]");
	rejects("a hole in the data",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	    "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 3,
	    "tensor 'b' starts at byte 2, expected 1");
	rejects("overlapping tensors",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
	    "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3,
	    "starts at byte 1, expected 2");
	rejects("data that does not start at 0",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
	    "starts at byte 1, expected 0");
	rejects("an unknown key in an entry",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1, "unknown key 'x'");
	rejects("a non-object entry", "{\"a\":3}", 0, "tensor 'a' is not an object");
	rejects("an empty tensor name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
	    1, "empty tensor name");
	rejects("non-string metadata", "{\"__metadata__\":{\"p\":97}}", 0,
	    "__metadata__ value of 'p' is not a string");
	rejects("non-object metadata", "{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
	rejects("truncated data", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]}}",
	    10, "truncated data: 10 of 32 bytes");
	rejects("invalid UTF-8", "{\"\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
	    1, "invalid JSON");

	/* A claim of gigabytes in a short stream fails at the stream's end. */
	rejects("a huge claimed data size",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[30000000000],\"data_offsets\":[0,30000000000]}}", 5,
	    "truncated data: 5 of 30000000000 bytes");
	rejects("data over the size limit",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[70000000000],\"data_offsets\":[0,70000000000]}}", 5,
	    "exceed the limit");

	/* Trailing bytes after a frame in a file. */
	{
		char path[] = "/tmp/st-test-XXXXXX";
		int fd = mkstemp(path);
		FILE *out = fdopen(fd, "wb");
		fp = frame("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
		    (const unsigned char *)"zz", 2, &size, &mem);
		fclose(fp);
		fwrite(mem, 1, size, out);
		fclose(out);
		ok(st_load(&f, path, err, sizeof err) == -1 && strstr(err, "trailing bytes after the safetensors frame"),
		    "st_load rejects trailing bytes: %s", err);
		out = fopen(path, "wb");
		fclose(out);
		ok(st_load(&f, path, err, sizeof err) == -1 && strstr(err, "empty input"),
		    "st_load rejects an empty file: %s", err);
		unlink(path);
		ok(st_load(&f, path, err, sizeof err) == -1 && strstr(err, "No such file"),
		    "st_load reports a missing file: %s", err);
		free(mem);
	}
}

static void
digests_and_reals(void)
{
	struct sha256 sh;
	unsigned char d[32];
	char hex[65], buf[40];
	static const double reals[] = {0.1, 0.3, 1.0 / 3, 1e-300, 6.02214076e23, -0.0, 5e-324, 1.7976931348623157e308};
	int all = 1;

	sha256_init(&sh);
	sha256_update(&sh, "abc", 3);
	sha256_final(&sh, d);
	sha256_hex(d, hex);
	ok(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "sha256(abc)");
	sha256_init(&sh);
	sha256_final(&sh, d);
	sha256_hex(d, hex);
	ok(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "sha256(empty)");
	sha256_init(&sh);
	for (int i = 0; i < 1000000; i++)
		sha256_update(&sh, "a", 1);
	sha256_final(&sh, d);
	sha256_hex(d, hex);
	ok(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
	    "sha256(a million a's)");

	for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
		format_real(buf, sizeof buf, reals[i]);
		all &= strtod(buf, NULL) == reals[i];
	}
	format_real(buf, sizeof buf, 0.1);
	ok(all && strcmp(buf, "0.1") == 0, "reals print shortest and round-trip (0.1 -> %s)", buf);
	format_real(buf, sizeof buf, 2.0);
	ok(strcmp(buf, "2.0") == 0, "integral reals keep a decimal point (%s)", buf);
	{
		char *out = NULL;
		size_t n = 0;
		FILE *fp = open_memstream(&out, &n);
		json_t *rec = json_pack("{s:o,s:o,s:o,s:i}", "a", jnum(0.0 / 0.0), "b", jnum(1.0 / 0.0),
		    "c", jnum(0.25), "d", 3);
		jsonl_write(fp, rec);
		fclose(fp);
		ok(strcmp(out, "{\"a\":null,\"b\":null,\"c\":0.25,\"d\":3}\n") == 0,
		    "JSON-lines record with NaN/Inf as null: %s", out);
		json_decref(rec);
		free(out);
	}
}

/*
 * Headers of every length mod 8: each frame's header length is a multiple
 * of 8 (so the data that follows is aligned for every dtype), the padding
 * is spaces, and the reader takes the frame back.  The eight lengths of
 * the metadata value cover every residue of the unpadded length mod 8.
 */
static void
header_padding(void)
{
	int all_ok = 1;
	uint64_t lens = 0;

	for (int extra = 0; extra < 8; extra++) {
		struct st_writer w;
		struct st_frame f;
		char value[16], err[ST_ERRLEN], *mem = NULL;
		size_t size = 0;
		uint64_t hlen = 0;
		FILE *fp = open_memstream(&mem, &size);
		double x = 1.5;
		int64_t one[1] = {1};

		memset(value, 'v', (size_t)extra);
		value[extra] = '\0';
		st_writer_init(&w);
		st_writer_meta(&w, "k", value);
		st_writer_add(&w, "x", ST_F64, 1, one, &x);
		all_ok &= st_write(&w, fp) == 0;
		fclose(fp);
		st_writer_free(&w);
		for (int i = 7; i >= 0; i--)
			hlen = hlen << 8 | (unsigned char)mem[i];
		lens |= 1u << (hlen % 8);
		all_ok &= hlen % 8 == 0 && size == 8 + hlen + 8 && (mem[8 + hlen - 1] == ' ' || mem[8 + hlen - 1] == '}');
		fp = fmemopen(mem, size, "rb");
		if (st_read(&f, fp, "mem", err, sizeof err) == 0) {
			all_ok &= f.ntensors == 1;
			st_free(&f);
		} else {
			all_ok = 0;
		}
		fclose(fp);
		free(mem);
	}
	ok(all_ok && lens == 1, "headers for 8 metadata lengths: every length a multiple of 8, each frame read back");
}

int
main(void)
{
	round_trip();
	header_padding();
	malformed();
	digests_and_reals();
	return tap_done();
}
