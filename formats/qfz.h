/*
 * qfz.h — qforge transport packs (.qfz): a file cut into fixed-size chunks, each compressed as an
 * independent zstd frame, with an index that makes unpacking parallel and every frame checkable.
 *
 * Layout (little-endian). Every part is a zstd frame, so plain `zstd -d` also restores the file (it
 * skips skippable frames):
 *   skippable frame: u32 0x184D2A5E | u32 64 | header:
 *       char magic[8] "QFZPACK\0" | u32 version (1) | u32 flags (0) | u64 chunk_size | u64 raw_size |
 *       u64 n_frames | u64 index_off | u8 reserved[16] (0)
 *   n_frames zstd frames, contiguous from offset 72; frame i holds raw bytes
 *       [i * chunk_size, min((i + 1) * chunk_size, raw_size)), with content size and XXH64 checksum
 *   skippable frame at index_off: u32 0x184D2A5E | u32 (n_frames * 64 + 48) |
 *       n_frames x { u64 comp_off | u64 comp_size | u64 raw_off | u64 raw_size | u8 sha256[32] (raw) } |
 *       u64 n_frames | u8 sha256[32] of (the 64 header bytes || every entry) | char magic[8] "QFZINDEX"
 *   end of file (index_off + 8 + n_frames * 64 + 48 == file size)
 * The API is qf_pack / qf_unpack in qforge.h; the byte-exact definition is in docs/integrity.md.
 */
#ifndef QF_QFZ_H
#define QF_QFZ_H

#include "qf_core.h"

#define QF_QFZ_SKIPPABLE_MAGIC 0x184D2A5Eu
#define QF_QFZ_HEADER_BYTES 64
#define QF_QFZ_ENTRY_BYTES 64
#define QF_QFZ_TRAILER_BYTES 48
#define QF_QFZ_FRAMES_OFF (8 + QF_QFZ_HEADER_BYTES)
#define QF_QFZ_VERSION 1
#define QF_QFZ_MIN_CHUNK (64u << 10)
#define QF_QFZ_MAX_CHUNK (256u << 20) /* bounds what unpack allocates per slot, whatever the file says */
#define QF_QFZ_DEFAULT_CHUNK (4u << 20)

#endif
