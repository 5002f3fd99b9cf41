/*
 * st: safetensors frames, exactly as Hugging Face specifies them.
 *
 *   8 bytes   N, little-endian u64: the header's length
 *   N bytes   UTF-8 JSON object: name -> {"dtype", "shape", "data_offsets"},
 *             optional "__metadata__": string -> string; padded with spaces
 *   data      the tensors' bytes, row-major, little-endian, contiguous, with
 *             data_offsets [begin, end) relative to the start of this section
 *
 * The reader takes one frame from any stream (no seeking, so pipes work) and
 * validates everything before a tensor is handed out; every failure is a
 * message naming the input and what is wrong, never a crash.  The writer
 * pads the header to a multiple of 8 so that data starts aligned.
 */
#ifndef ST_H
#define ST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define ST_MAX_HEADER 100000000ULL       /* as Hugging Face's reader */
#define ST_MAX_DATA (64ULL << 30)        /* 64 GiB of tensor data */
#define ST_MAX_DIMS 8
#define ST_MAX_TENSORS 100000
#define ST_ERRLEN 512

enum st_dtype { ST_F32, ST_F64, ST_I32, ST_I64, ST_U8, ST_NDTYPES };

const char *st_dtype_name(enum st_dtype t);
size_t st_dtype_size(enum st_dtype t);

struct st_tensor {
	char *name;
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	size_t numel;
	size_t nbytes;
	const unsigned char *data;  /* into the frame's buffer; not aligned */
};

struct st_frame {
	size_t ntensors;
	struct st_tensor *t;        /* in data order */
	json_t *meta;               /* object of strings; empty if none */
	unsigned char *buf;         /* the data section */
	size_t nbuf;
	unsigned char digest[32];   /* SHA-256 of the frame's bytes */
};

/*
 * Read one frame.  Returns 0 on success, 1 on end of input before the
 * first byte (no frame), -1 on error with a message in err.  name labels
 * the input in messages.
 */
int st_read(struct st_frame *f, FILE *fp, const char *name, char *err, size_t errlen);
/* Read the single frame of a file ("-": standard input); nothing may follow it. */
int st_load(struct st_frame *f, const char *path, char *err, size_t errlen);
void st_free(struct st_frame *f);

const struct st_tensor *st_find(const struct st_frame *f, const char *name);
/* The metadata value for key, or NULL. */
const char *st_meta(const struct st_frame *f, const char *key);
/*
 * The tensor called name with the given dtype and rank, or NULL with a
 * message in err.  A shape entry of -1 matches any extent.
 */
const struct st_tensor *st_expect(const struct st_frame *f, const char *name,
    enum st_dtype dtype, int ndim, const int64_t *shape, char *err, size_t errlen);

struct st_writer {
	size_t n, cap;
	struct st_wtensor {
		char *name;
		enum st_dtype dtype;
		int ndim;
		int64_t shape[ST_MAX_DIMS];
		const void *data;   /* borrowed until st_write */
	} *t;
	json_t *meta;
};

void st_writer_init(struct st_writer *w);
void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype,
    int ndim, const int64_t *shape, const void *data);
void st_writer_meta(struct st_writer *w, const char *key, const char *value);
/* An integer's metadata value, in decimal (safetensors metadata are strings). */
void st_writer_meta_long(struct st_writer *w, const char *key, long long value);
/* Write the frame; 0, or -1 with errno set by the failing write. */
int st_write(const struct st_writer *w, FILE *fp);
void st_writer_free(struct st_writer *w);

#endif
