/*
 * outfile.h — the one way qforge creates an output file: atomically and durably.
 *
 * open() creates a unique temp file beside the destination
 * ("<dir>/.<name>.qf-tmp.<host>.<boot>.<pidns>.<pid>.<start>.XXXXXX"), so the final rename stays within
 * one filesystem, and first removes the temps that earlier qforge runs killed outright (SIGKILL, a
 * crash) left in that directory: only those whose owner is provably gone (same host, boot and PID
 * namespace, and that PID absent or started at another time; see outfile.c). write() loops over short writes. commit() does fdatasync, a
 * checked close, rename over the destination and an fsync of the directory; only then does the output
 * exist under its name, and an existing file of that name is replaced in one step or not at all. Only a
 * regular file is ever replaced: an existing directory, device, FIFO or socket of that name is refused
 * (at open and again just before the rename).
 * abort() (and any failed step) unlinks the temp file. A failed fsync is final: no retry.
 *
 * Catchable signals (SIGINT, SIGTERM, SIGHUP, SIGXFSZ) unlink every temp file still open and then
 * re-raise: qf_outfile_install_signal_cleanup() installs the handler once, from main(). It also turns
 * the SIGBUS of a mapped input that another process truncated (infile.h) into a one-line I/O error:
 * temps removed, exit status 3.
 */
#ifndef QF_OUTFILE_H
#define QF_OUTFILE_H

#include "qf_core.h"

typedef struct qf_outfile qf_outfile;

/* The check every command that writes makes before it starts any work, so that a bad output costs
 * nothing and can never destroy an input: the path is non-empty and names a file (not "", ".", a
 * directory or "x/"), whatever has that name now is a regular file (not a device, FIFO or socket), its
 * directory exists and is writable, and it is none of the inputs (same file, also through another
 * spelling or a link), nor a file a model directory among the inputs reads (writing
 * DIR/model.safetensors while converting DIR). inputs may hold NULLs and "-" (stdout), which are
 * skipped; pass a command's other outputs too, so two outputs cannot be the same file. */
qf_status qf_outfile_check(const char *out, const char *const *inputs, size_t n_inputs, qf_error *err);

qf_status qf_outfile_open(const char *path, qf_outfile **out, qf_error *err);
/* Hint the final size so the filesystem can reserve it (a full disk then fails early). */
void qf_outfile_reserve(qf_outfile *f, uint64_t size);
qf_status qf_outfile_write(qf_outfile *f, const void *buf, uint64_t n, qf_error *err);
uint64_t qf_outfile_written(const qf_outfile *f);
/* Overwrite n bytes already written at file offset off (off + n <= written): formats whose header
 * holds values known only at the end (digests, an index offset) write a fixed-size placeholder first
 * and patch it here before commit. Does not move the append position. */
qf_status qf_outfile_pwrite(qf_outfile *f, const void *buf, uint64_t n, uint64_t off, qf_error *err);
/* Make what was written durable (fdatasync, checked close) without renaming it into place: an output of
 * several files (a split GGUF) seals each as it completes and commits them all once the last one is
 * sealed, so a failed run leaves none of them. A sealed file keeps no descriptor; commit() then only
 * renames, abort() and the signal cleanup still remove it. */
qf_status qf_outfile_seal(qf_outfile *f, qf_error *err);
qf_status qf_outfile_commit(qf_outfile *f, qf_error *err); /* frees f */
void qf_outfile_abort(qf_outfile *f);                      /* frees f */
const char *qf_outfile_path(const qf_outfile *f);          /* the final destination path */
/* The temp file's path, for a read-back check between seal and commit (e.g. re-verifying digests): before
 * seal, bytes written may still be on their way to the file. */
const char *qf_outfile_temp_path(const qf_outfile *f);

void qf_outfile_install_signal_cleanup(void);

#endif
