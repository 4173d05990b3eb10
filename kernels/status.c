/* Status names and exit codes. In kernels/ because it is the bottom library every layer links. */
#include "qforge.h"

const char *qf_status_name(qf_status st) {
    switch (st) {
    case QF_OK: return "ok";
    case QF_E_INPUT: return "bad input";
    case QF_E_IO: return "I/O error";
    case QF_E_NOMEM: return "out of memory";
    case QF_E_USAGE: return "usage error";
    case QF_E_UNSUPPORTED: return "unsupported";
    case QF_E_NOTFOUND: return "not found";
    case QF_E_CHECK: return "check failed";
    case QF_E_INTERRUPTED: return "interrupted";
    case QF_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int qf_status_exit_code(qf_status st) {
    switch (st) {
    case QF_OK: return 0;
    case QF_E_CHECK: return 1;
    case QF_E_INPUT: case QF_E_USAGE: case QF_E_UNSUPPORTED: case QF_E_NOTFOUND: return 2;
    default: return 3;
    }
}
