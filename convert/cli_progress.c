/*
 * Progress on stderr (cli.h): a redrawn bar on a terminal, or plain lines for logs (CI), each line
 * complete on its own: how much is done of how much, the rate, the time left and, for evaluation, the
 * running perplexity. Lines appear at every further tenth of the work and at least once a minute, so a
 * log grows by about ten lines per command however long it runs.
 */
#include "convert/cli.h"
#include "convert/report.h"

#include <string.h>
#include <unistd.h>

void qf_cli_progress_start(qf_cli_progress *p, const char *cmd, const qf_cli_common *co) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->mode = co->progress != QF_PROGRESS_AUTO ? co->progress
              : co->quiet                      ? QF_PROGRESS_NONE
              : isatty(STDERR_FILENO)          ? QF_PROGRESS_BAR
                                               : QF_PROGRESS_LINES;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
}

static void eta_str(double secs, char *out, size_t n) {
    if (!(secs >= 0) || secs > 360000) { snprintf(out, n, "?"); return; }
    unsigned s = (unsigned)(secs + 0.5);
    if (s >= 3600) snprintf(out, n, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, n, "%u:%02u", s / 60, s % 60);
}

/* Show `body` (already escaped) for a state `frac` of the way through; `last` = the work is done. */
static void show(qf_cli_progress *p, double now, double frac, bool last, const char *body) {
    if (p->mode == QF_PROGRESS_BAR) {
        if (!last && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        fprintf(stderr, "\r\033[K%s", body);
        p->open_bar = !last;
        if (last) fputc('\n', stderr);
    } else if (p->mode == QF_PROGRESS_LINES) {
        int tenth = (int)(frac * 10.0);
        if (!last && tenth <= p->last_tenth && now - p->last_line < 60.0) return;
        if (last && p->last_tenth > 10) return; /* the final line once */
        p->last_tenth = last ? 11 : tenth;
        p->last_line = now;
        fprintf(stderr, "qforge %s: %s\n", p->cmd, body);
    }
    fflush(stderr);
}

void qf_cli_progress_bytes(void *user, const char *tensor, uint64_t done, uint64_t total) {
    qf_cli_progress *p = user;
    if (p->mode == QF_PROGRESS_NONE) return;
    if (done < p->last_done) { /* a new phase: rate and ETA from its own start */
        clock_gettime(CLOCK_MONOTONIC, &p->start);
        p->last_tenth = 0;
        p->end_shown = false;
    }
    p->last_done = done;
    if (done >= total && p->end_shown) return;
    p->end_shown = done >= total;
    bool small = total < 1048576; /* a demo model in KiB, everything else in MiB */
    double unit = small ? 1024.0 : 1048576.0, now = qf_cli_seconds_since(&p->start);
    double got = (double)done / unit, all = (double)total / unit, rate = now > 0 ? got / now : 0;
    double frac = total ? (double)done / (double)total : 1.0;
    char eta[24], name[200], body[400];
    eta_str(rate > 0 ? (all - got) / rate : -1, eta, sizeof eta);
    qf_text_escape(tensor, strlen(tensor), QF_TEXT_TERMINAL, name, sizeof name);
    snprintf(body, sizeof body, "%.1f/%.1f %s (%.0f%%), %.1f %s/s, ETA %s, %s", got, all, small ? "KiB" : "MiB",
             100.0 * frac, rate, small ? "KiB" : "MiB", eta, name);
    show(p, now, frac, done >= total, body);
}

void qf_cli_progress_count(void *user, const char *what, uint64_t done, uint64_t total) {
    qf_cli_progress *p = user;
    if (p->mode == QF_PROGRESS_NONE) return;
    double now = qf_cli_seconds_since(&p->start), frac = total ? (double)done / (double)total : 1.0;
    double rate = now > 0 ? (double)done / now : 0;
    char eta[24], name[120], body[300];
    eta_str(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    qf_text_escape(what, strlen(what), QF_TEXT_TERMINAL, name, sizeof name);
    snprintf(body, sizeof body, "%s %llu/%llu (%.0f%%), %.2f/s, ETA %s", name, (unsigned long long)done,
             (unsigned long long)total, 100.0 * frac, rate, eta);
    show(p, now, frac, done >= total, body);
}

void qf_cli_progress_chunks(void *user, uint32_t chunk, uint32_t n_chunks, double ppl) {
    qf_cli_progress *p = user;
    if (p->mode == QF_PROGRESS_NONE) return;
    double now = qf_cli_seconds_since(&p->start), frac = n_chunks ? (double)chunk / n_chunks : 1.0;
    double rate = now > 0 ? chunk / now : 0;
    char eta[24], body[200];
    eta_str(rate > 0 ? (double)(n_chunks - chunk) / rate : -1, eta, sizeof eta);
    snprintf(body, sizeof body, "chunk %u/%u (%.0f%%), PPL %.4f, %.2f chunks/s, ETA %s", chunk, n_chunks, 100.0 * frac,
             ppl, rate, eta);
    show(p, now, frac, chunk >= n_chunks, body);
}

void qf_cli_progress_end(qf_cli_progress *p) {
    if (p->open_bar) fputc('\n', stderr);
    p->open_bar = false;
}
