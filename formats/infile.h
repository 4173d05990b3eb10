/*
 * infile.h — the one way qforge opens an input file.
 *
 * Only regular files are inputs: a FIFO, a device or a socket would block forever or stream without
 * end, so it is refused before anything is read (the open itself does not block: O_NONBLOCK). Whole
 * reads are bounded by a limit the caller states, so no file can ask for more memory than its kind
 * justifies. Mappings are registered so that the SIGBUS a mapped file raises when it is truncated
 * under us (another process rewrote it) becomes a one-line I/O error naming the file: the handler in
 * outfile.c asks qf_infile_mapped_path() which mapping the address lies in, removes every temp file
 * and exits with status 3.
 */
#ifndef QF_INFILE_H
#define QF_INFILE_H

#include "qf_core.h"

#include <sys/types.h>

/* Open path for reading. QF_E_NOTFOUND when absent, QF_E_INPUT when not a regular file (the message
 * says what it is), QF_E_IO for other failures. *size is the file's size at open. */
qf_status qf_infile_open(const char *path, int *fd, uint64_t *size, qf_error *err);

/* The whole file in a malloc'd buffer with a NUL after the last byte. A file over `limit` bytes is
 * refused (QF_E_INPUT: "<what> of N bytes exceeds the limit of M"); `what` names the kind of file. */
qf_status qf_infile_read(const char *path, uint64_t limit, const char *what, char **buf, size_t *len, qf_error *err);

/* True when the first n bytes of the regular file at path are `magic` (false for anything else). */
bool qf_infile_has_magic(const char *path, const void *magic, size_t n);

/* Map size bytes of fd read-only (size > 0) and register the mapping under path. */
qf_status qf_infile_map(const char *path, int fd, uint64_t size, void **map, qf_error *err);
void qf_infile_unmap(void *map, uint64_t size);

/* The side files of a Hugging Face model directory that identify the model with its tensors (config,
 * tokenizer): the provenance digest reads them, and no output may be written over one. */
#define QF_MODEL_SIDE_FILES 6
extern const char *const qf_model_side_files[QF_MODEL_SIDE_FILES];
/* True for a file name a model directory is read through: *.safetensors, the shard index, the side
 * files. Writing such a file into a model directory changes that model. */
bool qf_model_dir_reads(const char *name);

/* "a FIFO (named pipe)", "a directory", ...: what a non-regular file is, for messages. */
const char *qf_file_kind(mode_t mode);

/* Async-signal-safe: the path of the registered mapping holding addr, or NULL. */
const char *qf_infile_mapped_path(const void *addr);

#endif
