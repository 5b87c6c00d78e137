/* format.c — see format.h. */
#include "format.h"

#include <math.h>
#include <stdio.h>

char *dk_format_duration(char *buf, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, DK_FMT_BUF, "?");
    } else if (s < 10) {
        snprintf(buf, DK_FMT_BUF, "%.2fs", s);
    } else if (s < 60) {
        snprintf(buf, DK_FMT_BUF, "%.1fs", s);
    } else if (s < 3600) {
        long t = lround(s);
        snprintf(buf, DK_FMT_BUF, "%ldm%02lds", t / 60, t % 60);
    } else if (s < 86400) {
        long t = lround(s / 60);
        snprintf(buf, DK_FMT_BUF, "%ldh%02ldm", t / 60, t % 60);
    } else {
        long t = lround(s / 3600);
        snprintf(buf, DK_FMT_BUF, "%ldd%02ldh", t / 24, t % 24);
    }
    return buf;
}

char *dk_format_count(char *buf, double c) {
    const char *suffix[] = {"", "k", "M", "G", "T", "P"};
    int i = 0;
    double a = fabs(c);
    while (a >= 999.95 && i < 5) {
        a /= 1000;
        c /= 1000;
        i++;
    }
    if (i == 0)
        snprintf(buf, DK_FMT_BUF, "%.0f", c);
    else
        snprintf(buf, DK_FMT_BUF, a < 99.95 ? (a < 9.995 ? "%.2f%s" : "%.1f%s") : "%.0f%s", c, suffix[i]);
    return buf;
}

char *dk_format_bytes(char *buf, double b) {
    const char *suffix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (fabs(b) >= 1024 && i < 5) {
        b /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, DK_FMT_BUF, "%.0f B", b);
    else
        snprintf(buf, DK_FMT_BUF, fabs(b) < 10 ? "%.2f %s" : "%.1f %s", b, suffix[i]);
    return buf;
}
