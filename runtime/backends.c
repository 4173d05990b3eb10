/* backends.c — the backend table: which backends this build has, which one a run takes, and making it.
 * The CUDA backend is linked in only when the build has it (QF_HAVE_CUDA: CMake's QF_CUDA found nvcc);
 * nothing else in the runtime names it. */
#include "runtime/backend.h"

#include <strings.h>

static const char *const names[] = {[QF_BACKEND_CPU] = "cpu", [QF_BACKEND_CUDA] = "cuda", [QF_BACKEND_AUTO] = "auto"};

bool qf_backend_parse(const char *s, qf_backend *out) {
    for (size_t i = 0; s && i < QF_ARRAY_LEN(names); i++)
        if (!strcasecmp(s, names[i])) {
            *out = (qf_backend)i;
            return true;
        }
    return false;
}

const char *qf_backend_name(qf_backend b) { return (size_t)b < QF_ARRAY_LEN(names) ? names[b] : "?"; }

/* Whether this build and machine can run the CUDA backend: true with the device named in `what`, false
 * with the reason there. */
static bool cuda_usable(char *what, size_t n) {
#ifdef QF_HAVE_CUDA
    return qf_be_cuda_usable(what, n);
#else
    snprintf(what, n, "this build has no CUDA backend (configured with -DQF_CUDA=OFF or without nvcc)");
    return false;
#endif
}

qf_status qf_rt_backend_pick(const qf_backend_opts *o, bool cpu_only, qf_rt_backend_choice *c, qf_error *err) {
    char what[256] = "";
    bool cuda = false;
    memset(c, 0, sizeof *c);
    c->got = QF_BACKEND_CPU;
    if (o->want == QF_BACKEND_CUDA && cpu_only)
        return qf_fail(err, QF_E_USAGE, "--act q8 is the CPU backend's 8-bit path; the CUDA backend computes F32 "
                       "(use --backend cpu, or drop --act q8)");
    if (o->want == QF_BACKEND_AUTO && cpu_only) snprintf(what, sizeof what, "--act q8 runs on the CPU backend only");
    else if (o->want != QF_BACKEND_CPU) cuda = cuda_usable(what, sizeof what);
    if (o->want == QF_BACKEND_CUDA && !cuda) return qf_fail(err, QF_E_UNSUPPORTED, "--backend cuda: %s", what);
    if (cuda) c->got = QF_BACKEND_CUDA;
    snprintf(cuda ? c->device : c->why, sizeof c->why, "%s", what);
    return QF_OK;
}

void qf_rt_backend_announce(const qf_backend_opts *o, const qf_rt_backend_choice *c) {
    if (o->on_choice) o->on_choice(o->user, c->got, c->why, c->device);
}

qf_status qf_be_new(qf_backend kind, const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err) {
    switch (kind) {
    case QF_BACKEND_CPU: return qf_be_cpu_new(o, out, ops, err);
    case QF_BACKEND_CUDA:
#ifdef QF_HAVE_CUDA
        return qf_be_cuda_new(o, out, ops, err);
#else
        break;
#endif
    case QF_BACKEND_AUTO: break;
    }
    *out = NULL;
    return qf_fail(err, QF_E_INTERNAL, "no %s backend in this build (resolve the backend with qf_rt_backend_pick first)",
                   qf_backend_name(kind));
}
