/* qforge inspect — lands with the formats readers. */
#include "qf_core.h"
qf_status qf_inspect(const qf_inspect_opts *opts, void *out, qf_error *err) {
    (void)opts; (void)out;
    return qf_fail(err, QF_E_UNSUPPORTED, "inspect: not built yet");
}
